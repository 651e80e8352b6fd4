"""Small Keras layers the network needs beyond keras.layers: fusion, resizing, drop-connect."""

import keras
import numpy as np
from keras import ops

from efficientdet_tf.config.schema import choices_of

FUSION_METHODS = choices_of(None, "fpn_weight_method")


@keras.saving.register_keras_serializable(package="efficientdet_tf")
def swish(x):
    """x * sigmoid(x) written as plain ops.

    Keras' silu carries a custom gradient, which hides the pattern from TensorFlow's graph rewrites
    (so conv + bias + swish is not fused on CPU) and cannot be saved in a SavedModel.
    """
    return x * ops.sigmoid(x)


def activation(act_type, name):
    """The activation layer for `act_type` ('swish'/'silu', 'relu', 'relu6')."""
    fn = {"swish": swish, "silu": swish, "relu": "relu", "relu6": "relu6"}[act_type]
    return keras.layers.Activation(fn, name=name)


@keras.saving.register_keras_serializable(package="efficientdet_tf")
class WeightedFusion(keras.layers.Layer):
    """Fuses same-shaped feature maps with learned weights (BiFPN node input fusion).

    Methods: 'sum' (plain add, no weights); 'attn' (softmax over one scalar per input);
    'fastattn' (relu weights, sum_i w_i x_i / (sum_j w_j + 1e-4)); 'channel_attn' and
    'channel_fastattn' (the same with one weight per channel). Weights start at 1 and are stored
    one variable per input, named WSM, WSM_1, ... as in the official checkpoints.
    """

    def __init__(self, method="fastattn", epsilon=1e-4, **kwargs):
        super().__init__(**kwargs)
        if method not in FUSION_METHODS:
            raise ValueError("fusion method must be one of %s, got %r" % (FUSION_METHODS, method))
        self.method = method
        self.epsilon = epsilon

    def build(self, input_shape):
        self.num_inputs = len(input_shape)
        shape = (input_shape[0][-1],) if self.method.startswith("channel_") else ()
        self.edge_weights = []
        if self.method == "sum":
            return
        for i in range(self.num_inputs):
            name = "WSM" if i == 0 else "WSM_%d" % i
            self.edge_weights.append(self.add_weight(name=name, shape=shape, initializer="ones"))

    def call(self, inputs):
        if self.method == "sum":
            out = inputs[0]
            for x in inputs[1:]:
                out = out + x
            return out
        weights = [ops.cast(w, inputs[0].dtype) for w in self.edge_weights]
        if self.method.endswith("fastattn"):
            weights = [ops.relu(w) for w in weights]
            total = weights[0]
            for w in weights[1:]:
                total = total + w
            total = total + self.epsilon
            # Normalise the (scalar or per-channel) weights first: one multiply per full-size map.
            out = inputs[0] * (weights[0] / total)
            for x, w in zip(inputs[1:], weights[1:]):
                out = out + x * (w / total)
            return out
        normalised = ops.softmax(ops.stack(weights, axis=0), axis=0)
        out = inputs[0] * normalised[0]
        for i in range(1, len(inputs)):
            out = out + inputs[i] * normalised[i]
        return out

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method, epsilon=self.epsilon)
        return config


def nearest_indices(in_size, out_size):
    """Source indices of TF1 nearest resizing (align_corners=False, no half-pixel centres).

    floor(i * in / out) with the ratio computed in float32, as the official implementation's
    resize does; other conventions pick different rows when sizes are not multiples (3 -> 5).
    """
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1).astype("int32")


@keras.saving.register_keras_serializable(package="efficientdet_tf")
class NearestUpsample(keras.layers.Layer):
    """Nearest-neighbour resize of NHWC maps to a fixed (height, width), TF1 index convention."""

    def __init__(self, target_size, **kwargs):
        super().__init__(**kwargs)
        self.target_size = tuple(int(s) for s in target_size)

    def build(self, input_shape):
        in_h, in_w = input_shape[1], input_shape[2]
        self._rows = nearest_indices(in_h, self.target_size[0])
        self._cols = nearest_indices(in_w, self.target_size[1])
        h, w = self.target_size
        # Where the TF1 indices are a plain repeat (integer ratios), repeating is cheaper than gathering.
        self._factor = h // in_h
        self._repeat = (self._factor >= 1 and w // in_w == self._factor
                        and np.array_equal(self._rows, np.arange(h) // self._factor)
                        and np.array_equal(self._cols, np.arange(w) // self._factor))

    def call(self, x):
        if self._repeat:
            if self._factor == 1:
                return x
            x = ops.repeat(x, self._factor, axis=1)
            return ops.repeat(x, self._factor, axis=2)
        x = ops.take(x, ops.convert_to_tensor(self._rows), axis=1)
        return ops.take(x, ops.convert_to_tensor(self._cols), axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.target_size[0], self.target_size[1], input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(target_size=list(self.target_size))
        return config


@keras.saving.register_keras_serializable(package="efficientdet_tf")
class DropConnect(keras.layers.Layer):
    """Drops a whole residual branch per example in training (stochastic depth), scaling survivors."""

    def __init__(self, survival_prob, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.survival_prob = float(survival_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.survival_prob >= 1.0:
            return x
        batch = ops.shape(x)[0]
        keep = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator, dtype=x.dtype)
        mask = ops.floor(self.survival_prob + keep)
        return x / self.survival_prob * mask

    def get_config(self):
        config = super().get_config()
        config.update(survival_prob=self.survival_prob, seed=self.seed)
        return config
