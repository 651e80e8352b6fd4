"""Letterboxing: a picture of any size into a fixed network input, aspect ratio kept, mean-colour padding."""

import numpy as np

# Letterbox padding in the input's mean colour normalises to (about) zero, which is what the
# reference preprocessing pads with; black padding would show the network a dark border.
IMAGENET_PAD_RGB = (124, 116, 104)
LITE_PAD_RGB = (127, 127, 127)


def pad_rgb_for(config):
    """The letterbox padding colour of a model: its normalisation mean, rounded."""
    from efficientdet_tf import factory

    return tuple(int(round(m)) for m in factory.normalization(config)[0])


def letterbox(image, size, pad_rgb=IMAGENET_PAD_RGB):
    """Fits a uint8 picture [H, W, 3] into size = (height, width) keeping its aspect ratio.

    Bilinear resize (no antialias) to floor(H * scale) x floor(W * scale) with scale =
    min(height / H, width / W), then padding bottom/right with `pad_rgb`. Returns (uint8 [height,
    width, 3], scale); boxes found on the letterboxed picture divided by `scale` are in the
    picture's own pixels.
    """
    import tensorflow as tf

    image = np.asarray(image)
    scale = min(size[0] / image.shape[0], size[1] / image.shape[1])
    new_h, new_w = max(int(image.shape[0] * scale), 1), max(int(image.shape[1] * scale), 1)
    resized = tf.image.resize(image, (new_h, new_w), method="bilinear", antialias=False)
    canvas = np.empty((size[0], size[1], 3), np.uint8)
    canvas[...] = pad_rgb
    canvas[:new_h, :new_w] = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    return canvas, scale
