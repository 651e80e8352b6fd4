"""TFLite export (fp32, fp16, int8): network, decoding and NMS in one model on a fixed-size input."""

import shutil
import tempfile

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from efficientdet_tf.data import schema
from efficientdet_tf.inference import detect_images, raw_output_dict
from efficientdet_tf.ops.image_decoding import decode_image

QUANTIZATIONS = ("fp32", "fp16", "int8")


def calibration_images(file_pattern, input_size, count=100):
    """Yields [uint8 [1, h, w, 3]] from the `image/encoded` pictures of TFRecords matching the pattern.

    Pictures are resized (aspect ratio ignored) to the TFLite input size: calibration only needs
    activations of the right range, not exact geometry.
    """
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ValueError("no TFRecord file matches --calibration_file_pattern=%r" % file_pattern)
    records = tf.data.TFRecordDataset(files).take(count)
    for record in records:
        encoded = tf.io.parse_single_example(
            record, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})[schema.ENCODED]
        image = tf.image.resize(decode_image(encoded), input_size)
        yield [tf.cast(tf.round(image), tf.uint8)[None].numpy()]


def export_tflite(network, config, path, quantization="fp32", input_size=None,
                  calibration_file_pattern=None, num_calibration_images=100, raw_outputs=False):
    """Converts uint8 pictures [1, h, w, 3] -> detections (the `serving_default` graph) to TFLite.

    The file holds preprocessing, the network, box decoding and NMS (NonMaxSuppressionV5 is a TFLite
    builtin); its signature 'serving_default' has input `images` and the four named outputs. With
    the default input size (image_size square) pass pictures already letterboxed to that size and
    multiply the boxes by your own resize scale; pictures of exactly `input_size` need nothing.

    Args:
      network: the (folded) Keras network.
      config: the Config (image_size, nms).
      path: output .tflite file.
      quantization: 'fp32', 'fp16' (weights) or 'int8' (full integer where ops allow, float fallback).
      input_size: (height, width) of the fixed input; default (image_size, image_size).
      calibration_file_pattern: TFRecords with image/encoded, required for int8.
      num_calibration_images: how many calibration pictures to read.
      raw_outputs: convert the network alone instead: normalised float32 `normalized_images`
        [1, S, S, 3] in, the raw per-level outputs out (the `predict_raw` graph; fp32/fp16 only).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError("quantization must be one of %s, got %r" % (QUANTIZATIONS, quantization))
    input_size = tuple(input_size or (config.image_size, config.image_size))
    if raw_outputs:
        if quantization == "int8":
            raise ValueError("raw_outputs exports take fp32 or fp16")
        size = config.image_size
        detect = tf.function(lambda normalized_images: raw_output_dict(network, config, normalized_images),
                             input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32,
                                                            name="normalized_images")])
    else:
        detect = tf.function(lambda images: detect_images(network, config, images), input_signature=[
            tf.TensorSpec([1, input_size[0], input_size[1], 3], tf.uint8, name="images")])
    # Freeze the weights into constants first: the converter leaves Keras 3 variables as
    # VAR_HANDLE/READ_VARIABLE ops that read garbage at run time (TF 2.21).
    concrete = detect.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    module = tf.Module()
    module.detect = tf.function(
        lambda images: tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(images)),
        input_signature=detect.input_signature)
    # Through a SavedModel: from_concrete_functions drops the signature of a variable-free function.
    saved = tempfile.mkdtemp(prefix="efficientdet_tflite_")
    tf.saved_model.save(module, saved, signatures=module.detect.get_concrete_function(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if not calibration_file_pattern:
            raise ValueError("int8 TFLite needs --calibration_file_pattern (TFRecords with image/encoded)")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: calibration_images(
            calibration_file_pattern, input_size, num_calibration_images)
        # Integer kernels where they exist; decoding and NMS stay float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        data = converter.convert()
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    with open(path, "wb") as f:
        f.write(data)
    return path
