"""Decoding of detection tf.Examples (the keys of `efficientdet_tf.data.schema`, docs/conventions.md) into the pipeline's internal dict.

Two stages keep the expensive part after shuffling: `parse_example` turns serialized bytes into a
"raw" dict that still holds the encoded image and normalised boxes; `decode_raw` decodes the image
and converts boxes to absolute pixels. The TFDS source produces the same raw dict.

Raw dict: encoded (string), source_id (string), boxes (float32 [N, 4] normalised
[ymin, xmin, ymax, xmax]), classes (int32 [N], 1-based ids), is_crowd (int32 [N], 0/1),
area (float32 [N], pixels; empty when the record has none).

Internal (decoded) dict: image (uint8 [H, W, 3]), source_id, boxes (float32 [N, 4] absolute
pixels), classes, is_crowd, area (float32 [N]; box areas when the record had none), height, width.
"""

import tensorflow as tf

from efficientdet_tf.data import schema
from efficientdet_tf.ops.image_decoding import decode_image

_FEATURES = {
    schema.ENCODED: tf.io.FixedLenFeature((), tf.string),
    schema.SOURCE_ID: tf.io.FixedLenFeature((), tf.string, default_value=""),
    schema.BBOX_YMIN: tf.io.VarLenFeature(tf.float32),
    schema.BBOX_XMIN: tf.io.VarLenFeature(tf.float32),
    schema.BBOX_YMAX: tf.io.VarLenFeature(tf.float32),
    schema.BBOX_XMAX: tf.io.VarLenFeature(tf.float32),
    schema.CLASS_LABEL: tf.io.VarLenFeature(tf.int64),
    schema.AREA: tf.io.VarLenFeature(tf.float32),
    schema.IS_CROWD: tf.io.VarLenFeature(tf.int64),
}


def _dense(sparse):
    return tf.sparse.to_dense(sparse)


def parse_example(serialized):
    """Parses one serialized tf.Example into the raw dict (image still encoded).

    Fails (tf.errors.InvalidArgumentError) when the bytes are not a tf.Example, the image is
    missing, or the box coordinate and label lists have different lengths: a record whose boxes
    cannot be paired with labels is not guessed at.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    coords = [_dense(parsed[key]) for key in schema.BBOX_KEYS]
    classes = tf.cast(_dense(parsed[schema.CLASS_LABEL]), tf.int32)
    num = tf.size(classes)
    checks = [tf.debugging.assert_equal(tf.size(c), num, message="box and label counts differ")
              for c in coords]
    with tf.control_dependencies(checks):
        boxes = tf.stack(coords, axis=-1)
    is_crowd = tf.cast(_dense(parsed[schema.IS_CROWD]), tf.int32)
    # Crowd flags are optional; a missing list means "no crowd boxes".
    is_crowd = tf.cond(tf.equal(tf.size(is_crowd), num), lambda: is_crowd,
                       lambda: tf.zeros([num], tf.int32))
    return {
        "encoded": parsed[schema.ENCODED],
        "source_id": parsed[schema.SOURCE_ID],
        "boxes": boxes,
        "classes": classes,
        "is_crowd": is_crowd,
        "area": _dense(parsed[schema.AREA]),
    }


def decode_raw(raw):
    """Decodes the image of a raw dict and converts its boxes to absolute pixels.

    Box coordinates scale by the decoded image's size (not the stored height/width, which a
    converter may have got wrong).
    """
    image = decode_image(raw["encoded"])
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    scale = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    boxes = tf.reshape(raw["boxes"], [-1, 4]) * scale
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = tf.cast(raw["area"], tf.float32)
    area = tf.cond(tf.equal(tf.size(area), tf.shape(boxes)[0]), lambda: area, lambda: box_area)
    return {
        "image": image,
        "source_id": raw["source_id"],
        "boxes": boxes,
        "classes": tf.cast(raw["classes"], tf.int32),
        "is_crowd": tf.cast(raw["is_crowd"], tf.int32),
        "area": area,
        "height": height,
        "width": width,
    }


def decode_example(serialized):
    """Parses and decodes one serialized tf.Example into the internal dict (see module docstring)."""
    return decode_raw(parse_example(serialized))
