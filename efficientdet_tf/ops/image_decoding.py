"""Decoding of encoded pictures (JPEG/PNG/GIF/BMP) to uint8 RGB, shared by data, inference and export."""

import tensorflow as tf


def _on_white(image):
    """Colour channels of a gray+alpha or RGBA picture composited on white (as the converters do)."""
    color = tf.cast(image[..., :-1], tf.float32)
    alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
    return tf.cast(tf.round(color * alpha + 255.0 * (1.0 - alpha)), tf.uint8)


def decode_image(encoded):
    """Decodes one encoded picture to uint8 [H, W, 3].

    Grayscale becomes RGB; transparent pixels are composited on white, the same rule as the dataset
    converters (`efficientdet_tf.data.pictures`), so serving sees what training saw. 16-bit PNGs
    are scaled to 8 bits (value >> 8). Empty strings and non-image bytes raise
    InvalidArgumentError with a message that says so.
    """
    with tf.control_dependencies([tf.debugging.assert_greater(
            tf.strings.length(encoded), 0, message="image bytes: empty string, expected JPEG or PNG")]):
        image = tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)
    channels = tf.shape(image)[-1]
    image = tf.cond(tf.equal(channels % 2, 0), lambda: _on_white(image), lambda: image)
    # 1 colour channel (gray) or 3 (RGB): tile the gray one.
    image = tf.tile(image, [1, 1, 3 // tf.shape(image)[-1]])
    image.set_shape([None, None, 3])
    return image
