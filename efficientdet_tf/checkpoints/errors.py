"""Finding a checkpoint on disk, and the one error type of checkpoint handling."""

import os


def short_list(items, limit=8):
    """Sorted items joined by commas, at most `limit` of them, then how many more (for error messages)."""
    items = sorted(items)
    text = ", ".join(items[:limit])
    return text + (" ... (%d more)" % (len(items) - limit) if len(items) > limit else "")


class CheckpointError(ValueError):
    """The checkpoint cannot be found, read, or does not fit the model."""


def resolve_checkpoint(path):
    """Returns the checkpoint prefix for a prefix, a directory or an `.index` file path."""
    path = os.fspath(path)
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if os.path.isdir(path):
        import tensorflow as tf
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
            if len(indexes) == 1:
                prefix = os.path.join(path, indexes[0][: -len(".index")])
        if prefix is None:
            raise CheckpointError("no checkpoint in directory %s (expected a 'checkpoint' file or one "
                                  "'<prefix>.index')" % path)
        return prefix
    if not os.path.isfile(path + ".index"):
        raise CheckpointError("checkpoint not found: %s (no %s.index)" % (path, path))
    return path
