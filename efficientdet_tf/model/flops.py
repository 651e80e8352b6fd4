"""Multiply-add count of a built Keras model, from its layers' kernels and output shapes."""

import numpy as np


def _layer_macs(layer, output_shape):
    """Multiply-adds of one call of `layer` producing `output_shape` (batch excluded)."""
    kind = type(layer).__name__
    spatial = int(np.prod(output_shape[1:-1])) if len(output_shape) > 2 else 1
    if kind == "Conv2D":
        kh, kw, cin, cout = layer.kernel.shape
        return spatial * kh * kw * cin * cout
    if kind == "DepthwiseConv2D":
        kh, kw, cin, mult = layer.kernel.shape
        return spatial * kh * kw * cin * mult
    if kind == "SeparableConv2D":
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        cout = layer.pointwise_kernel.shape[-1]
        return spatial * (kh * kw * cin * mult + cin * mult * cout)
    if kind == "Dense":
        cin, cout = layer.kernel.shape
        return spatial * cin * cout
    return 0


def count_macs(model, layers=None):
    """Multiply-adds of one forward pass of `model` at batch 1 (convolutions and dense layers).

    Shared layers count once per call (the heads run on every level). `layers` restricts the count
    to some of the model's layers (e.g. the feature network).
    """
    total = 0
    for layer in model.layers if layers is None else layers:
        for node in layer._inbound_nodes:
            for output in node.outputs:
                total += _layer_macs(layer, output.shape)
    return int(total)
