"""ONNX export with tf2onnx: end to end (uint8 pictures in, detections out, NMS inside) or the network alone.

tf2onnx converts the same TensorFlow functions the SavedModel serves, so preprocessing and box
decoding are the ones TensorFlow runs; only the NMS differs in form (`ops.loop_nms`, an ONNX
`Loop`, because ONNX's own NonMaxSuppression has no soft-NMS). tf2onnx and onnx come with the
`onnx` extra and are imported only here.
"""

import contextlib
import json
import logging
import os

import tensorflow as tf

from efficientdet_tf.inference import (ONNX_CONFIG_KEY as CONFIG_KEY, ONNX_INSTALL_HINT as INSTALL_HINT,
                                       detect_images, raw_output_dict)

OPSET = 17


def import_converter():
    """(onnx, tf2onnx), or an ImportError that says in one line how to install them."""
    try:
        import onnx
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx and onnx, which are not installed: %s" % INSTALL_HINT) from None
    return onnx, tf2onnx


@contextlib.contextmanager
def _quiet_converter(tf2onnx):
    """tf2onnx at ERROR level (its INFO lines list every rewrite of the graph), then the process's
    logging as it was: its `set_level` also changes TensorFlow's logger and TF_CPP_MIN_LOG_LEVEL."""
    loggers = [logging.getLogger("tf2onnx"), tf.get_logger()]
    levels = [logger.level for logger in loggers]
    cpp_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    tf2onnx.logging.set_level(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if cpp_level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = cpp_level


def export_onnx(network, config, path, network_only=False, opset=OPSET):
    """Writes `network` as an ONNX file at `path` and returns the path.

    End to end (default): input `images` uint8 [batch, height, width, 3] of any size, outputs
    `detection_boxes` [batch, M, 4] in original pixels, `detection_scores`, `detection_classes`
    (int32, 1-based) and `num_detections` (int32), as the SavedModel's `serving_default`.
    `network_only`: input `normalized_images` float32 [batch, S, S, 3] (preprocessed as the model
    does), outputs the raw head outputs class_outputs_p3 ... box_outputs_p7 (the `predict_raw`
    signature), for users who bring their own decoding and NMS (TensorRT's EfficientNMS plugin).
    The model's Config is stored in the file's metadata (`runtime.onnx.CONFIG_KEY`).
    """
    onnx, tf2onnx = import_converter()
    if network_only:
        size = config.image_size
        fn = tf.function(lambda normalized_images: raw_output_dict(network, config, normalized_images),
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="normalized_images")])
    else:
        fn = tf.function(lambda images: detect_images(network, config, images, runtime="onnx"),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    with _quiet_converter(tf2onnx):
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONFIG_KEY, json.dumps(config.as_dict())
    onnx.save(proto, path)
    return path

