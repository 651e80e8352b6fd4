"""The Keras runtime: an EfficientDet network with the reference preprocessing and NMS in one tf.function."""

import tensorflow as tf

from efficientdet_tf.checkpoints.opening import open_model
from efficientdet_tf.inference import detect_images
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

    def __init__(self, model_or_name="efficientdet-d0", checkpoint=None, description=None, hparams=None,
                 **overrides):
        """`model_or_name`, `checkpoint` and `hparams` as `checkpoints.opening.open_model` takes them;
        keyword overrides are hparams too (e.g. `nms={"mode": "per_class"}`, `image_size=384`)."""
        if hparams and overrides:
            raise TypeError("give hparams or keyword overrides, not both")
        self.model, config = open_model(model_or_name, checkpoint, hparams or overrides or None)
        super().__init__(config, description or "Keras %s" % config.name, config.num_classes)
        self._detect = tf.function(
            lambda images: detect_images(self.model, self.config, images),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def _detect_batch(self, images):
        return {key: value.numpy() for key, value in self._detect(tf.constant(images)).items()}
