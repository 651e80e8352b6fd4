"""Loads the official TF1 name-based EfficientDet / EfficientNet checkpoints into a Keras model."""

import logging
import re

import numpy as np

from efficientdet_tf.checkpoints.errors import CheckpointError, resolve_checkpoint, short_list

log = logging.getLogger(__name__)

EMA_SUFFIX = "/ExponentialMovingAverage"
# Keras variable names that differ from the official ones, by layer class.
_RENAMES = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}
_PREDICTORS = ("class_net/class-predict/", "box_net/box-predict/")
# Official Google Cloud Storage folders of the pretrained checkpoints (tar.gz of `<name>/model.*`).
OFFICIAL_URLS = {
    name: "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco2/%s.tar.gz" % name
    for name in ["efficientdet-d%d" % i for i in range(8)] + ["efficientdet-d7x"]
}
OFFICIAL_URLS.update({
    name: "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco/%s.tgz" % name
    for name in ["efficientdet-lite%d" % i for i in range(5)] + ["efficientdet-lite3x"]
})


def official_name(layer, variable):
    """The official checkpoint name of one Keras variable of `layer`."""
    short = variable.name
    short = _RENAMES.get(type(layer).__name__, {}).get(short, short)
    return layer.name.replace(".", "/") + "/" + short


def model_variables(model):
    """{official name: keras variable} for every variable of `model` (built)."""
    mapping = {}
    for layer in model.layers:
        for variable in layer.weights:
            mapping[official_name(layer, variable)] = variable
    return mapping


def read_checkpoint(prefix):
    """{name: numpy array} of every tensor in a TF checkpoint, with a one-line error if unreadable."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        return {name: reader.get_tensor(name) for name in shapes}
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:  # IndexError: truncated data file
        first = str(getattr(e, "message", e)).strip().splitlines()[0]
        raise CheckpointError("cannot read checkpoint %s: %s" % (prefix, first)) from None


def _backbone_prefix(names):
    for name in names:
        match = re.match(r"(efficientnet-[a-z0-9]+)/", name)
        if match:
            return match.group(1)
    return None


def load_official_checkpoint(model, path, use_ema=True, skip_heads=False):
    """Loads an official EfficientDet (or backbone-only EfficientNet) checkpoint into `model`.

    Args:
      model: a built EfficientDet (from `build_model`).
      path: a checkpoint prefix, a directory holding one, or its `.index` file.
      use_ema: take the `/ExponentialMovingAverage` copy of each variable where the checkpoint has
        one (what the official inference does).
      skip_heads: leave the class and box predictors untouched, e.g. to fine-tune on another class
        count; what was skipped is reported.

    A checkpoint without `fpn_cells/` variables is treated as a backbone-only EfficientNet
    checkpoint and loads into the backbone alone.

    Returns:
      A dict: `loaded` (count), `skipped` (official names left untouched), `unused` (checkpoint
      names the model does not have), `backbone_only` (bool), `prefix`.

    Raises:
      CheckpointError: one message listing every missing or shape-mismatched variable, or saying
        why the checkpoint could not be found or read.
    """
    prefix = resolve_checkpoint(path)
    tensors = read_checkpoint(prefix)
    raw_names = {n for n in tensors if not n.endswith(EMA_SUFFIX)}
    targets = model_variables(model)
    model_backbone = _backbone_prefix(targets)
    ckpt_backbone = _backbone_prefix(raw_names)
    backbone_only = not any(n.startswith("fpn_cells/") for n in raw_names)
    if ckpt_backbone and model_backbone and ckpt_backbone != model_backbone:
        raise CheckpointError("checkpoint %s holds a %s backbone but the model uses %s: it belongs to "
                              "another model" % (prefix, ckpt_backbone, model_backbone))
    if backbone_only and ckpt_backbone is None:
        raise CheckpointError("checkpoint %s holds no EfficientDet or EfficientNet variables "
                              "(e.g. %s)" % (prefix, short_list(raw_names, 3)))

    skipped, missing, mismatched, updates = [], [], [], []
    for name, variable in targets.items():
        if backbone_only and not name.startswith(model_backbone + "/"):
            skipped.append(name)
            continue
        if skip_heads and name.startswith(_PREDICTORS):
            skipped.append(name)
            continue
        source = name + EMA_SUFFIX if use_ema and name + EMA_SUFFIX in tensors else name
        if source not in tensors:
            missing.append(name)
            continue
        value = tensors[source]
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append("%s checkpoint %s vs model %s" % (name, list(value.shape), list(variable.shape)))
            continue
        updates.append((variable, value))
    if missing or mismatched:
        parts = []
        if missing:
            parts.append("%d missing: %s" % (len(missing), short_list(missing)))
        if mismatched:
            parts.append("%d shape-mismatched: %s" % (len(mismatched), short_list(mismatched, 4)))
        hint = " (use skip_heads=True to fine-tune on another class count)" if all(
            m.startswith(_PREDICTORS) for m in mismatched) and mismatched and not missing else ""
        raise CheckpointError("checkpoint %s does not fit model %s: %s%s"
                              % (prefix, model.name, "; ".join(parts), hint))
    for variable, value in updates:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    unused = sorted(raw_names - set(targets) - {"global_step"})
    if skipped and skip_heads:
        log.info("skipped %d predictor variables: %s", len(skipped), short_list(skipped))
    return {"loaded": len(updates), "skipped": sorted(skipped), "unused": unused,
            "backbone_only": backbone_only, "prefix": prefix}
