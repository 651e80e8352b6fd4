"""An exported SavedModel under concurrent clients, bad requests among the good ones: errors, latency, memory.

    python -m benchmarks.serving_load [--checkpoint DIR] [--image_size 512] [--threads 16] [--requests 400]

Exports D0 (the reference checkpoint when present, batch norms folded), then calls its signatures
from `--threads` threads as TF Serving would: every tenth request is a bad one (wrong dtype, no
batch axis, 0x0, 10000x10000, bytes that are no picture, a malformed tf.Example), the rest are
good pictures of three sizes, PNG bytes and tf.Examples. Prints a table: requests, errors and
whether each error was the expected one, whether every good answer equals the one-at-a-time answer,
latency percentiles of the good requests, and the process's resident memory before and after.
"""

import argparse
import concurrent.futures
import os
import tempfile
import time

import numpy as np

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                  "reference", "efficientdet-d0")


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024.0


def _example(tf, encoded):
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def serving_requests(signatures, pictures):
    """({name: call} of the good requests, {name: (call, expected error pattern)} of the bad ones) for
    the signatures of an exported SavedModel; the good ones send `pictures` (three uint8 [H, W, 3])."""
    import tensorflow as tf

    serving, by_bytes, by_example = (signatures[k] for k in ("serving_default", "serve_image_bytes",
                                                            "serve_tf_example"))
    good = {"picture %d" % i: (lambda p=p: serving(images=tf.constant(p[None]))) for i, p in enumerate(pictures)}
    png = tf.io.encode_png(pictures[1]).numpy()
    good["png bytes"] = lambda: by_bytes(image_bytes=tf.constant([png]))
    good["tf.Example"] = lambda: by_example(serialized_example=tf.constant([_example(tf, png)]))
    huge = tf.zeros([1, 10000, 10000, 3], tf.uint8)
    bad = {
        "float32 pixels": (lambda: serving(images=tf.constant(pictures[0][None].astype(np.float32))), "expected to be a uint8 tensor"),
        "no batch axis": (lambda: serving(images=tf.constant(pictures[0])), "not compatible with expected shape \\[\\?,\\?,\\?,3\\]"),
        "0x0 picture": (lambda: serving(images=tf.zeros([1, 0, 0, 3], tf.uint8)), "at least 1 pixel"),
        "10000x10000 picture": (lambda: serving(images=huge), "picture larger than 67108864 pixels"),
        "bytes that are no picture": (lambda: by_bytes(image_bytes=tf.constant([b"GIF89a, or not"])),
                                      "Unknown image file format|decode"),
        "malformed tf.Example": (lambda: by_example(serialized_example=tf.constant([b"\x0a\xff\x01broken"])),
                                 "serialized_example_is_not_a_tf_Example"),
    }
    return good, bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    import tensorflow as tf

    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.runtime import Detector

    checkpoint = args.checkpoint if os.path.isdir(args.checkpoint) else None
    detector = Detector("efficientdet-d0", checkpoint, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as root:
        path = export_saved_model(fold_and_check(detector.model, detector.config), detector.config, root)
        loaded = tf.saved_model.load(path)
        pictures = [np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
                    for seed, (h, w) in enumerate([(96, 128), (140, 100), (128, 128)])]
        good, bad = serving_requests(loaded.signatures, pictures)
        alone = {name: {k: v.numpy() for k, v in call().items()} for name, call in good.items()}
        before = rss_mb()
        names = list(good)
        schedule = [list(bad)[i // 10 % len(bad)] if i % 10 == 9 else names[i % len(names)]
                    for i in range(args.requests)]

        def one(name):
            start = time.perf_counter()
            try:
                out = good[name]() if name in good else bad[name][0]()
                result = {k: v.numpy() for k, v in out.items()}, None
            except Exception as e:  # noqa: BLE001 - the error is what is measured
                result = None, e
            return name, time.perf_counter() - start, result

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
            results = list(pool.map(one, schedule))
        wall = time.perf_counter() - start
        after = rss_mb()
    import re
    latencies = [seconds * 1000 for name, seconds, _ in results if name in good]
    same = all(np.allclose(out[k], alone[name][k], atol=1e-5) for name, _, (out, err) in results
               if name in good and err is None for k in out)
    served = sum(1 for name, _, (out, err) in results if name in good and err is None)
    expected_errors = sum(1 for name, _, (out, err) in results
                          if name in bad and err is not None and re.search(bad[name][1], str(err)))
    print("| requests | threads | good served | bad refused with the expected error | good answers equal to "
          "one-at-a-time | latency p50 / p90 / p99 (ms) | pictures/s | resident memory before / after (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %d of %d | %d of %d | %s | %.0f / %.0f / %.0f | %.1f | %.0f / %.0f |" % (
        len(schedule), args.threads, served, len(latencies), expected_errors, len(schedule) - len(latencies),
        "yes" if same else "NO", *np.percentile(latencies, [50, 90, 99]), len(schedule) / wall, before, after))


if __name__ == "__main__":
    main()
