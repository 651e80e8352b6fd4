"""An exported SavedModel under 16 concurrent clients with bad requests among the good ones.

As TF Serving calls it: every good request gets the detections it gets alone, every bad one a clear
error, the good requests after a bad one are still served, and memory stays flat.
"""

import concurrent.futures
import re

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.ops.postprocess import OUTPUT_KEYS
from benchmarks.serving_load import serving_requests
from helpers import synthetic_picture

SIZE = 128
THREADS = 16


def _rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024.0


@pytest.fixture(scope="module")
def signatures(d0_reference_dir, tmp_path_factory):
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.runtime import Detector

    detector = Detector("efficientdet-d0", d0_reference_dir, image_size=SIZE)
    path = export_saved_model(fold_and_check(detector.model, detector.config), detector.config,
                              str(tmp_path_factory.mktemp("export")))
    loaded = tf.saved_model.load(path)
    return loaded, loaded.signatures


def _run(call):
    try:
        return {k: v.numpy() for k, v in call().items()}, None
    except Exception as e:  # noqa: BLE001 - the error is the result under test
        return None, e


@pytest.mark.slow
def test_sixteen_clients_with_bad_requests_among_them(signatures):
    pictures = [synthetic_picture(h, w, seed) for seed, (h, w) in enumerate([(96, 128), (140, 100), (128, 128)])]
    good, bad = serving_requests(signatures[1], pictures)
    alone = {name: _run(call)[0] for name, call in good.items()}
    names = list(good)
    schedule = []
    for i in range(320):
        schedule.append(list(bad)[i // 10 % len(bad)] if i % 10 == 9 else names[i % len(names)])
    memory, seen = [], {}
    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda name: (name, _run(good[name] if name in good else bad[name][0])),
                                    schedule))
        memory.append(_rss_mb())
        errors = 0
        for name, (outputs, error) in results:
            if name in bad:
                errors += 1
                assert error is not None, name
                message = str(error).strip()
                assert re.search(bad[name][1], message), (name, message[:500])
                seen[name] = message.splitlines()[-2 if "[[" in message.splitlines()[-1] else -1][:160]
                continue
            assert error is None, (name, error)
            for key in OUTPUT_KEYS:
                np.testing.assert_allclose(outputs[key], alone[name][key], atol=1e-5, err_msg=name + " " + key)
        assert errors == 32
    print("errors:", seen, "\nresident memory after each round of 320 (MB):", memory)
    # The second round of 320 requests must not grow the process: nothing kept per request.
    assert memory[1] - memory[0] < 64, memory
