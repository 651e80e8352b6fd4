"""Console-script entry points of the dataset tools: TensorFlow starts quietly unless --verbose."""

import importlib
import sys


def _launch(module_name):
    # TensorFlow prints its start-up lines when it is first imported, so the quieting has to come
    # before the tool module (which imports TensorFlow) is loaded.
    from efficientdet_tf.cli import common

    if "--verbose" not in sys.argv[1:]:
        common.quiet_tensorflow_startup()
    importlib.import_module("tfrecord_tools." + module_name).run()


def create_coco_tfrecord():
    """`create_coco_tfrecord`: COCO JSON -> TFRecords."""
    _launch("create_coco_tfrecord")


def create_voc_tfrecord():
    """`create_voc_tfrecord`: Pascal VOC XML -> TFRecords."""
    _launch("create_voc_tfrecord")


def create_yolo_tfrecord():
    """`create_yolo_tfrecord`: YOLO txt -> TFRecords."""
    _launch("create_yolo_tfrecord")


def inspect_tfrecord():
    """`inspect_tfrecord`: validation, statistics and rendering of TFRecords."""
    _launch("inspect_tfrecord")


def make_shapes_dataset():
    """`make_shapes_dataset`: the built-in synthetic shapes dataset."""
    _launch("make_shapes_dataset")
