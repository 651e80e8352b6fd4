"""Shared pieces of the command-line tools: one-line errors instead of tracebacks."""

import sys

from absl import app, flags, logging


class UsageError(ValueError):
    """A bad flag or input a command-line tool reports in one line."""


def _expected_errors():
    from efficientdet_tf.checkpoints.official import CheckpointError
    from efficientdet_tf.config import ConfigError
    from efficientdet_tf.model.fpn_topologies import TopologyError
    return (ConfigError, CheckpointError, TopologyError, UsageError, FileNotFoundError)


def run(main):
    """Runs an absl `main(argv)`; expected errors print `<tool>: error: <message>` and exit 1."""

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            # TensorFlow's INFO lines (signature renames, saver timings) bury the tools' own output.
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except _expected_errors() as e:
            tool = argv[0].rsplit("/", 1)[-1] if argv else "efficientdet"
            print("%s: error: %s" % (tool, e), file=sys.stderr)
            sys.exit(1)

    app.run(guarded)
