"""The library leaves the process as it found it: importing any module changes no environment
variable, logging level, random seed or malloc setting; only the training tools pad malloc."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Appended to each probe: frees 300 MB of heap blocks (below the mmap threshold) and sets `kept`
# to the free top of the main heap that malloc keeps: ~0 with glibc's default padding, 256 MB padded.
KEPT_BY_MALLOC = textwrap.dedent("""
    import ctypes
    class MallInfo(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(100_000) for _ in range(3000)]
    for block in reversed(blocks):
        libc.free(block)
    kept = libc.mallinfo2().keepcost
""")

# Third-party packages are imported first: what they change on import is theirs, not ours.
PROBE = textwrap.dedent("""
    import importlib, json, logging, os, pkgutil, sys
    import numpy, yaml, PIL.Image, matplotlib, absl.flags, absl.logging, tensorflow as tf, keras
    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config

    def state():
        loggers = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
                   if isinstance(logger, logging.Logger)}
        loggers["<root>"] = logging.root.level
        return {"environ": dict(os.environ), "loggers": loggers, "absl": absl.logging.get_verbosity(),
                "tf_logger": tf.get_logger().level, "seed": context.global_seed(),
                "dtype_policy": keras.config.dtype_policy().name,
                "determinism": tf_config.is_op_determinism_enabled()}

    before = state()
    import efficientdet_tf, tfrecord_tools
    names = []
    for package in (efficientdet_tf, tfrecord_tools):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
            names.append(module.name)
            # Each tool defines its own flags (--hparams in several): drop them before the next tool.
            if module.name.startswith("efficientdet_tf.cli.") and module.name != "efficientdet_tf.cli.common":
                for flag in absl.flags.FLAGS.get_flags_for_module(module.name):
                    delattr(absl.flags.FLAGS, flag.name)
    after = state()
""") + KEPT_BY_MALLOC + 'print("STATE " + json.dumps({"before": before, "after": after, "modules": names, "kept": kept}))\n'


def _run(code, *args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "EFFICIENTDET_TF_MALLOC_TOP_PAD")}
    environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(environ, **env), timeout=600)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_importing_every_module_changes_nothing_process_wide():
    done = _run(PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.split("STATE ", 1)[1])
    assert len(state["modules"]) > 60 and "efficientdet_tf.cli.train" in state["modules"]
    before, after = state["before"], state["after"]
    assert after["environ"] == before["environ"]
    assert {k: v for k, v in after["loggers"].items() if k in before["loggers"]} == before["loggers"]
    assert all(level == 0 for name, level in after["loggers"].items() if name not in before["loggers"]), \
        {name: level for name, level in after["loggers"].items() if name not in before["loggers"]}
    for key in ("absl", "tf_logger", "seed", "dtype_policy", "determinism"):
        assert after[key] == before[key], key
    # With glibc's default top padding 300 MB freed goes back to the system; padded, 256 MB stays.
    assert state["kept"] < 64 << 20


TOOL = textwrap.dedent("""
    import importlib, sys
    tool = sys.argv[1]
    sys.argv = ["efficientdet-" + tool, "--model_dir="]
    try:
        importlib.import_module("efficientdet_tf.cli." + tool).run()
    except SystemExit:
        pass
""") + KEPT_BY_MALLOC + 'print("KEPT", kept)\n'


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
@pytest.mark.slow
def test_the_training_tools_pad_malloc_and_name_a_malformed_setting():
    padded = _run(TOOL, "train")
    assert int(padded.stdout.split("KEPT ")[1]) > 200 << 20, padded.stderr[-2000:]
    assert "efficientdet-train: error: --model_dir is required" in padded.stderr
    assert int(_run(TOOL, "train", EFFICIENTDET_TF_MALLOC_TOP_PAD="0").stdout.split("KEPT ")[1]) < 64 << 20
    units = _run(TOOL, "train", EFFICIENTDET_TF_MALLOC_TOP_PAD="128M")
    assert 100 << 20 < int(units.stdout.split("KEPT ")[1]) < 200 << 20
    bad = _run(TOOL, "demo", EFFICIENTDET_TF_MALLOC_TOP_PAD="lots")
    assert bad.stderr.strip().splitlines() == [
        "efficientdet-demo: error: EFFICIENTDET_TF_MALLOC_TOP_PAD must be a byte count such as 268435456 or "
        "256M (0 leaves malloc alone), got 'lots'"]


@pytest.mark.slow
def test_onnx_export_gives_back_the_logging_it_quiets(tmp_path):
    """tf2onnx's set_level also sets TensorFlow's logger and TF_CPP_MIN_LOG_LEVEL; all come back."""
    pytest.importorskip("tf2onnx")
    import logging

    import tensorflow as tf
    import tf2onnx  # noqa: F401 - its own import is not ours to judge

    from efficientdet_tf.export.onnx import export_onnx
    from efficientdet_tf.model.efficientdet import build_model

    model = build_model("efficientdet-lite0", "image_size=128,num_classes=2")
    loggers = [logging.getLogger("tf2onnx"), tf.get_logger()]
    levels = [logger.level for logger in loggers]
    cpp = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    export_onnx(model, model.config, str(tmp_path / "net.onnx"), network_only=True)
    assert (tmp_path / "net.onnx").stat().st_size > 1 << 20
    assert [logger.level for logger in loggers] == levels
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == cpp
