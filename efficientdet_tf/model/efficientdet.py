"""The assembled EfficientDet network (backbone -> BiFPN -> heads) and `build_model`."""

import keras

from efficientdet_tf.config import Config, get_config
from efficientdet_tf.model.bifpn import bifpn
from efficientdet_tf.model.efficientnet import efficientnet_features
from efficientdet_tf.model.fpn_topologies import resolve_topology
from efficientdet_tf.model.heads import box_head, class_head
from efficientdet_tf.ops import anchors


@keras.saving.register_keras_serializable(package="efficientdet_tf")
class EfficientDet(keras.Model):
    """EfficientDet as a Keras functional model built from a hparams dict.

    Input: normalised float32 NHWC images [N, image_size, image_size, 3]. Output:
    `(class_outputs, box_outputs)`, two lists over levels min..max of
    [N, H, W, num_anchors * num_classes] and [N, H, W, num_anchors * 4].
    Layer names follow the official variable scopes ('/' written as '.').
    """

    def __init__(self, config, name=None, **kwargs):
        cfg = config if isinstance(config, Config) else get_config(config["name"], config)
        size = cfg.image_size
        images = keras.Input(shape=(size, size, 3), name="images")
        bn_args = dict(momentum=cfg.batch_norm_momentum, epsilon=cfg.batch_norm_epsilon)
        survival = cfg.backbone_survival_prob
        features = efficientnet_features(
            images, cfg.backbone_name, act_type=cfg.act_type, bn_momentum=cfg.batch_norm_momentum,
            bn_epsilon=cfg.batch_norm_epsilon, survival_prob=survival,
            width=cfg.backbone_width or None, depth=cfg.backbone_depth or None)
        nodes = resolve_topology(cfg.fpn_name, cfg.fpn_config, cfg.min_level, cfg.max_level)
        feats = bifpn({level: features[level] for level in range(cfg.min_level, 6)}, cfg.min_level,
                      cfg.max_level, cfg.fpn_num_filters, cfg.fpn_cell_repeats, cfg.fpn_weight_method,
                      cfg.act_type, bn_args, nodes)
        num_anchors = anchors.num_anchors(cfg.anchors.num_scales, cfg.anchors.aspect_ratios)
        head_args = dict(num_filters=cfg.fpn_num_filters, repeats=cfg.box_class_repeats,
                         act_type=cfg.act_type, bn_args=bn_args, survival_prob=cfg.head_survival_prob)
        class_outputs = class_head(feats, cfg.num_classes, num_anchors, **head_args)
        box_outputs = box_head(feats, num_anchors, **head_args)
        super().__init__(inputs=images, outputs=(class_outputs, box_outputs),
                         name=name or cfg.name, **kwargs)
        self.config = cfg

    def get_config(self):
        # Only what defines the network: data paths, schedules and NMS settings stay out of .keras files.
        return {"config": self.config.network_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        network = config["config"]
        return cls(get_config(network["name"], network), name=config.get("name"))


def backbone_layers(model):
    """The EfficientNet backbone's layers of a built EfficientDet (for freezing and fine-tuning).

    Backbone layers are those under the official `efficientnet-*` scope; the BiFPN (`resample_p6`,
    `fpn_cells`) and the heads (`class_net`, `box_net`) are not included.
    """
    prefix = model.config.backbone_name + "."
    return [layer for layer in model.layers if layer.name.startswith(prefix)]


def build_model(name_or_config="efficientdet-d0", overrides=None, **kwargs):
    """Builds an EfficientDet network.

    Args:
      name_or_config: a model name ('efficientdet-d0' ... 'efficientdet-d7x',
        'efficientdet-lite0' ... 'efficientdet-lite4'), a yaml path, or a `Config`.
      overrides: optional 'a=1,b.c=x' string, dict or yaml path applied on top.
      **kwargs: more top-level overrides, e.g. `num_classes=20, image_size=384`.

    Returns:
      An `EfficientDet` keras.Model; `model.config` holds its validated hparams.
    """
    config = get_config(name_or_config, overrides)
    if kwargs:
        config = config.replace(kwargs)
    return EfficientDet(config)


def set_batch_norm_synchronized(model, synchronized=True):
    """Makes every BatchNormalization layer compute batch statistics over all replicas (or not).

    Used by the distributed trainer; variable names, weights and inference outputs are unchanged.
    Keras reads the flag when the layer runs, so it can be switched on a built model.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = bool(synchronized)
