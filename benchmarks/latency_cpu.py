"""CPU latency of D0 at batch 1: Keras model, SavedModel (with/without XLA), TFLite and `effdet`.

    python benchmarks/latency_cpu.py [--runs 20] [--warmup 3] [--checkpoint DIR] [--no_peer] [--xla]

Network only and end to end (preprocessing + network + decoding + soft-NMS from a uint8 picture) for
each, medians in ms over repeated runs in one process, and ratios to the PyTorch `effdet`
tf_efficientdet_d0 (random weights, pretrained_backbone=False; bench_task='' for the network,
'predict' for decoding + NMS). The peer is skipped with a message when torch/effdet do not import.
The reference checkpoint is loaded when present so NMS sees realistic scores.
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                  "reference", "efficientdet-d0")


def interleaved_medians(fns, runs, warmup):
    """{label: median ms} timing every fn once per round, round after round.

    Interleaving spreads the noise of a shared machine over all candidates alike, so the ratios
    between them hold even when the absolute figures drift.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    for _ in range(runs):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - start) * 1000.0)
    return {label: statistics.median(values) for label, values in times.items()}


def tensorflow_fns(args, root):
    """{label: fn} for the Keras model, the SavedModel with and without XLA, and TFLite."""
    import numpy as np
    import tensorflow as tf

    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import export_tflite
    from efficientdet_tf.inference import Detector

    checkpoint = args.checkpoint if os.path.isdir(args.checkpoint or "") else None
    detector = Detector("efficientdet-d0", checkpoint)
    picture = np.random.default_rng(0).integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    net_input = np.random.default_rng(1).normal(size=(1, 512, 512, 3)).astype(np.float32)
    network = tf.function(lambda x: detector.model(x, training=False))
    fns = {
        "keras network": lambda: tf.nest.map_structure(lambda t: t.numpy(), network(net_input)),
        "keras end to end": lambda: detector(picture),
    }
    folded = fold_and_check(detector.model, detector.config)
    for jit in (False, True) if args.xla else (False,):
        path = export_saved_model(folded, detector.config, root, version=int(jit) + 1, jit_compile=jit)
        signatures = tf.saved_model.load(path).signatures
        name = "savedmodel%s" % (" xla" if jit else "")
        fns[name + " network"] = functools.partial(
            lambda raw: [t.numpy() for t in raw(normalized_images=tf.constant(net_input)).values()],
            signatures["predict_raw"])
        fns[name + " end to end"] = functools.partial(
            lambda serve: [t.numpy() for t in serve(images=tf.constant(picture)).values()],
            signatures["serving_default"])
    # fp32 TFLite files run with XNNPACK, one thread per core.
    for raw, label, feed in ((True, "tflite network", {"normalized_images": net_input}),
                             (False, "tflite end to end", {"images": picture})):
        path = export_tflite(folded, detector.config, os.path.join(root, "%s.tflite" % raw), "fp32",
                             raw_outputs=raw)
        runner = tf.lite.Interpreter(path, num_threads=os.cpu_count()).get_signature_runner()
        fns[label] = functools.partial(lambda run, feed: run(**feed), runner, feed)
    return fns


def peer_fns():
    """{label: fn} for effdet's tf_efficientdet_d0, or {} with a message when it is not installed."""
    try:
        import effdet
        import torch
    except ImportError as e:
        print("peer skipped: torch/effdet not importable (%s)" % e)
        return {}
    fns = {}
    x = torch.randn(1, 3, 512, 512)
    for task, label in (("", "effdet network"), ("predict", "effdet end to end")):
        model = effdet.create_model("tf_efficientdet_d0", bench_task=task, pretrained=False,
                                    pretrained_backbone=False).eval()

        def run(model=model):
            with torch.no_grad():
                return model(x)
        fns[label] = run
    return fns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--no_peer", action="store_true")
    parser.add_argument("--xla", action="store_true", help="also time the XLA-compiled SavedModel "
                        "(about 10x slower on CPU)")
    args = parser.parse_args()
    fns = {} if args.no_peer else peer_fns()
    with tempfile.TemporaryDirectory() as root:
        fns.update(tensorflow_fns(args, root))
        timings = interleaved_medians(fns, args.runs, args.warmup)
    print("\nD0, batch 1, 512x512, CPU (%d cores), medians of %d runs" % (os.cpu_count(), args.runs))
    for label, ms in timings.items():
        kind = "network" if label.endswith("network") else "end to end"
        peer = timings.get("effdet " + kind)
        ratio = "  %.2fx faster than effdet" % (peer / ms) if peer and not label.startswith("effdet") else ""
        print("%-28s %8.1f ms%s" % (label, ms, ratio))


if __name__ == "__main__":
    main()
