"""Decoding of encoded pictures (JPEG/PNG/GIF/BMP) to uint8 RGB, shared by data, inference and export."""

import tensorflow as tf


def decode_image(encoded):
    """Decodes one encoded picture to uint8 [H, W, 3]; grayscale and RGBA become RGB.

    Empty strings and non-image bytes raise InvalidArgumentError with a message that says so.
    """
    with tf.control_dependencies([tf.debugging.assert_greater(
            tf.strings.length(encoded), 0, message="image bytes: empty string, expected JPEG or PNG")]):
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
