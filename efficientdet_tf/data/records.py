"""The rules every reader of TFRecords shares: globbing, counting, the image id and the label map beside them."""

import os
import re

import tensorflow as tf

from efficientdet_tf.data.label_map import label_map_path, load_label_map

# `train-00000-of-00004.tfrecord` -> `train`: the prefix the converters write `<prefix>_label_map.yaml` for.
_SHARD_SUFFIX = re.compile(r"(-\d+-of-\d+)?\.(tfrecord|record|tfrec)(\.gz)?$")
# A numeric source id is its own image id; any other is hashed into the same int64 range.
_NUMERIC_ID = "[0-9]{1,18}"
_HASH_BUCKETS = 2 ** 62


class NoMatchError(ValueError):
    """A glob that matches no file; `pattern` is that glob."""

    def __init__(self, pattern):
        super().__init__("no file matches the input pattern %r" % pattern)
        self.pattern = pattern


def list_files(pattern):
    """Sorted, de-duplicated files matching comma-separated glob(s).

    Raises NoMatchError (a ValueError) naming the first pattern that matches nothing.
    """
    files = []
    for part in pattern.split(","):
        part = part.strip()
        matched = tf.io.gfile.glob(part) if part else []
        if not matched:
            raise NoMatchError(part)
        files.extend(matched)
    return sorted(set(files))


def count_records(files, max_bytes=None):
    """Records in the TFRecord files (reads them once); None when they are over `max_bytes`."""
    if max_bytes is not None and sum(tf.io.gfile.stat(f).length for f in files) > max_bytes:
        return None
    return int(tf.data.TFRecordDataset(files).reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def has_records(files):
    """True when the files hold at least one record (reads one)."""
    for _ in tf.data.TFRecordDataset(files).take(1):
        return True
    return False


def image_id(source_id):
    """The int64 image id of a `image/source_id` (a string tensor, any shape): the number itself when
    it is one, else a hash of the string. Ground truth, detections and COCO JSON all use this id."""
    source_id = tf.convert_to_tensor(source_id, tf.string)
    return tf.where(tf.strings.regex_full_match(source_id, _NUMERIC_ID),
                    tf.strings.to_number(tf.where(tf.strings.regex_full_match(source_id, _NUMERIC_ID),
                                                  source_id, "0"), tf.int64),
                    tf.strings.to_hash_bucket_fast(source_id, _HASH_BUCKETS))


def records_label_map(files):
    """The label map written beside TFRecords (`<prefix>_label_map.yaml`), as (path, {id: name}) or None."""
    for path in files:
        candidate = label_map_path(_SHARD_SUFFIX.sub("", path))
        if os.path.isfile(candidate):
            return candidate, load_label_map(candidate)
    return None
