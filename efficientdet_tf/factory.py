"""Builders: the one place that reads a Config and hands plain arguments to the pieces.

Anchors, target assignment, the loss, normalisation and post-processing know nothing of hparams;
data, inference, export, training and evaluation get them from here.
"""

import functools

from efficientdet_tf.config.schema import choices_of
from efficientdet_tf.ops import anchors as anchors_lib

# Normalisation of the lite models: (x - 127) / 128.
_LITE_MEAN, _LITE_STDDEV = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)


def anchor_args(config):
    """Keyword arguments of `anchors.generate_anchors` for the model's anchor grid (no image size)."""
    section = config.anchors
    return dict(min_level=config.min_level, max_level=config.max_level, num_scales=section.num_scales,
                aspect_ratios=tuple(section.aspect_ratios), anchor_scale=section.anchor_scale)


def build_anchors(config, image_size=None):
    """float32 [num_anchors, 4] anchors of the model ([ymin, xmin, ymax, xmax] input pixels)."""
    return anchors_lib.generate_anchors(image_size or config.image_size, **anchor_args(config))


def normalization(config):
    """(mean_rgb, stddev_rgb) of the model's input normalisation: x -> (x - mean) / stddev."""
    if config.input_norm == "lite":
        return _LITE_MEAN, _LITE_STDDEV
    return tuple(config.mean_rgb), tuple(config.stddev_rgb)


def build_normalizer(config):
    """image (0..255, any dtype) -> normalised float32 image, for this model."""
    from efficientdet_tf.ops import preprocess

    mean, stddev = normalization(config)
    return functools.partial(preprocess.normalize_image, mean_rgb=mean, stddev_rgb=stddev)


def build_preprocessor(config):
    """uint8 pictures [B, H, W, 3] of one size -> (network inputs, image_scales): the inference path."""
    from efficientdet_tf.ops import preprocess

    mean, stddev = normalization(config)
    return functools.partial(preprocess.preprocess_images, image_size=config.image_size,
                             mean_rgb=mean, stddev_rgb=stddev)


def build_target_assigner(config, image_size=None):
    """The anchor target assigner of the model (matching thresholds from `loss`)."""
    from efficientdet_tf.ops.target_assigner import TargetAssigner

    return TargetAssigner(image_size or config.image_size, matched_threshold=config.loss.matched_threshold,
                          unmatched_threshold=config.loss.unmatched_threshold,
                          crowd_anchors=config.loss.crowd_anchors, **anchor_args(config))


def loss_args(config):
    """Keyword arguments of `losses.detection_loss` for the model."""
    loss = config.loss
    return dict(num_classes=config.num_classes, min_level=config.min_level, alpha=loss.alpha,
                gamma=loss.gamma, delta=loss.delta, box_loss_weight=loss.box_loss_weight,
                label_smoothing=loss.label_smoothing)


def build_loss_fn(config):
    """(class_outputs, box_outputs, labels, normalizer=None) -> dict of cls_loss, box_loss, det_loss."""
    from efficientdet_tf import losses

    return functools.partial(losses.detection_loss, **loss_args(config))


# The post-processing of the official evaluation (google/automl tf2/eval.py): per-class Gaussian
# soft-NMS over the 5000 best (anchor, class) pairs, 100 detections per picture.
OFFICIAL_EVAL_NMS = {"mode": "per_class", "method": "gaussian", "score_threshold": 0.001, "sigma": 0.5,
                     "max_detections": 100, "max_nms_inputs": 5000}
EVAL_NMS_PRESETS = choices_of("eval", "nms_preset")


def evaluation_config(config, preset=None):
    """The config whose `nms` section evaluation runs, by `preset` (default `eval.nms_preset`):
    'official' (the default: `OFFICIAL_EVAL_NMS`, so AP compares with the published numbers) or
    'config' (the `nms` section as it is, i.e. what an exported model serves)."""
    preset = preset or config.eval.nms_preset
    if preset not in EVAL_NMS_PRESETS:
        raise ValueError("eval.nms_preset must be one of %s, got %r" % (", ".join(EVAL_NMS_PRESETS), preset))
    if preset == "config":
        return config
    return config.replace({"nms." + k: v for k, v in OFFICIAL_EVAL_NMS.items()})


def nms_args(config):
    """Keyword arguments of `postprocess.postprocess` taken from the `nms` section."""
    return config.nms.as_dict()


def build_postprocess_fn(config, image_size=None, runtime="tensorflow"):
    """(class_outputs, box_outputs, image_scales=None) -> detection dict, for the model's anchors.

    `runtime` ('tensorflow', 'tflite', 'onnx' or 'openvino') picks the kernels that are fast, or
    that exist, where the graph runs (ONNX: NMS as `ops.loop_nms`); the detections are the same.
    """
    from efficientdet_tf.ops import postprocess

    size = image_size or config.image_size
    reduction = {"tensorflow": "top_k", "tflite": "max_argmax", "onnx": "max_argmax",
                 "openvino": "channels_first"}[runtime]
    return functools.partial(postprocess.postprocess, anchors=build_anchors(config, size),
                             num_classes=config.num_classes, image_size=size, best_class_reduction=reduction,
                             nms_kernel="loop" if runtime == "onnx" else "tensorflow", **nms_args(config))
