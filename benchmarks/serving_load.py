"""An exported SavedModel under concurrent clients, bad requests among the good ones: errors, latency, memory.

    python benchmarks/serving_load.py [--checkpoint DIR] [--image_size 512] [--threads 16] [--requests 400]

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
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                  "reference", "efficientdet-d0")


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024.0


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
    from test_serving_load import _requests

    checkpoint = args.checkpoint if os.path.isdir(args.checkpoint) else None
    detector = Detector("efficientdet-d0", checkpoint, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as root:
        path = export_saved_model(fold_and_check(detector.model, detector.config), detector.config, root)
        loaded = tf.saved_model.load(path)
        good, bad = _requests(loaded.signatures)
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
