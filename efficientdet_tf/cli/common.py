"""Shared pieces of the command-line tools: quiet TensorFlow start-up and one-line errors."""

import os
import sys

from absl import app, flags, logging

flags.DEFINE_bool("verbose", False, "Show TensorFlow's start-up and INFO logging, and the full traceback of errors.")


class UsageError(ValueError):
    """A bad flag or input a command-line tool reports in one line."""


def _expected_errors():
    from efficientdet_tf.checkpoints.errors import CheckpointError
    from efficientdet_tf.config import ConfigError
    from efficientdet_tf.model.fpn_topologies import TopologyError
    return (ConfigError, CheckpointError, TopologyError, UsageError, FileNotFoundError)


def quiet_tensorflow_startup():
    """Imports TensorFlow and probes its devices with the native stderr sent to /dev/null.

    TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, the oneDNN banner) are written
    before any Python logging setting applies, so only redirecting the file descriptor hides them.
    """
    # A tool's own process: its later C++ warnings hide the tool's output too (users can raise it).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main, pad_malloc=False):
    """Runs an absl `main(argv)`: errors print `<tool>: error: <message>` and exit 1.

    Without --verbose, TensorFlow starts quietly and an unexpected exception is one line too; with
    --verbose everything TensorFlow logs and the full traceback are shown. `pad_malloc` (the tools
    that train) sets glibc's malloc padding first, before TensorFlow starts its threads
    (`train.host_memory`); a malformed `$EFFICIENTDET_TF_MALLOC_TOP_PAD` stops the tool in one line.
    """
    if pad_malloc:
        from efficientdet_tf.train import host_memory

        try:
            host_memory.keep_freed_memory()
        except host_memory.MallocSettingError as e:
            print("%s: error: %s" % (os.path.basename(sys.argv[0]) or "efficientdet", e), file=sys.stderr)
            sys.exit(1)
    verbose = any(arg in ("--verbose", "--verbose=true", "--verbose=True") for arg in sys.argv[1:])
    if not verbose:
        quiet_tensorflow_startup()

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present and not verbose:
            # TensorFlow's INFO lines (signature renames, saver timings) bury the tools' own output.
            logging.set_verbosity(logging.WARNING)
        tool = argv[0].rsplit("/", 1)[-1] if argv else "efficientdet"
        try:
            return main(argv)
        except _expected_errors() as e:
            if verbose:
                raise
            print("%s: error: %s" % (tool, e), file=sys.stderr)
            sys.exit(1)
        except Exception as e:  # noqa: BLE001 - anything else still gets one line unless --verbose
            if verbose:
                raise
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print("%s: error: %s: %s (run with --verbose for the traceback)" % (tool, type(e).__name__, message),
                  file=sys.stderr)
            sys.exit(1)

    app.run(guarded)
