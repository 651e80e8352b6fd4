"""Inference graphs: preprocess, network and NMS as TensorFlow functions (the runtimes and exports use them)."""

import os

import keras

from efficientdet_tf import factory
from efficientdet_tf.checkpoints.loading import load_weights


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
