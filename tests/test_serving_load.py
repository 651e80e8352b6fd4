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
from helpers import synthetic_picture
from test_export import _example

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


def _requests(signatures):
    """(name, call, expected error or None) for the good and the bad requests."""
    serving, by_bytes, by_example = (signatures[k] for k in ("serving_default", "serve_image_bytes",
                                                            "serve_tf_example"))
    pictures = [synthetic_picture(h, w, seed) for seed, (h, w) in enumerate([(96, 128), (140, 100), (128, 128)])]
    good = {"picture %d" % i: (lambda p=p: serving(images=tf.constant(p[None]))) for i, p in enumerate(pictures)}
    png = tf.io.encode_png(pictures[1]).numpy()
    good["png bytes"] = lambda: by_bytes(image_bytes=tf.constant([png]))
    good["tf.Example"] = lambda: by_example(serialized_example=tf.constant([_example(png)]))
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


def _run(call):
    try:
        return {k: v.numpy() for k, v in call().items()}, None
    except Exception as e:  # noqa: BLE001 - the error is the result under test
        return None, e


@pytest.mark.slow
def test_sixteen_clients_with_bad_requests_among_them(signatures):
    good, bad = _requests(signatures[1])
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
