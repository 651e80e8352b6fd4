"""Batch-norm folding: rebuilds a functional Keras model with each conv + BN pair merged into one conv."""

import collections

import keras
import numpy as np

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def _foldable(conv, bn):
    """A linear channels-last conv followed by a BN over the channel axis."""
    if not isinstance(conv, _CONVS) or not isinstance(bn, keras.layers.BatchNormalization):
        return False
    linear = conv.activation in (None, keras.activations.linear)
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    return (linear and conv.data_format == "channels_last" and axis in (-1, 3)
            and getattr(conv, "groups", 1) == 1)


def folded_weights(conv, bn):
    """Weights of `conv` with `bn` (inference statistics) merged in, for the layer with use_bias=True.

    With s = gamma / sqrt(moving_variance + epsilon): the kernel's output channels are scaled by s
    (for SeparableConv2D only the pointwise kernel) and bias = (bias - moving_mean) * s + beta.
    """
    f64 = lambda v: np.asarray(keras.ops.convert_to_numpy(v), np.float64)  # noqa: E731
    scale = f64(bn.moving_variance) + bn.epsilon
    scale = (f64(bn.gamma) if bn.scale else 1.0) / np.sqrt(scale)
    beta = f64(bn.beta) if bn.center else 0.0
    weights = [f64(w) for w in conv.get_weights()]
    bias = weights.pop() if conv.use_bias else 0.0
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # Output channel c * multiplier + m comes from input channel c.
        weights[-1] = weights[-1] * scale.reshape(weights[-1].shape[2:])
    else:
        weights[-1] = weights[-1] * scale  # Conv2D kernel or SeparableConv2D pointwise kernel
    weights.append((bias - f64(bn.moving_mean)) * scale + beta)
    return [w.astype(np.float32) for w in weights]


def fold_batch_norms(model):
    """Returns a functional model computing `model`'s inference outputs without foldable BNs.

    Walks the functional graph call by call. Where a BatchNormalization's only input is the output
    of a linear convolution that nothing else consumes, that convolution call is replaced by a new
    convolution layer (named after the BN, '<bn name>_folded') holding the folded weights, and the
    BN is skipped. A conv shared by several call sites with a different BN at each (the heads) thus
    becomes one folded conv per site. Every other layer is reused as it is (weights shared).
    Training-only behaviour (BN updates, drop-connect) is dropped: use the result for inference.
    """
    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True)
             for node in model._nodes_by_depth[depth] if node.operation and not node.is_input]
    uses = collections.Counter(id(t) for node in nodes for t in node.input_tensors)
    uses.update(id(t) for t in model.outputs)
    producer = {id(t): node for node in nodes for t in node.outputs}
    fold_into, skipped = {}, set()
    for node in nodes:
        if len(node.input_tensors) != 1 or uses[id(node.input_tensors[0])] != 1:
            continue
        source = producer.get(id(node.input_tensors[0]))
        if source is not None and _foldable(source.operation, node.operation):
            fold_into[id(source)] = node.operation
            skipped.add(id(node))

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    values = {id(t): new for t, new in zip(model.inputs, inputs)}
    for node in nodes:
        args, kwargs = node.arguments.fill_in(values)
        if id(node) in skipped:
            outputs = args[0]
        elif id(node) in fold_into:
            conv, bn = node.operation, fold_into[id(node)]
            layer = type(conv).from_config(dict(conv.get_config(), use_bias=True, name=bn.name + "_folded"))
            outputs = layer(*args, **kwargs)
            layer.set_weights(folded_weights(conv, bn))
        else:
            outputs = node.operation(*args, **kwargs)
        for tensor, value in zip(node.outputs, keras.tree.flatten(outputs)):
            values[id(tensor)] = value
    outputs = keras.tree.pack_sequence_as(model._outputs_struct, [values[id(t)] for t in model.outputs])
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name + "_folded")


def folding_error(model, folded, inputs):
    """Largest |difference| of the two models' outputs on `inputs`, relative to max(1, |output|).

    Relative above 1 because float32 rounding grows with the activations: on a natural picture D0's
    outputs stay below ~10 and agree within 2e-5; on white noise they reach hundreds.
    """
    expected = [keras.ops.convert_to_numpy(a) for a in keras.tree.flatten(model(inputs, training=False))]
    got = [keras.ops.convert_to_numpy(b) for b in keras.tree.flatten(folded(inputs, training=False))]
    return max(float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a))))) for a, b in zip(expected, got))
