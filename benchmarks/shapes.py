"""Synthetic shapes TFRecords for the benchmarks that need pictures (int8 calibration, training steps)."""

import os


def shapes_records(root):
    """TFRecords of 32 synthetic shapes pictures for int8 calibration; returns their pattern."""
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset
    folder = os.path.join(root, "shapes")
    jsons = make_shapes_dataset(folder, 32, 0, size_range=(400, 640))
    create_coco_tfrecord.create_coco_tfrecord(os.path.join(folder, "train"), jsons["train"],
                                              os.path.join(folder, "train"), num_shards=1, num_workers=2)
    return os.path.join(folder, "train-*")
