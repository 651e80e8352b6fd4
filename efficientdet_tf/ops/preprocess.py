"""Image normalisation and the aspect-preserving resize + pad shared by training, eval and inference."""

import tensorflow as tf

# The preprocessing normalises at full size (the reference order), 12 bytes per pixel: a picture
# above 8192 x 8192 would take gigabytes for one request. Larger ones are refused in one line.
MAX_PICTURE_PIXELS = 8192 * 8192


def normalize_image(image, mean_rgb, stddev_rgb):
    """Normalises an RGB image (any real or integer dtype, values in 0..255) to float32.

    (x - mean_rgb) / stddev_rgb per channel; `factory.normalization` gives the model's values
    (ImageNet statistics for the full models, 127 / 128 for the lite models).
    """
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(mean_rgb, tf.float32)) / tf.constant(stddev_rgb, tf.float32)


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
    if isinstance(image_size, int) and tuple(image.shape[-3:-1]) == (image_size, image_size):
        # Already the network's size (a fixed-size TFLite input): the resize would be the identity.
        return tf.cast(image, tf.float32), tf.constant(1.0)
    shape = tf.shape(image)
    scale, new_height, new_width = resize_scale(shape[-3], shape[-2], image_size)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear", antialias=False)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, image_size, image_size)
    return padded, 1.0 / scale


def preprocess_images(images, image_size, mean_rgb, stddev_rgb):
    """The reference inference preprocessing for a batch of pictures that share one size.

    Normalise first, then scale = min(S/h, S/w), bilinear resize (no antialias) to
    (floor(h*scale), floor(w*scale)), pad bottom/right with zeros to S x S (S = image_size).

    Args:
      images: uint8 (or float in 0..255) [B, H, W, 3], H and W >= 1, H * W <= MAX_PICTURE_PIXELS.
      image_size: network input side S.
      mean_rgb, stddev_rgb: the model's normalisation (see `normalize_image`).

    Returns:
      (inputs float32 [B, S, S, 3], image_scales float32 [B] = 1/scale, original pixels per input pixel).
    """
    # Checked when the graph runs, too: a loaded SavedModel signature does not check shapes itself.
    images = tf.ensure_shape(tf.convert_to_tensor(images), [None, None, None, 3], name="images")
    shape = tf.shape(images)
    pixels = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
    with tf.control_dependencies([
            tf.debugging.assert_positive(shape[1:3], message="image height and width must be at least 1 pixel"),
            tf.debugging.assert_less_equal(pixels, tf.constant(MAX_PICTURE_PIXELS, tf.int64), message=(
                "picture larger than %d pixels (8192 x 8192): resize it before sending" % MAX_PICTURE_PIXELS))]):
        x = normalize_image(images, mean_rgb, stddev_rgb)
    x, image_scale = resize_and_pad(x, image_size)
    return x, tf.fill([shape[0]], image_scale)
