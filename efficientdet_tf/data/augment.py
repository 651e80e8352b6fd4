"""Training geometry augmentation: horizontal flip, scale jitter with random crop, box filtering.

Boxes are float32 [N, 4] absolute pixels [ymin, xmin, ymax, xmax]. Every function takes a
stateless seed (int32/int64 [2]) so a fixed pipeline seed reproduces the same pictures.
"""

import tensorflow as tf

from efficientdet_tf.ops.preprocess import resize_scale


def random_horizontal_flip(image, boxes, seed, probability=0.5):
    """Mirrors image and boxes left-right with the given probability."""
    width = tf.cast(tf.shape(image)[1], tf.float32)

    def flip():
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
        return tf.reverse(image, axis=[1]), tf.stack([ymin, width - xmax, ymax, width - xmin], -1)

    do_flip = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(do_flip, flip, lambda: (image, boxes))


def random_scale_crop(image, boxes, output_size, jitter_min, jitter_max, seed):
    """Scale jitter: resize to fit output_size * U(jitter_min, jitter_max), random crop or pad.

    The picture is resized keeping its aspect ratio (bilinear, no antialias) so it fits a square of
    side output_size * factor; a random output_size x output_size window of it is kept (zero-padded
    bottom/right where the picture is smaller). Boxes follow the picture and are clipped to the
    visible picture; drop the boxes that left it with `filter_boxes`.

    Returns (image float32 [output_size, output_size, C], boxes, image_scale) where image_scale =
    1 / resize scale, as `preprocess.resize_and_pad` returns it.
    """
    scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    factor = tf.random.stateless_uniform([], scale_seed, jitter_min, jitter_max)
    shape = tf.shape(image)
    scale, new_height, new_width = resize_scale(shape[0], shape[1], output_size * factor)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear", antialias=False)
    offset_y = _random_offset(new_height - output_size, y_seed)
    offset_x = _random_offset(new_width - output_size, x_seed)
    crop = resized[offset_y:offset_y + output_size, offset_x:offset_x + output_size]
    crop = tf.image.pad_to_bounding_box(crop, 0, 0, output_size, output_size)
    # Boxes scale by the exact per-axis resize factors so they track the resized pixels.
    box_scale = tf.cast(tf.stack([new_height / shape[0], new_width / shape[1]] * 2), tf.float32)
    offset = tf.cast(tf.stack([offset_y, offset_x] * 2), tf.float32)
    boxes = boxes * box_scale - offset
    visible = tf.cast(tf.stack([tf.minimum(new_height - offset_y, output_size),
                                tf.minimum(new_width - offset_x, output_size)] * 2), tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, visible)
    return crop, boxes, 1.0 / scale


def _random_offset(slack, seed):
    """Uniform integer crop offset in [0, slack] (0 when the picture is smaller than the crop)."""
    slack = tf.maximum(slack, 0)
    return tf.random.stateless_uniform([], seed, 0, slack + 1, dtype=tf.int32)


def filter_boxes(boxes, *fields):
    """Drops zero-size boxes (those clipped away) and the matching rows of the other fields.

    Returns (boxes, *fields) with the kept rows in their original order.
    """
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return (tf.boolean_mask(boxes, keep),) + tuple(tf.boolean_mask(f, keep) for f in fields)
