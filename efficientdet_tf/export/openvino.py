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


def export_openvino(saved_model_dir, config, path):
    """Converts an exported SavedModel (`export.saved_model.export_saved_model`) to OpenVINO IR.

    OpenVINO converts the `serving_default` signature itself, with its soft-NMS (the config's
    `nms`); the input is uint8 `images` [batch, height, width, 3] of any size, the outputs are
    the four named detection outputs in the pictures' own pixels, as from the SavedModel. Weights
    stay float32 (no fp16 compression). The config goes into the file's runtime info.

    Returns:
      the `.xml` path (the `.bin` beside it).
    """
    ov = import_openvino()
    try:
        model = ov.convert_model(os.fspath(saved_model_dir))
    except Exception as e:  # OpenVINO's frontend errors are many types, each a page long
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        failed = next((line for line in lines if line.startswith("-- Conversion is failed for")), lines[-1] if lines else "")
        raise ConversionError("OpenVINO %s cannot convert the SavedModel %s (%s); the SavedModel itself is "
                              "written and serves as it is" % (ov.__version__.split("-")[0], saved_model_dir,
                                                                failed.lstrip("- "))) from None
    names = sorted(output.get_any_name() for output in model.outputs)
    if names != ["detection_boxes", "detection_classes", "detection_scores", "num_detections"]:
        raise ValueError("%s: unexpected outputs after conversion: %s" % (saved_model_dir, ", ".join(names)))
    model.set_rt_info(json.dumps(config.as_dict()), list(CONFIG_KEY))
    ov.save_model(model, os.fspath(path), compress_to_fp16=False)
    return os.fspath(path)
