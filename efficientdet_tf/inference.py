"""Inference: the detection graph (preprocess, network, NMS) and `Detector` for numpy pictures."""

import os

import keras
import numpy as np
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.checkpoints.loading import load_weights
from efficientdet_tf.ops.postprocess import OUTPUT_KEYS


def raw_output_dict(network, config, inputs):
    """The network's raw outputs on normalised inputs, named class_outputs_p3 ... box_outputs_p7."""
    class_outputs, box_outputs = network(inputs, training=False)
    names = ["%s_outputs_p%d" % (kind, level) for kind in ("class", "box")
             for level in range(config.min_level, config.max_level + 1)]
    return dict(zip(names, list(class_outputs) + list(box_outputs)))


def detect_normalised(network, config, inputs, image_scales, runtime="tensorflow"):
    """Runs the network on preprocessed inputs and post-processes (see `postprocess.postprocess`);
    `runtime` is where the graph will run ('tensorflow' or 'tflite', see `build_postprocess_fn`)."""
    class_outputs, box_outputs = network(inputs, training=False)
    return factory.build_postprocess_fn(config, runtime=runtime)(list(class_outputs), list(box_outputs), image_scales)


def detect_images(network, config, images, runtime="tensorflow"):
    """uint8 [B, H, W, 3] pictures of one size -> detection dict in original-picture pixels."""
    inputs, image_scales = factory.build_preprocessor(config)(images)
    return detect_normalised(network, config, inputs, image_scales, runtime)


def build_detection_model(model_or_name, checkpoint=None, **overrides):
    """Returns (keras model, Config used for post-processing).

    `model_or_name`: a built EfficientDet, a `.keras` file, a model name, a yaml path, a Config, or
    a trainer model_dir. A trainer checkpoint (model_dir or ckpt-N prefix) brings its own
    `config.yaml`: the network is built from it (the model name, if given, must agree) and
    `overrides` apply on top. With a built or saved model only `nms` overrides are allowed.
    """
    from efficientdet_tf.checkpoints.loading import saved_config_path
    from efficientdet_tf.config import get_config
    from efficientdet_tf.model.efficientdet import build_model

    if isinstance(model_or_name, (str, os.PathLike)) and saved_config_path(model_or_name) and checkpoint is None:
        model_or_name, checkpoint = None, model_or_name
    if isinstance(model_or_name, (str, os.PathLike)) and os.fspath(model_or_name).endswith(".keras"):
        model_or_name = keras.saving.load_model(os.fspath(model_or_name), compile=False)
    saved = saved_config_path(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else None
    if isinstance(model_or_name, keras.Model):
        model = model_or_name
        extra = [key for key in overrides if key != "nms" and not key.startswith("nms.")]
        if extra:
            raise ValueError("a built model takes only nms overrides, got %s" % sorted(extra))
        config = model.config.replace(overrides) if overrides else model.config
    elif saved and (model_or_name is None or isinstance(model_or_name, str)):
        config = get_config(saved, overrides or None)
        if model_or_name not in (None, config.name) and not os.fspath(model_or_name).endswith((".yaml", ".yml")):
            raise ValueError("%s holds a %s, not a %s" % (saved, config.name, model_or_name))
        model = build_model(config)
    else:
        model = build_model(model_or_name or "efficientdet-d0", **overrides)
        config = model.config
    if checkpoint:
        load_weights(model, checkpoint)
    return model, config


class Detector:
    """EfficientDet detector on numpy pictures, with the reference preprocessing and NMS.

    Example:
      det = Detector("efficientdet-d0", "/path/to/efficientdet-d0", nms={"mode": "per_class"})
      out = det(image_uint8)  # [H, W, 3] -> dict of [100, 4], [100], [100], scalar

    A call takes one uint8 RGB picture [H, W, 3] or a batch [B, H, W, 3]; a batch is one array, so
    all its pictures share one size (call once per picture for mixed sizes). Returns numpy arrays:
    detection_boxes [B, M, 4] ([ymin, xmin, ymax, xmax] in original pixels), detection_scores [B, M],
    detection_classes int32 [B, M] (1-based ids, 0 = padding), num_detections int32 [B]; without the
    batch axis for a single picture.
    """

    def __init__(self, model_or_name="efficientdet-d0", checkpoint=None, **overrides):
        """See `build_detection_model` for the arguments; overrides are hparams (e.g. nms=...)."""
        self.model, self.config = build_detection_model(model_or_name, checkpoint, **overrides)
        self._detect = tf.function(
            lambda images: detect_images(self.model, self.config, images),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def __call__(self, images):
        """Detects objects in one picture [H, W, 3] or a same-size batch [B, H, W, 3] (uint8 RGB)."""
        images = np.asarray(images)
        single = images.ndim == 3
        if images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise ValueError("expected uint8 RGB [H, W, 3] or [B, H, W, 3], got shape %s" % (images.shape,))
        if images.dtype != np.uint8:
            raise TypeError("expected uint8 pixels, got %s (convert with np.clip(x, 0, 255).astype(np.uint8))"
                            % images.dtype)
        if min(images.shape[-3:-1]) < 1:
            raise ValueError("empty picture of shape %s" % (images.shape,))
        outputs = self._detect(tf.constant(images[None] if single else images))
        return {key: outputs[key].numpy()[0] if single else outputs[key].numpy() for key in OUTPUT_KEYS}
