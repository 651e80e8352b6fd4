"""Size of a built model: multiply-adds from its layers' kernels and output shapes, weights, outputs."""

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


# Layers of the feature network (extra levels and cells), by their official scope.
_FEATURE_NETWORK_SCOPES = ("resample_p", "fpn_cells.")


def summarize(model):
    """A dict describing `model`: weights, variables, multiply-adds and per-level output shapes."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    class_outputs, box_outputs = model.outputs[:len(model.outputs) // 2], model.outputs[len(model.outputs) // 2:]
    cfg = model.config
    levels = {}
    for level, c, b in zip(range(cfg.min_level, cfg.max_level + 1), class_outputs, box_outputs):
        levels[level] = {"class": list(c.shape[1:]), "box": list(b.shape[1:])}
    fpn_layers = [layer for layer in model.layers if layer.name.startswith(_FEATURE_NETWORK_SCOPES)]
    return {"model": model.name, "image_size": cfg.image_size, "total_weights": total,
            "trainable_weights": trainable, "variables": len(model.weights),
            "flops": count_macs(model), "levels": levels,
            "fpn_weights": sum(int(np.prod(w.shape)) for layer in fpn_layers for w in layer.trainable_weights),
            "fpn_flops": count_macs(model, fpn_layers)}
