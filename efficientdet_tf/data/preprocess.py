"""Image normalisation and the aspect-preserving resize + pad shared by training, eval and inference."""

import tensorflow as tf


def normalize_image(image, config):
    """Normalises an RGB image (any real or integer dtype, values in 0..255) to float32.

    `config.input_norm` 'imagenet' gives (x - mean_rgb) / stddev_rgb; 'lite' gives (x - 127) / 128.
    """
    image = tf.cast(image, tf.float32)
    if config.input_norm == "lite":
        return (image - 127.0) / 128.0
    mean = tf.constant(config.mean_rgb, tf.float32)
    std = tf.constant(config.stddev_rgb, tf.float32)
    return (image - mean) / std


def resize_scale(height, width, target_size):
    """Scale that fits a (height, width) picture into target_size x target_size, keeping aspect.

    Computed in float32 like the reference implementation, so the resized size
    floor(height * scale), floor(width * scale) agrees with it to the pixel. Returns
    (scale, new_height, new_width); target_size may be a float (scale jitter).
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    target = tf.cast(target_size, tf.float32)
    scale = tf.minimum(target / height, target / width)
    # At least one pixel, so that extreme aspect ratios still give a picture.
    new_height = tf.maximum(tf.cast(tf.floor(height * scale), tf.int32), 1)
    new_width = tf.maximum(tf.cast(tf.floor(width * scale), tf.int32), 1)
    return scale, new_height, new_width


def resize_and_pad(image, image_size):
    """Resizes keeping aspect ratio so the picture fits image_size x image_size, pads bottom/right.

    Args:
      image: [height, width, channels] or a batch [batch, height, width, channels] of one size
        (uint8 or float); normalise it first if the padding
        must be zero in normalised space, as the reference implementation does.
      image_size: int output side.

    Returns:
      (padded_image, image_scale): float32 [image_size, image_size, channels] (bilinear, no
      antialias, zero padding) and the float32 scalar image_scale = 1 / scale, which maps boxes in the
      resized frame back to original-picture pixels.
    """
    shape = tf.shape(image)
    scale, new_height, new_width = resize_scale(shape[-3], shape[-2], image_size)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear", antialias=False)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, image_size, image_size)
    return padded, 1.0 / scale
