"""Anchor boxes of every level, in the order the heads emit them (level, y, x, octave, aspect)."""

import numpy as np


def halve(size):
    """The size of the next coarser level: s -> (s - 1) // 2 + 1 ('SAME' stride-2 convolution)."""
    return (size - 1) // 2 + 1


def feature_sizes(image_size, min_level, max_level):
    """Spatial size of each level, halving the input size level by level (see `halve`).

    `image_size` is an int or (height, width). Returns {level: (height, width)} for min..max.
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    sizes = {0: (int(height), int(width))}
    for level in range(1, max_level + 1):
        h, w = sizes[level - 1]
        sizes[level] = (halve(h), halve(w))
    return {level: sizes[level] for level in range(min_level, max_level + 1)}


def num_anchors(num_scales, aspect_ratios):
    """Anchors per feature-map location: one per octave scale and aspect ratio."""
    return int(num_scales) * len(aspect_ratios)


def generate_anchors(image_size, min_level=3, max_level=7, num_scales=3,
                     aspect_ratios=(1.0, 2.0, 0.5), anchor_scale=4.0):
    """All anchors as a float32 array [num_anchors, 4] of [ymin, xmin, ymax, xmax] input pixels.

    Level l has stride 2**l; octave o scales the base size anchor_scale * stride by 2**(o/num_scales);
    aspect a gives width base*sqrt(a), height base/sqrt(a). Boxes are not clipped.
    """
    per_level = []
    for level, (fh, fw) in feature_sizes(image_size, min_level, max_level).items():
        stride = 2.0 ** level
        shapes = []
        for octave in range(num_scales):
            base = anchor_scale * stride * 2.0 ** (octave / float(num_scales))
            for aspect in aspect_ratios:
                shapes.append((base / np.sqrt(aspect), base * np.sqrt(aspect)))  # (h, w)
        shapes = np.asarray(shapes)  # [A, 2]
        cy = stride / 2.0 + np.arange(fh) * stride
        cx = stride / 2.0 + np.arange(fw) * stride
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [fh, fw]
        cy = cy[:, :, None]
        cx = cx[:, :, None]
        half_h = shapes[None, None, :, 0] / 2.0
        half_w = shapes[None, None, :, 1] / 2.0
        boxes = np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level, axis=0).astype(np.float32)
