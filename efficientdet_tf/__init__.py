"""EfficientDet object detection for TensorFlow 2.21 and Keras 3."""

import importlib

# Lazy attributes keep `import efficientdet_tf` cheap and free of TensorFlow, so the model code runs
# on the JAX or PyTorch Keras backends where TensorFlow is not installed.
_LAZY = {
    "get_config": "efficientdet_tf.config",
    "Config": "efficientdet_tf.config",
    "ConfigError": "efficientdet_tf.config",
    "model_names": "efficientdet_tf.config",
    "build_model": "efficientdet_tf.model.efficientdet",
    "load_official_checkpoint": "efficientdet_tf.checkpoints.official",
    "CheckpointError": "efficientdet_tf.checkpoints.official",
    "Detector": "efficientdet_tf.runtime",
    "load_detector": "efficientdet_tf.runtime",
}

__version__ = "0.1.0"
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'efficientdet_tf' has no attribute %r" % name)
