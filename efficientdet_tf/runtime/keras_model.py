"""The Keras runtime: an EfficientDet network with the reference preprocessing and NMS in one tf.function."""

import tensorflow as tf

from efficientdet_tf.inference import build_detection_model, detect_images
from efficientdet_tf.runtime.base import BaseDetector


class Detector(BaseDetector):
    """EfficientDet detector on numpy pictures, with the reference preprocessing and NMS.

    Example:
      det = Detector("efficientdet-d0", "/path/to/efficientdet-d0", nms={"mode": "per_class"})
      out = det(image_uint8)  # [H, W, 3] -> dict of [100, 4], [100], [100], scalar

    Takes what `BaseDetector` takes (a picture, a same-size batch or a list) and returns the same
    keys. `model` is the Keras network, `config` the Config its post-processing uses.
    """

    kind = "keras"

    def __init__(self, model_or_name="efficientdet-d0", checkpoint=None, description=None, **overrides):
        """See `inference.build_detection_model` for the arguments; overrides are hparams (e.g. nms=...)."""
        self.model, config = build_detection_model(model_or_name, checkpoint, **overrides)
        super().__init__(config, description or "Keras %s" % config.name, config.num_classes)
        self._detect = tf.function(
            lambda images: detect_images(self.model, self.config, images),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def _detect_batch(self, images):
        return {key: value.numpy() for key, value in self._detect(tf.constant(images)).items()}
