"""Box encoding against anchors: Faster R-CNN deltas [dy, dx, log dh, log dw] without scale factors."""

import tensorflow as tf


def _centers(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    h = ymax - ymin
    w = xmax - xmin
    return ymin + 0.5 * h, xmin + 0.5 * w, h, w


def encode(boxes, anchors, eps=1e-8):
    """Encodes [..., 4] boxes against anchors of the same shape ([ymin, xmin, ymax, xmax])."""
    boxes = tf.cast(boxes, tf.float32)
    anchors = tf.cast(anchors, tf.float32)
    ya, xa, ha, wa = _centers(anchors)
    y, x, h, w = _centers(boxes)
    ha = tf.maximum(ha, eps)
    wa = tf.maximum(wa, eps)
    h = tf.maximum(h, eps)
    w = tf.maximum(w, eps)
    return tf.stack([(y - ya) / ha, (x - xa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)], axis=-1)


def decode(deltas, anchors):
    """Inverse of `encode`: deltas [..., 4] and anchors broadcastable to them -> boxes [..., 4]."""
    deltas = tf.cast(deltas, tf.float32)
    ya, xa, ha, wa = _centers(tf.cast(anchors, tf.float32))
    dy, dx, dh, dw = tf.unstack(deltas, axis=-1)
    h = tf.exp(dh) * ha
    w = tf.exp(dw) * wa
    y = dy * ha + ya
    x = dx * wa + xa
    return tf.stack([y - h / 2.0, x - w / 2.0, y + h / 2.0, x + w / 2.0], axis=-1)
