"""Builds tf.Examples with the project's keys and writes them to deterministic TFRecord shards."""

import concurrent.futures
import io
import itertools

import numpy as np
from PIL import Image
import tensorflow as tf

from efficientdet_tf.data import schema


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def build_example(encoded_jpeg, width, height, source_id, filename, boxes, labels, texts=None,
                  areas=None, is_crowd=None, image_format="jpeg"):
    """Returns a tf.train.Example for one picture (the keys of `efficientdet_tf.data.schema`, docs/conventions.md).

    Args:
      encoded_jpeg: encoded bytes of an RGB picture (JPEG unless `image_format` says otherwise).
      width, height: picture size in pixels.
      source_id: image id as a string (COCO image id for evaluation).
      filename: the picture's file name, for people reading the records.
      boxes: list of COCO boxes [x, y, w, h] in pixels, already clipped to the picture.
      labels: 1-based category id per box.
      texts, areas, is_crowd: optional per-box category name, area in pixels and 0/1 crowd flag;
        a key left as None is not written (readers treat it as absent).
      image_format: 'jpeg' or 'png', stored under image/format.
    """
    # TFRecords store boxes normalised to [0, 1] so that resizing never touches them.
    xmin = [b[0] / width for b in boxes]
    ymin = [b[1] / height for b in boxes]
    xmax = [(b[0] + b[2]) / width for b in boxes]
    ymax = [(b[1] + b[3]) / height for b in boxes]
    feature = {
        schema.ENCODED: _bytes([encoded_jpeg]),
        schema.FORMAT: _bytes([image_format.encode("utf-8")]),
        schema.SOURCE_ID: _bytes([str(source_id).encode("utf-8")]),
        schema.HEIGHT: _ints([height]),
        schema.WIDTH: _ints([width]),
        schema.FILENAME: _bytes([filename.encode("utf-8")]),
        schema.BBOX_XMIN: _floats(xmin),
        schema.BBOX_YMIN: _floats(ymin),
        schema.BBOX_XMAX: _floats(xmax),
        schema.BBOX_YMAX: _floats(ymax),
        schema.CLASS_LABEL: _ints([int(v) for v in labels]),
    }
    if texts is not None:
        feature[schema.CLASS_TEXT] = _bytes([t.encode("utf-8") for t in texts])
    if areas is not None:
        feature[schema.AREA] = _floats([float(a) for a in areas])
    if is_crowd is not None:
        feature[schema.IS_CROWD] = _ints([int(v) for v in is_crowd])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def encode_picture(image, image_format="jpeg"):
    """Encodes a uint8 [H, W] or [H, W, 3] array as JPEG (quality 95) or PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format=image_format.upper(), quality=95)
    return buffer.getvalue()


def make_example(image, boxes, classes, source_id="0", image_format="jpeg", is_crowd=None,
                 area=None, encoded=None):
    """Serialized tf.Example of a picture given as pixels, for tests, benchmarks and synthetic data.

    Args:
      image: uint8 array [H, W] or [H, W, 3].
      boxes: [N, 4] absolute pixels [ymin, xmin, ymax, xmax].
      classes: [N] 1-based ids.
      source_id: image id string.
      image_format: 'jpeg' or 'png'.
      is_crowd, area: optional [N] lists (omitted from the record when None).
      encoded: optional bytes to store instead of encoding `image` (e.g. corrupt bytes).
    """
    height, width = np.asarray(image).shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    coco_boxes = [[b[1], b[0], b[3] - b[1], b[2] - b[0]] for b in boxes]
    data = encoded if encoded is not None else encode_picture(image, image_format)
    return build_example(data, width, height, source_id, "", coco_boxes, classes, areas=area,
                         is_crowd=is_crowd, image_format=image_format).SerializeToString()


def write_records(path, examples):
    """Writes serialized examples to one TFRecord file and returns the path."""
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            writer.write(example)
    return path


def shard_paths(output_prefix, num_shards):
    """Paths `<prefix>-00000-of-00004.tfrecord` ... for `num_shards` shards."""
    return ["%s-%05d-of-%05d.tfrecord" % (output_prefix, i, num_shards) for i in range(num_shards)]


def ordered_parallel_map(fn, items, num_workers, chunk_size=64):
    """Yields fn(item) for every item, in input order, computing up to `num_workers` at a time.

    Threads suffice because the heavy part (Pillow decode/encode) releases the GIL; results come
    back in input order, so whatever is written from them does not depend on `num_workers`.
    Items are taken a chunk at a time so that memory stays bounded on large datasets.
    """
    items = iter(items)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        while True:
            chunk = list(itertools.islice(items, chunk_size * max(1, num_workers)))
            if not chunk:
                return
            yield from pool.map(fn, chunk)


def write_sharded(indexed_examples, output_prefix, num_shards):
    """Writes (index, serialized example) pairs; index i goes to shard i % num_shards.

    `index` is the picture's position in the input list, so a skipped picture does not move the
    others to other shards. Returns the shard paths (every shard is created, even when empty).
    """
    paths = shard_paths(output_prefix, num_shards)
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    try:
        for index, serialized in indexed_examples:
            writers[index % num_shards].write(serialized)
    finally:
        for writer in writers:
            writer.close()
    return paths
