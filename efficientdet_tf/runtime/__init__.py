"""Runtimes: one `load_detector` for Keras models, checkpoints, SavedModels, TFLite and ONNX files."""

import copy
import os

from efficientdet_tf.runtime.base import BaseDetector, LoadError, check_pictures
from efficientdet_tf.runtime.saved_model import find_saved_model

__all__ = ["BaseDetector", "Detector", "LoadError", "OnnxDetector", "SavedModelDetector", "TFLiteDetector",
           "TiledDetector", "check_pictures", "find_saved_model", "load_detector"]

_CLASSES = {"Detector": "keras_model", "SavedModelDetector": "saved_model", "TFLiteDetector": "tflite",
            "OnnxDetector": "onnx", "TiledDetector": "tiling"}


def __getattr__(name):
    # Lazy: `import efficientdet_tf.runtime` stays free of TensorFlow and onnxruntime until a class is used.
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module("efficientdet_tf.runtime." + _CLASSES[name]), name)
    raise AttributeError("module 'efficientdet_tf.runtime' has no attribute %r" % name)


def load_detector(path_or_model, model_name=None, hparams=None, num_threads=None):
    """Opens any EfficientDet as a detector with one call (see `BaseDetector`).

    `path_or_model` is one of: a detector (returned as it is, or with `hparams` applied), a built Keras EfficientDet, a
    `.keras` file, a trainer model dir (config.yaml beside its checkpoints) or a `ckpt-N` prefix in
    one, a bare checkpoint (official TF1 dir or prefix, `.weights.h5`: needs `model_name`), a
    SavedModel dir (or its base dir of numeric versions), a detection `.tflite` file, an `.onnx`
    file or an OpenVINO `.xml` file. `hparams` (string 'a=1,nms.mode=per_class', dict or yaml path) apply on top of the model's
    config (a Keras network is opened by `checkpoints.opening.open_model`: the network of a built
    model, `.keras` file or model dir is fixed, so there they change the other sections); a SavedModel, TFLite, ONNX or OpenVINO file runs its own network and NMS, so there they set only
    data and eval settings (and, for TFLite, which model `model_name` says the file holds).
    `num_threads` applies to TFLite, ONNX Runtime and OpenVINO. Raises LoadError in one line.
    """
    import keras

    from efficientdet_tf.checkpoints.loading import saved_config_path
    from efficientdet_tf.config import get_config

    if isinstance(path_or_model, BaseDetector):
        if not hparams:
            return path_or_model
        if path_or_model.kind == "keras":
            return _keras_detector(path_or_model.model, None, hparams, path_or_model.description,
                                   base=path_or_model.config)
        detector = copy.copy(path_or_model)  # shares the opened file; only the settings differ
        detector.config = path_or_model.config.replace(hparams)
        return detector
    if isinstance(path_or_model, keras.Model):
        return _keras_detector(path_or_model, None, hparams, "Keras model")
    path = os.fspath(path_or_model or "")
    if not path:
        raise LoadError("no model given (a checkpoint, a model dir, a SavedModel dir, a .tflite or .onnx file)")
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise LoadError("%s does not exist" % path)
    if path.endswith(".onnx"):
        from efficientdet_tf.runtime.onnx import OnnxDetector

        config = get_config(model_name, hparams) if model_name else None
        return OnnxDetector(path, config=config, hparams=None if config else hparams, num_threads=num_threads)
    if path.endswith(".xml"):
        from efficientdet_tf.runtime.openvino import OpenVINODetector

        config = get_config(model_name, hparams) if model_name else None
        return OpenVINODetector(path, config=config, hparams=None if config else hparams, num_threads=num_threads)
    if path.endswith(".tflite"):
        from efficientdet_tf.runtime.tflite import TFLiteDetector

        return TFLiteDetector(path, get_config(model_name or "efficientdet-d0", hparams), num_threads=num_threads)
    if find_saved_model(path):
        from efficientdet_tf.runtime.saved_model import SavedModelDetector

        return SavedModelDetector(path, get_config(model_name or "efficientdet-d0", hparams))
    if path.endswith(".keras"):
        return _keras_detector(path, None, hparams, "Keras file %s" % path)
    if saved_config_path(path):  # a trainer model dir or a ckpt-N inside one
        return _keras_detector(None, path, hparams, "model dir %s" % path)
    if not model_name:
        raise LoadError("--model_name is needed for the bare checkpoint %s (a model dir has its config.yaml, "
                        "a SavedModel, TFLite or ONNX file is complete)" % path)
    return _keras_detector(model_name, path, hparams, "checkpoint %s" % path)


def _keras_detector(model, checkpoint, hparams, description, base=None):
    """A Keras `Detector` on what `checkpoints.opening.open_model` opens; its errors as one-line LoadErrors.
    `base`: the config to apply `hparams` on instead of the network's own (a detector re-opened)."""
    from efficientdet_tf.checkpoints.errors import CheckpointError
    from efficientdet_tf.runtime import keras_model

    if base is not None:
        hparams = base.replace(hparams or {})
    try:
        return keras_model.Detector(model, checkpoint, description=description, hparams=hparams)
    except CheckpointError:  # says which checkpoint and why already
        raise
    except ValueError as e:
        raise LoadError(str(e)) from None
