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


def read_boxes(files, limit=None):
    """(pictures, skipped) of the first `limit` records of `files` (all when None): pictures is a list of
    (height, width, boxes [N, 4] normalised [ymin, xmin, ymax, xmax]); a picture is decoded only when
    its record lacks image/height or image/width. Records that do not parse are counted in `skipped`
    (the rest of a file whose TFRecord framing is corrupt too: it cannot be read past that point)."""
    import numpy as np

    from efficientdet_tf.data import schema

    features = {key: tf.io.VarLenFeature(tf.float32) for key in
                (schema.BBOX_YMIN, schema.BBOX_XMIN, schema.BBOX_YMAX, schema.BBOX_XMAX)}
    features.update({schema.HEIGHT: tf.io.FixedLenFeature([], tf.int64, 0),
                     schema.WIDTH: tf.io.FixedLenFeature([], tf.int64, 0),
                     schema.ENCODED: tf.io.FixedLenFeature([], tf.string, b"")})
    pictures, skipped = [], 0
    for path in files:
        try:
            for serialized in tf.data.TFRecordDataset(path):
                if limit is not None and len(pictures) >= limit:
                    return pictures, skipped
                try:
                    parsed = tf.io.parse_single_example(serialized, features)
                    height, width = int(parsed[schema.HEIGHT]), int(parsed[schema.WIDTH])
                    if height <= 0 or width <= 0:
                        height, width = tf.io.decode_image(parsed[schema.ENCODED], channels=3).shape[:2]
                    boxes = np.stack([tf.sparse.to_dense(parsed[key]).numpy() for key in
                                      (schema.BBOX_YMIN, schema.BBOX_XMIN, schema.BBOX_YMAX, schema.BBOX_XMAX)], -1)
                except (tf.errors.InvalidArgumentError, ValueError):
                    skipped += 1
                    continue
                pictures.append((int(height), int(width), boxes))
        except tf.errors.DataLossError:
            skipped += 1
    return pictures, skipped
