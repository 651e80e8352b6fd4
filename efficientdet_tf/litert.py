"""The TFLite interpreter of the runtime and the int8 calibration: LiteRT when installed, else tf.lite's."""

import importlib
import os
import warnings

BACKENDS = ("litert", "tensorflow")


def available_backend():
    """'litert' when `ai_edge_litert` (the `edge` extra) imports, else 'tensorflow'."""
    try:
        importlib.import_module("ai_edge_litert.interpreter")
    except ImportError:
        return "tensorflow"
    return "litert"


def make_interpreter(model_path=None, model_content=None, num_threads=None, backend=None,
                     preserve_all_tensors=False):
    """A TFLite interpreter of a file (`model_path`) or of bytes (`model_content`).

    Args:
      num_threads: CPU threads (default: every core).
      backend: 'litert' (`ai_edge_litert.interpreter.Interpreter`, the successor of
        `tf.lite.Interpreter`), 'tensorflow' (`tf.lite.Interpreter`, which TensorFlow has deprecated
        but still ships) or None: LiteRT when it is installed. Both run the same kernels.
      preserve_all_tensors: keep every intermediate tensor readable (int8 calibration).
    """
    backend = backend or available_backend()
    if backend not in BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (BACKENDS, backend))
    kwargs = dict(model_path=None if model_path is None else os.fspath(model_path), model_content=model_content,
                  num_threads=num_threads or os.cpu_count())
    with warnings.catch_warnings():
        # Keeping every intermediate tensor is what calibration needs, not the debugging mistake
        # the interpreter warns of; tf.lite's deprecation notice points to LiteRT, used when installed.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        if backend == "litert":
            from ai_edge_litert.interpreter import Interpreter
        else:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        return Interpreter(experimental_preserve_all_tensors=preserve_all_tensors, **kwargs)
