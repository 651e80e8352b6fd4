"""Image operations for AutoAugment/RandAugment on uint8 RGB pictures, with box-aware warps.

Written on core TensorFlow: warps use tf.raw_ops.ImageProjectiveTransformV3 (no TF Addons).
Boxes are float32 [N, 4] absolute pixels [ymin, xmin, ymax, xmax]; warped boxes are the
axis-aligned hull of the warped corners, clipped to the picture, so they still enclose the object.
"""

import math

import tensorflow as tf


def blend(image, degenerate, factor):
    """degenerate + factor * (image - degenerate), clipped to uint8 (factor > 1 extrapolates)."""
    image = tf.cast(image, tf.float32)
    degenerate = tf.cast(degenerate, tf.float32)
    return tf.cast(tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0), tf.uint8)


def color(image, factor):
    """Colour balance: 0 gives grayscale, 1 the original, > 1 more saturated."""
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return blend(image, gray, factor)


def sharpness(image, factor):
    """Sharpness: blends with a 3x3 smoothed copy (border pixels kept), like PIL's ImageEnhance."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0.0, 255.0), tf.uint8)
    # The smoothed copy is 2 pixels smaller; keep the original ring around it.
    padded = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    inner = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
    return blend(image, tf.where(inner, padded, image), factor)


def equalize(image):
    """Per-channel histogram equalisation (PIL ImageOps.equalize semantics)."""
    return tf.stack([_equalize_channel(image[:, :, c]) for c in range(3)], axis=-1)


def _equalize_channel(channel):
    values = tf.cast(tf.reshape(channel, [-1]), tf.int32)
    hist = tf.math.bincount(values, minlength=256, maxlength=256)
    nonzero = tf.boolean_mask(hist, hist > 0)
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

    def remap():
        lut = (tf.cumsum(hist) + step // 2) // step
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.cast(tf.gather(lut, tf.cast(channel, tf.int32)), tf.uint8)

    # A single-valued channel has nothing to spread.
    return tf.cond(step > 0, remap, lambda: channel)


def solarize(image, threshold=128):
    """Inverts the pixels at or above threshold."""
    return tf.where(image < threshold, image, 255 - image)


def solarize_add(image, addition, threshold=128):
    """Adds `addition` to the pixels below threshold (clipped to uint8)."""
    added = tf.cast(tf.clip_by_value(tf.cast(image, tf.int32) + addition, 0, 255), tf.uint8)
    return tf.where(image < threshold, added, image)


def cutout(image, half_size, seed, replace=128):
    """Fills a square of side 2 * half_size centred at a random pixel with `replace`."""
    shape = tf.shape(image)
    center = tf.random.stateless_uniform([2], seed, 0, 2 ** 30, dtype=tf.int32) % shape[:2]
    top = tf.maximum(center[0] - half_size, 0)
    left = tf.maximum(center[1] - half_size, 0)
    bottom = tf.minimum(center[0] + half_size, shape[0])
    right = tf.minimum(center[1] + half_size, shape[1])
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    mask = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return tf.where(mask[:, :, None], tf.cast(replace, image.dtype), image)


def warp(image, boxes, forward, replace=128):
    """Applies an affine map to image and boxes.

    Args:
      image: uint8 [H, W, 3].
      boxes: float32 [N, 4] pixels.
      forward: float32 [3, 3] matrix mapping input (x, y, 1) to output, in continuous pixel
        coordinates (pixel i spans [i, i + 1)).
      replace: fill value for pixels mapped from outside the picture.

    Returns (warped image, hull of the warped box corners clipped to the picture); nearest
    neighbour sampling, like the reference AutoAugment.
    """
    shape = tf.shape(image)
    # ImageProjectiveTransformV3 maps output pixel indices to input indices (centre = index + 0.5).
    shift = tf.constant([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = tf.constant([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    inverse = unshift @ tf.linalg.inv(forward) @ shift
    inverse = inverse / inverse[2, 2]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.reshape(inverse, [9])[None, :8], output_shape=shape[:2],
        fill_value=tf.cast(replace, tf.float32), interpolation="NEAREST", fill_mode="CONSTANT")[0]
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    xs = tf.stack([xmin, xmax, xmin, xmax], -1)
    ys = tf.stack([ymin, ymin, ymax, ymax], -1)
    points = tf.stack([xs, ys, tf.ones_like(xs)], -1) @ tf.transpose(forward)  # [N, 4, 3]
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    new_boxes = tf.stack([
        tf.clip_by_value(tf.reduce_min(points[..., 1], -1), 0.0, height),
        tf.clip_by_value(tf.reduce_min(points[..., 0], -1), 0.0, width),
        tf.clip_by_value(tf.reduce_max(points[..., 1], -1), 0.0, height),
        tf.clip_by_value(tf.reduce_max(points[..., 0], -1), 0.0, width)], -1)
    return warped, new_boxes


def _about_center(matrix, image):
    """Conjugates a linear map so it acts about the picture centre."""
    shape = tf.cast(tf.shape(image), tf.float32)
    cx, cy = shape[1] / 2.0, shape[0] / 2.0
    to_origin = tf.stack([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    back = tf.stack([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    return back @ matrix @ to_origin


def rotate(image, boxes, degrees, replace=128):
    """Rotates about the picture centre by `degrees` (counter-clockwise on screen)."""
    radians = -tf.cast(degrees, tf.float32) * math.pi / 180.0
    c, s = tf.cos(radians), tf.sin(radians)
    matrix = tf.stack([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return warp(image, boxes, _about_center(matrix, image), replace)


def shear(image, boxes, level, axis, replace=128):
    """Shears along x (axis 'x': x += level * y) or y (axis 'y': y += level * x)."""
    level = tf.cast(level, tf.float32)
    if axis == "x":
        matrix = tf.stack([[1.0, level, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    else:
        matrix = tf.stack([[1.0, 0.0, 0.0], [level, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return warp(image, boxes, matrix, replace)


def translate(image, boxes, pixels, axis, replace=128):
    """Moves the content by `pixels` along axis 'x' or 'y'."""
    pixels = tf.cast(pixels, tf.float32)
    dx, dy = (pixels, 0.0) if axis == "x" else (0.0, pixels)
    matrix = tf.stack([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
    return warp(image, boxes, matrix, replace)


def translate_inside_boxes(image, boxes, pixels, axis, probability, seed, replace=128):
    """Moves the content inside each box (each with `probability`), leaving the rest untouched.

    The content shifts within the box's own pixel window, the uncovered part takes `replace`;
    the boxes themselves do not change.
    """
    num = tf.shape(boxes)[0]
    chosen = tf.random.stateless_uniform([num], seed) < probability
    shape = tf.shape(image)

    def body(i, img):
        box = boxes[i]
        top = tf.clip_by_value(tf.cast(tf.floor(box[0]), tf.int32), 0, shape[0])
        left = tf.clip_by_value(tf.cast(tf.floor(box[1]), tf.int32), 0, shape[1])
        bottom = tf.clip_by_value(tf.cast(tf.math.ceil(box[2]), tf.int32), top, shape[0])
        right = tf.clip_by_value(tf.cast(tf.math.ceil(box[3]), tf.int32), left, shape[1])

        def shift_window():
            window = img[top:bottom, left:right]
            moved, _ = translate(window, tf.zeros([0, 4]), pixels, axis, replace)
            pasted = tf.pad(moved, [[top, shape[0] - bottom], [left, shape[1] - right], [0, 0]])
            inside = tf.pad(tf.ones_like(moved, tf.bool),
                            [[top, shape[0] - bottom], [left, shape[1] - right], [0, 0]])
            return tf.where(inside, pasted, img)

        apply = chosen[i] & (bottom > top) & (right > left)
        return i + 1, tf.cond(apply, shift_window, lambda: img)

    _, image = tf.while_loop(lambda i, _: i < num, body, [0, image])
    return image
