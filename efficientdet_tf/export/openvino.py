"""OpenVINO export: the TF Serving SavedModel's `serving_default` (preprocessing, network, NMS) as `.xml` + `.bin`."""

import json
import os

from efficientdet_tf.inference import OPENVINO_CONFIG_KEY as CONFIG_KEY, OPENVINO_INSTALL_HINT as INSTALL_HINT


class ConversionError(RuntimeError):
    """OpenVINO could not convert the SavedModel, in one line."""


def import_openvino():
    """The openvino module, or an ImportError that says how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise ImportError("OpenVINO export needs openvino, which is not installed: %s (%s)" % (INSTALL_HINT, e)) from None
    return openvino


def import_nncf():
    """The nncf module (int8 OpenVINO files), or an ImportError that says how to install it."""
    try:
        import nncf
    except ImportError as e:
        raise ImportError("the int8 OpenVINO file needs nncf, which is not installed: %s (%s)"
                          % (INSTALL_HINT, e)) from None
    return nncf


def export_openvino(saved_model_dir, config, path):
    """Converts an exported SavedModel (`export.saved_model.export_saved_model`) to OpenVINO IR.

    OpenVINO converts what the `serving_default` signature computes (`_serving_function`), with its
    soft-NMS (the config's `nms`); the input is uint8 `images` [batch, height, width, 3] of any
    size, the outputs are the four named detection outputs in the pictures' own pixels, as from the SavedModel. Weights
    stay float32 (no fp16 compression). The config goes into the file's runtime info.

    Returns:
      the `.xml` path (the `.bin` beside it).
    """
    ov = import_openvino()
    function = _serving_function(saved_model_dir, config)
    try:
        model = ov.convert_model(function)
    except Exception as e:  # OpenVINO's frontend errors are many types, each a page long
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        failed = next((line for line in lines if line.startswith("-- Conversion is failed for")), lines[-1] if lines else "")
        raise ConversionError("OpenVINO %s cannot convert the SavedModel %s (%s); the SavedModel itself is "
                              "written and serves as it is" % (ov.__version__.split("-")[0], saved_model_dir,
                                                                failed.lstrip("- "))) from None
    keys = ["detection_boxes", "detection_classes", "detection_scores", "num_detections"]
    if len(model.outputs) != len(keys):
        raise ValueError("%s: %d outputs after conversion, not the 4 detection outputs"
                         % (saved_model_dir, len(model.outputs)))
    # The frozen function returns the signature's outputs flattened, i.e. in sorted key order.
    for output, key in zip(model.outputs, keys):
        output.get_tensor().set_names({key})
    model.set_rt_info(json.dumps(config.as_dict()), list(CONFIG_KEY))
    ov.save_model(model, os.fspath(path), compress_to_fp16=False)
    return os.fspath(path)


def _serving_function(saved_model_dir, config):
    """`serving_default` of the SavedModel rebuilt for OpenVINO, as a concrete function for
    `openvino.convert_model`: the same preprocessing and NMS around the SavedModel's `predict_raw`
    network with its variables frozen into constants, and the best class of each anchor taken the
    way OpenVINO runs fast (`postprocess.best_class`'s 'channels_first').

    Frozen because OpenVINO's own SavedModel reader looks up every variable handle of the
    SavedModel's graph in its checkpoint, and some variables that serving never reads have handles
    but no entry there (e.g. the drop-connect layers' seed-generator states, in every model with
    `backbone_survival_prob` < 1, the Lite models among them): it fails with "Cannot find requested
    variable". The frozen function holds only what serving reads.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from efficientdet_tf.inference import detect_images

    loaded = tf.saved_model.load(os.fspath(saved_model_dir))  # holds the variables while they are read
    raw_signature = loaded.signatures["predict_raw"]
    frozen = convert_variables_to_constants_v2(raw_signature)
    levels = range(config.min_level, config.max_level + 1)

    def network(inputs, training=False):
        del training  # a frozen inference graph
        raw = tf.nest.pack_sequence_as(raw_signature.structured_outputs, frozen(normalized_images=inputs))
        return ([raw["class_outputs_p%d" % level] for level in levels],
                [raw["box_outputs_p%d" % level] for level in levels])

    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    call = tf.function(lambda images: detect_images(network, config, images, runtime="openvino"), autograph=False,
                       input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="images")])
    return call.get_concrete_function()


def calibration_pictures(file_pattern, count=100):
    """The first `count` pictures (uint8 [h, w, 3], their own sizes) of the TFRecords matching the pattern."""
    import tensorflow as tf

    from efficientdet_tf.data import schema
    from efficientdet_tf.ops.image_decoding import decode_image

    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ValueError("no TFRecord file matches --calibration_file_pattern=%r" % file_pattern)
    pictures = []
    for record in tf.data.TFRecordDataset(sorted(files)).take(count):
        encoded = tf.io.parse_single_example(record, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})
        pictures.append(decode_image(encoded[schema.ENCODED]).numpy())
    return pictures


def quantize_openvino(xml_path, pictures, path):
    """An int8 copy of an exported OpenVINO model through NNCF post-training quantization.

    NNCF runs the whole model (preprocessing, network, NMS) on `pictures` (uint8 [h, w, 3] of any
    size, as served) to collect activation ranges, quantizes the network's convolutions and keeps the
    rest float; the config in the runtime info is carried over. Returns the `.xml` path."""
    ov = import_openvino()
    nncf = import_nncf()
    if not pictures:
        raise ValueError("the int8 OpenVINO file needs calibration pictures, got none")
    model = ov.Core().read_model(os.fspath(xml_path))
    quantized = nncf.quantize(model, nncf.Dataset(list(pictures), lambda picture: picture[None]),
                              subset_size=len(pictures))
    if model.has_rt_info(list(CONFIG_KEY)):
        quantized.set_rt_info(model.get_rt_info(list(CONFIG_KEY)).astype(str), list(CONFIG_KEY))
    ov.save_model(quantized, os.fspath(path), compress_to_fp16=False)
    return os.fspath(path)
