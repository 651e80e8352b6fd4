"""CPU latency of D0 at batch 1: Keras model, exported SavedModel (with/without XLA) and `effdet`.

    python benchmarks/latency_cpu.py [--runs 20] [--warmup 3] [--checkpoint DIR] [--no_peer]

Network only and end to end (preprocessing + network + decoding + soft-NMS from a uint8 picture) for
each, medians in ms over repeated runs in one process, and ratios to the PyTorch `effdet`
tf_efficientdet_d0 (random weights, pretrained_backbone=False; bench_task='' for the network,
'predict' for decoding + NMS). The peer is skipped with a message when torch/effdet do not import.
The reference checkpoint is loaded when present so NMS sees realistic scores.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                  "reference", "efficientdet-d0")


def median_ms(fn, runs, warmup):
    """Median wall time of fn() in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def tensorflow_timings(args):
    """{label: ms} for the Keras model and the exported SavedModel with and without XLA."""
    import numpy as np
    import tensorflow as tf

    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.inference import Detector

    checkpoint = args.checkpoint if os.path.isdir(args.checkpoint or "") else None
    detector = Detector("efficientdet-d0", checkpoint)
    picture = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 512, 512, 3), dtype=np.uint8))
    net_input = tf.random.normal([1, 512, 512, 3])
    network = tf.function(lambda x: detector.model(x, training=False))
    timings = {
        "keras network": median_ms(lambda: tf.nest.map_structure(lambda t: t.numpy(), network(net_input)),
                                   args.runs, args.warmup),
        "keras end to end": median_ms(lambda: detector(picture.numpy()), args.runs, args.warmup),
    }
    folded = fold_and_check(detector.model, detector.config)
    with tempfile.TemporaryDirectory() as root:
        for jit in (False, True):
            path = export_saved_model(folded, detector.config, root, version=int(jit) + 1, jit_compile=jit)
            signatures = tf.saved_model.load(path).signatures
            raw, serve = signatures["predict_raw"], signatures["serving_default"]
            name = "savedmodel%s" % (" xla" if jit else "")
            timings[name + " network"] = median_ms(
                lambda: [t.numpy() for t in raw(normalized_images=net_input).values()], args.runs, args.warmup)
            timings[name + " end to end"] = median_ms(
                lambda: [t.numpy() for t in serve(images=picture).values()], args.runs, args.warmup)
    return timings


def peer_timings(args):
    """{label: ms} for effdet's tf_efficientdet_d0, or {} with a message when it is not installed."""
    try:
        import effdet
        import torch
    except ImportError as e:
        print("peer skipped: torch/effdet not importable (%s)" % e)
        return {}
    timings = {}
    x = torch.randn(1, 3, 512, 512)
    for task, label in (("", "effdet network"), ("predict", "effdet end to end")):
        model = effdet.create_model("tf_efficientdet_d0", bench_task=task, pretrained=False,
                                    pretrained_backbone=False).eval()
        with torch.no_grad():
            timings[label] = median_ms(lambda: model(x), args.runs, args.warmup)
    return timings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--no_peer", action="store_true")
    args = parser.parse_args()
    timings = {} if args.no_peer else peer_timings(args)
    timings.update(tensorflow_timings(args))
    print("\nD0, batch 1, 512x512, CPU (%d cores), medians of %d runs" % (os.cpu_count(), args.runs))
    for label, ms in timings.items():
        kind = "network" if label.endswith("network") else "end to end"
        peer = timings.get("effdet " + kind)
        ratio = "  %.2fx effdet" % (ms / peer) if peer and not label.startswith("effdet") else ""
        print("%-28s %8.1f ms%s" % (label, ms, ratio))


if __name__ == "__main__":
    main()
