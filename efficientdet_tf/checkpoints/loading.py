"""Loading weights into a built EfficientDet from any checkpoint the project knows."""

import logging
import os

import numpy as np

from efficientdet_tf.checkpoints.errors import CheckpointError, resolve_checkpoint, short_list

log = logging.getLogger(__name__)

_CLASS_PREDICTOR = "class_net/class-predict/"
_BOX_PREDICTOR = "box_net/box-predict/"
_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
CONFIG_FILE = "config.yaml"  # what the trainer writes beside its checkpoints


def saved_config_path(checkpoint):
    """`<model_dir>/config.yaml` when `checkpoint` is a trainer model_dir or a ckpt-N prefix in one,
    else None: such a checkpoint says itself which network it holds."""
    path = os.fspath(checkpoint)
    for directory in (path, os.path.dirname(path)):
        if directory and os.path.isdir(directory) and os.path.isfile(os.path.join(directory, CONFIG_FILE)):
            return os.path.join(directory, CONFIG_FILE)
    return None


def _object_graph(reader):
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_GRAPH_KEY))
    return graph


def trainer_tensors(prefix):
    """{'weights': {name: array}, 'ema': {name: array}} of a trainer checkpoint (`train.checkpointing`),
    keyed by official variable names; None when `prefix` is another kind of object checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    graph = _object_graph(reader)
    root = {child.local_name: child.node_id for child in graph.nodes[0].children}
    if "weights" not in root:
        return None
    out = {}
    for view in ("weights", "ema"):
        tensors = {}
        for child in graph.nodes[root[view]].children if view in root else []:
            attributes = graph.nodes[child.node_id].attributes
            keys = [a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE"]
            if keys:
                tensors[child.local_name] = reader.get_tensor(keys[0])
        out[view] = tensors
    return out


def _trainer_values(prefix, use_ema):
    named = trainer_tensors(prefix)
    if named is None:
        return None
    values = dict(named["weights"])
    if use_ema:
        values.update(named["ema"])  # trained variables take their EMA; BN statistics stay as they are
    return values


def _assign(model, values, prefix, skippable=()):
    """Assigns {official name: array} to the model; names under `skippable` prefixes may differ in shape."""
    from efficientdet_tf.checkpoints.official import model_variables

    targets = model_variables(model)
    updates, skipped, missing, mismatched = [], [], [], []
    for name, variable in targets.items():
        value = values.get(name)
        if value is None:
            missing.append(name)
        elif tuple(value.shape) != tuple(variable.shape):
            if name.startswith(tuple(skippable)):
                skipped.append(name)
            else:
                mismatched.append("%s checkpoint %s vs model %s" % (name, list(value.shape), list(variable.shape)))
        else:
            updates.append((variable, value))
    if missing or mismatched:
        parts = []
        if missing:
            parts.append("%d missing: %s" % (len(missing), short_list(missing, 6)))
        if mismatched:
            parts.append("%d shape-mismatched: %s" % (len(mismatched), short_list(mismatched, 3)))
        hint = ""
        if mismatched and all(m.startswith(_CLASS_PREDICTOR) for m in mismatched):
            hint = (" (the checkpoint was trained for another class count: build the model with the "
                    "num_classes of its config.yaml, or fine-tune with --pretrained_ckpt)")
        raise CheckpointError("checkpoint %s does not fit model %s: %s%s" % (prefix, model.name, "; ".join(parts), hint))
    for variable, value in updates:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return {"loaded": len(updates), "skipped": sorted(skipped), "prefix": prefix}


def load_weights(model, checkpoint, use_ema=True):
    """Loads weights into a built EfficientDet.

    - `*.keras` / `*.weights.h5`: Keras files saved by this project (`model.save`, `save_weights`).
    - a trainer model_dir (`<model_dir>/config.yaml` + `ckpt-<step>` files: the newest is taken) or
      one `ckpt-<step>` prefix written by `efficientdet_tf.train`: the EMA of the trained weights
      (with `use_ema`, the default) and the batch-norm statistics.
    - another TF object-based checkpoint (prefix, directory or .index) written with
      `tf.train.Checkpoint(model=model)`.
    - an official TF1 name-based checkpoint (EMA weights), via `load_official_checkpoint`, or the
      name of an official one ('efficientdet-d0'), fetched into the cache the first time.
    """
    import tensorflow as tf

    from efficientdet_tf.checkpoints.official import load_official_checkpoint

    path = resolve_pretrained(checkpoint)
    if path.endswith((".keras", ".h5")):
        model.load_weights(path)
        return
    prefix = resolve_checkpoint(path)
    if any(name == _GRAPH_KEY for name, _ in tf.train.list_variables(prefix)):
        values = _trainer_values(prefix, use_ema)
        if values is not None:
            _assign(model, values, prefix)
            return
        tf.train.Checkpoint(model=model).read(prefix).expect_partial().assert_existing_objects_matched()
    else:
        load_official_checkpoint(model, prefix, use_ema=use_ema)


def resolve_pretrained(name_or_path):
    """A checkpoint path: a path as it is, or a model name ('efficientdet-d0') whose official COCO
    checkpoint is fetched once into the cache (`checkpoints.download.fetch_official`)."""
    from efficientdet_tf.checkpoints.official import OFFICIAL_URLS

    path = os.fspath(name_or_path)
    if os.path.exists(path) or os.path.exists(path + ".index") or path not in OFFICIAL_URLS:
        return path
    from efficientdet_tf.checkpoints.download import fetch_official

    return fetch_official(path)


def load_pretrained(model, checkpoint):
    """Loads a checkpoint to fine-tune from: everything that fits, the class predictor only if its
    class count matches.

    Takes an official TF1 checkpoint, a backbone-only EfficientNet checkpoint, one of the trainer's
    checkpoints or model dirs, or a model name (downloaded). EMA weights are used where present.

    Returns:
      dict: `loaded` (count), `skipped` (official names not loaded: the class predictor for another
      class count, or everything but the backbone), `backbone_only`, `prefix`.

    Raises:
      CheckpointError: the checkpoint belongs to another model (backbone or shapes differ outside
        the class predictor), or it cannot be found or read.
    """
    import tensorflow as tf

    from efficientdet_tf.checkpoints.official import (
        EMA_SUFFIX, load_official_checkpoint, model_variables, read_checkpoint)

    prefix = resolve_checkpoint(resolve_pretrained(checkpoint))
    if any(name == _GRAPH_KEY for name, _ in tf.train.list_variables(prefix)):
        values = _trainer_values(prefix, use_ema=True)
        if values is None:
            raise CheckpointError("checkpoint %s is an object-based checkpoint that is not one of the "
                                  "trainer's; load it with load_weights instead" % prefix)
        report = _assign(model, values, prefix, skippable=(_CLASS_PREDICTOR,))
        return dict(report, backbone_only=False)
    tensors = read_checkpoint(prefix)
    targets = model_variables(model)
    bias = tensors.get(_CLASS_PREDICTOR + "bias")
    other_classes = bias is not None and tuple(bias.shape) != tuple(targets[_CLASS_PREDICTOR + "bias"].shape)
    report = load_official_checkpoint(model, prefix, use_ema=True, skip_heads=other_classes)
    if other_classes:
        # skip_heads leaves both predictors out; load back every part whose shape does not depend on
        # the class count (the box predictor, the class predictor's depthwise kernel).
        skipped = []
        for name in report["skipped"]:
            variable = targets[name]
            source = name + EMA_SUFFIX if name + EMA_SUFFIX in tensors else name
            value = tensors.get(source)
            if value is not None and tuple(value.shape) == tuple(variable.shape):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            elif name.startswith(_CLASS_PREDICTOR):
                skipped.append(name)
            else:
                raise CheckpointError("checkpoint %s does not fit model %s: %s %s vs %s" % (
                    prefix, model.name, name, None if value is None else list(value.shape), list(variable.shape)))
        report = dict(report, loaded=report["loaded"] + len(report["skipped"]) - len(skipped), skipped=skipped)
    return report
