"""Builds tf.Examples with the project's keys and writes them to deterministic TFRecord shards."""

import concurrent.futures
import itertools

import tensorflow as tf


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def build_example(encoded_jpeg, width, height, source_id, filename, boxes, labels, texts,
                  areas, is_crowd):
    """Returns a tf.train.Example for one picture (DESIGN §5 keys).

    Args:
      encoded_jpeg: JPEG bytes of an RGB picture.
      width, height: picture size in pixels.
      source_id: image id as a string (COCO image id for evaluation).
      filename: the picture's file name, for people reading the records.
      boxes: list of COCO boxes [x, y, w, h] in pixels, already clipped to the picture.
      labels: 1-based category id per box.
      texts: category name per box.
      areas: area per box in pixels.
      is_crowd: 0/1 per box.
    """
    # TFRecords store boxes normalised to [0, 1] so that resizing never touches them.
    xmin = [b[0] / width for b in boxes]
    ymin = [b[1] / height for b in boxes]
    xmax = [(b[0] + b[2]) / width for b in boxes]
    ymax = [(b[1] + b[3]) / height for b in boxes]
    feature = {
        "image/encoded": _bytes([encoded_jpeg]),
        "image/format": _bytes([b"jpeg"]),
        "image/source_id": _bytes([str(source_id).encode("utf-8")]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/filename": _bytes([filename.encode("utf-8")]),
        "image/object/bbox/xmin": _floats(xmin),
        "image/object/bbox/ymin": _floats(ymin),
        "image/object/bbox/xmax": _floats(xmax),
        "image/object/bbox/ymax": _floats(ymax),
        "image/object/class/label": _ints([int(v) for v in labels]),
        "image/object/class/text": _bytes([t.encode("utf-8") for t in texts]),
        "image/object/area": _floats(areas),
        "image/object/is_crowd": _ints([int(v) for v in is_crowd]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


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
