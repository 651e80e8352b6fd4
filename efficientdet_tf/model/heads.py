"""Class and box prediction heads: separable convs shared across levels, batch norm per level."""

import math

import keras

from efficientdet_tf.model.layers import DropConnect, activation


def prediction_head(features, kind, num_outputs, num_filters, repeats, act_type, bn_args,
                    survival_prob=0.0, bias_init=0.0):
    """Applies one head to every level of `features` ({level: map}); returns the list min..max.

    `kind` is 'class' or 'box' (it names the layers as the official scopes do: class_net/class-0,
    class_net/class-0-bn-3, class_net/class-predict). Conv weights are shared by all levels, batch
    norms are not. `survival_prob` > 0 adds a drop-connected residual after the first repeat.
    """
    prefix = "%s_net.%s" % (kind, kind)
    convs = [keras.layers.SeparableConv2D(
        num_filters, 3, padding="same", name="%s-%d" % (prefix, i),
        depthwise_initializer=keras.initializers.VarianceScaling(),
        pointwise_initializer=keras.initializers.VarianceScaling()) for i in range(repeats)]
    predict = keras.layers.SeparableConv2D(
        num_outputs, 3, padding="same", name="%s-predict" % prefix,
        depthwise_initializer=keras.initializers.VarianceScaling(),
        pointwise_initializer=keras.initializers.VarianceScaling(),
        bias_initializer=keras.initializers.Constant(bias_init))
    outputs = []
    for level in sorted(features):
        x = features[level]
        for i, conv in enumerate(convs):
            residual = x
            x = conv(x)
            x = keras.layers.BatchNormalization(**bn_args, name="%s-%d-bn-%d" % (prefix, i, level))(x)
            x = activation(act_type, "%s-%d-act-%d" % (prefix, i, level))(x)
            if i > 0 and survival_prob:
                x = DropConnect(survival_prob, name="%s-%d-drop-%d" % (prefix, i, level))(x)
                x = keras.layers.Add(name="%s-%d-skip-%d" % (prefix, i, level))([x, residual])
        outputs.append(predict(x))
    return outputs


def class_head(features, num_classes, num_anchors, num_filters, repeats, act_type, bn_args,
               survival_prob=0.0, prior_probability=0.01):
    """Per-level class logits [N, H, W, num_anchors * num_classes] (anchor-major, class-minor)."""
    bias = -math.log((1.0 - prior_probability) / prior_probability)
    return prediction_head(features, "class", num_anchors * num_classes, num_filters, repeats, act_type,
                           bn_args, survival_prob, bias_init=bias)


def box_head(features, num_anchors, num_filters, repeats, act_type, bn_args, survival_prob=0.0):
    """Per-level box deltas [N, H, W, num_anchors * 4]."""
    return prediction_head(features, "box", num_anchors * 4, num_filters, repeats, act_type, bn_args,
                           survival_prob)
