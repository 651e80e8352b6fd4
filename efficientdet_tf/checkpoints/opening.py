"""The one answer to "what network does this hold?": any way of naming an EfficientDet -> (network, config)."""

import os

from efficientdet_tf.checkpoints.loading import load_weights, saved_config_path


def open_model(model=None, checkpoint=None, hparams=None):
    """Returns (Keras network, Config) for any way of naming an EfficientDet.

    Args:
      model: what fixes the network: a built Keras EfficientDet, a `.keras` file, a trainer model dir
        (its `config.yaml` beside the `ckpt-N` files) or a `ckpt-N` prefix in one, a model name
        ('efficientdet-d0'), a yaml path or a `Config`. None when `checkpoint` is a trainer checkpoint.
      checkpoint: weights to load into it: a trainer model dir or `ckpt-N` (its EMA weights), an official
        TF1 checkpoint (dir or prefix), a `.weights.h5`, or an official model name (downloaded once).
        None keeps the weights `model` has (fresh ones for a name).
      hparams: overrides ('a=1,nms.mode=per_class', dict or yaml path) on top of the model's config. A
        built network, a `.keras` file or a trainer checkpoint fixes the network; there only the other
        sections (loss, nms, data, train, eval) may change.

    Raises:
      ValueError: a model name that disagrees with the trainer checkpoint's own, an hparam that would
        change a fixed network, or a bare checkpoint without a model name; CheckpointError (a ValueError)
        from `load_weights` when the weights do not load.
    """
    import keras

    from efficientdet_tf.config import Config, get_config
    from efficientdet_tf.model.efficientdet import build_model

    if _is_path(model) and checkpoint is None and saved_config_path(model):
        model, checkpoint = None, model
    if _is_path(model) and os.fspath(model).endswith(".keras"):
        model = keras.saving.load_model(os.fspath(model), compile=False)
    if isinstance(model, keras.Model):
        network, config = model, _keep_network(model.config, hparams, "a built network")
    else:
        saved = saved_config_path(checkpoint) if _is_path(checkpoint) else None
        if saved:
            config = get_config(saved, hparams)
            named = model if isinstance(model, str) and not model.endswith((".yaml", ".yml")) else None
            if named not in (None, config.name):
                raise ValueError("%s holds a %s, not a %s" % (os.path.dirname(saved), config.name, named))
        elif model is None:
            if checkpoint is not None:
                raise ValueError("a model name is needed for the bare checkpoint %s (a trainer model dir has "
                                 "its config.yaml)" % os.fspath(checkpoint))
            raise ValueError("no model given: a model name, a Config, a .keras file or a trainer model dir")
        else:
            config = model.replace(hparams) if isinstance(model, Config) else get_config(model, hparams)
        network = build_model(config)
    if checkpoint is not None:
        load_weights(network, checkpoint)
    return network, config


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def _keep_network(config, hparams, what):
    if not hparams:
        return config
    changed = config.replace(hparams)
    before, after = config.network_dict(), changed.network_dict()
    moved = sorted(key for key in after if after[key] != before.get(key))
    if moved:
        raise ValueError("%s fixes the network; hparams cannot change %s" % (what, ", ".join(moved)))
    return changed
