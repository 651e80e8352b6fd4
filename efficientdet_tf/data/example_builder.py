"""Builds detection tf.Examples (DESIGN §5 keys) from pictures and pixel boxes, for tests and benchmarks."""

import io

import numpy as np
from PIL import Image
import tensorflow as tf


def encode_picture(image, image_format="jpeg"):
    """Encodes a uint8 [H, W] or [H, W, 3] array as JPEG (quality 95) or PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format=image_format.upper(), quality=95)
    return buffer.getvalue()


def make_example(image, boxes, classes, source_id="0", image_format="jpeg", is_crowd=None,
                 area=None, encoded=None):
    """Serialized tf.Example for one picture.

    Args:
      image: uint8 array [H, W] or [H, W, 3].
      boxes: [N, 4] absolute pixels [ymin, xmin, ymax, xmax]; stored normalised.
      classes: [N] 1-based ids.
      source_id: image id string.
      image_format: 'jpeg' or 'png'.
      is_crowd, area: optional [N] lists (omitted from the record when None).
      encoded: optional image bytes to store instead of encoding `image` (e.g. corrupt bytes).
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    normalised = boxes / np.array([height, width, height, width], np.float32)

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    feature = {
        "image/encoded": strings([encoded if encoded is not None else encode_picture(image, image_format)]),
        "image/format": strings([image_format.encode()]),
        "image/source_id": strings([str(source_id).encode()]),
        "image/height": ints([height]),
        "image/width": ints([width]),
        "image/object/bbox/ymin": floats(normalised[:, 0]),
        "image/object/bbox/xmin": floats(normalised[:, 1]),
        "image/object/bbox/ymax": floats(normalised[:, 2]),
        "image/object/bbox/xmax": floats(normalised[:, 3]),
        "image/object/class/label": ints(classes),
    }
    if is_crowd is not None:
        feature["image/object/is_crowd"] = ints(is_crowd)
    if area is not None:
        feature["image/object/area"] = floats(area)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, examples):
    """Writes serialized examples to one TFRecord file and returns the path."""
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            writer.write(example)
    return path
