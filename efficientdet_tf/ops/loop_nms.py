"""Greedy NMS (Gaussian soft or hard) in plain tensor ops, for graphs that leave TensorFlow (ONNX).

ONNX's NonMaxSuppression is hard NMS only, so the default soft-NMS would not survive a conversion
of TensorFlow's `NonMaxSuppressionV5`. This writes the same selection as a `tf.while_loop` over
elementwise ops, which tf2onnx turns into an ONNX `Loop`: each step takes the best remaining
score, then decays every other candidate by its IoU with the one taken. That is what the kernel
computes (it decays lazily; the order of the multiplications differs, so scores agree to float32
rounding): weight exp(-iou^2 / (2 * tf_sigma)) where iou <= iou_threshold, else 0 (hard NMS is
tf_sigma 0: weight 1 or 0), candidates at or below the score threshold dropped, ties to the lower
anchor index.
"""

import tensorflow as tf


def _corners(boxes):
    """(ymin, xmin, ymax, xmax, area) of [..., 4] boxes whatever their corner order, as the kernel."""
    ymin = tf.minimum(boxes[..., 0], boxes[..., 2])
    ymax = tf.maximum(boxes[..., 0], boxes[..., 2])
    xmin = tf.minimum(boxes[..., 1], boxes[..., 3])
    xmax = tf.maximum(boxes[..., 1], boxes[..., 3])
    return ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)


# Candidates the loop decays at every step before it has to look further (see `loop_nms`).
WINDOW = 1024


def _decay(ymin, xmin, ymax, xmax, area, channels, row, params, per_class):
    """The factor each candidate's score is multiplied by when the box in `row` [B, 1, 6] is taken."""
    iou_threshold, _, sigma = params
    scale = -0.5 / sigma if sigma > 0 else 0.0
    inter_h = tf.maximum(tf.minimum(ymax, row[..., 2]) - tf.maximum(ymin, row[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(xmax, row[..., 3]) - tf.maximum(xmin, row[..., 1]), 0.0)
    inter = inter_h * inter_w
    # A zero-area box overlaps nothing (inter is 0 then); the floor only avoids 0 / 0.
    iou = inter / tf.maximum(area + row[..., 4] - inter, 1e-30)
    weight = tf.exp(scale * iou * iou) if scale else tf.ones_like(iou)
    if iou_threshold < 1.0:
        weight = tf.where(iou <= iou_threshold, weight, 0.0)
    if per_class:
        weight = tf.where(tf.equal(channels, row[..., 5]), weight, 1.0)
    return weight


def loop_nms(boxes, scores, classes, max_out, params, per_class=False, window=WINDOW):
    """Batched greedy NMS: boxes [B, N, 4], scores [B, N], classes int32 [B, N] (0-based channels).

    `params` is `postprocess.nms_parameters(...)`: (iou_threshold, score_threshold, tf_sigma).
    With `per_class`, boxes of different classes never decay each other, and the first `max_out`
    taken are the best `max_out` of all classes (each class's scores fall step by step), as the
    per-class NMS followed by a top-`max_out` cut. Returns (boxes [B, M, 4], scores [B, M],
    1-based classes [B, M] with 0 for padding, count [B]); padded entries are zero.

    Scores only fall, so no candidate beyond the best `window` can beat the best score inside it
    while that is at least the first outside candidate's initial score. The loop decays only the
    window while that holds; if it stops holding, the outside candidates catch up on every box taken
    so far, in the same order (the same float results), and the loop goes on over all of them. With
    every one of D0's 49,104 anchors above the threshold this took the ONNX end-to-end file's NMS
    from about 70 ms to a few ms on 2 cores (BENCHMARKS.md).
    """
    score_threshold = params[1]
    batch = tf.shape(scores)[0]
    # Only candidates above the threshold can ever be taken: keep those, best first (ties by index).
    count = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(scores > score_threshold, tf.int32), axis=1)), 1)
    top, order = tf.math.top_k(scores, k=count)
    candidates = tf.gather(boxes, order, batch_dims=1)
    channels = tf.cast(tf.gather(classes, order, batch_dims=1), tf.float32)
    corners = _corners(candidates)
    # One gather per step fetches everything about the box taken.
    table = tf.stack(list(corners) + [channels], axis=-1)
    width = tf.minimum(count, window)
    # The best initial score outside the window (below any threshold when all fit inside).
    outside = tf.gather(top, tf.minimum(width, count - 1), axis=1)
    bound = tf.where((count > width) & (outside > score_threshold), outside, -2.0)

    def make_step(size):
        parts = [part[:, :size] for part in corners + (channels,)]
        positions = tf.range(size)[None, :]

        def step(i, current, taken, taken_scores):
            best = tf.argmax(current, axis=1, output_type=tf.int32)
            score = tf.reduce_max(current, axis=1)
            row = tf.gather(table, best[:, None], batch_dims=1)  # [B, 1, 6]
            weight = _decay(*parts, row, params, per_class)
            current = tf.where(tf.equal(positions, best[:, None]), -1.0, current * weight)
            slot = tf.equal(tf.range(max_out), i)[None, :]
            return (i + 1, current, tf.where(slot, best[:, None], taken),
                    tf.where(slot, score[:, None], taken_scores))
        return step

    def window_holds(i, current, taken, taken_scores):
        best = tf.reduce_max(current, axis=1)
        return (i < max_out) & tf.reduce_any(best > score_threshold) & tf.reduce_all(best >= bound)

    current = tf.where(top > score_threshold, top, -1.0)
    start = (tf.constant(0), current[:, :width], tf.zeros([batch, max_out], tf.int32),
             tf.fill([batch, max_out], -1.0))
    i, current_in, taken, taken_scores = tf.while_loop(window_holds, make_step(width), start)

    # Catch-up of the outside candidates (zero rounds when the window sufficed).
    rest = [part[:, width:] for part in corners + (channels,)]
    rounds = tf.where((i < max_out) & tf.reduce_any(bound > score_threshold), i, 0)

    def catch_up(s, current_out):
        row = tf.gather(table, taken[:, s][:, None], batch_dims=1)
        return s + 1, current_out * _decay(*rest, row, params, per_class)

    _, current_out = tf.while_loop(lambda s, _: s < rounds, catch_up, (tf.constant(0), current[:, width:]))

    def more(i, current, taken, taken_scores):
        return (i < max_out) & tf.reduce_any(current > score_threshold)

    _, _, taken, taken_scores = tf.while_loop(
        more, make_step(count), (i, tf.concat([current_in, current_out], axis=1), taken, taken_scores))
    valid = taken_scores > score_threshold
    out_boxes = tf.where(valid[..., None], tf.gather(candidates, taken, batch_dims=1), 0.0)
    out_classes = tf.cast(tf.gather(channels, taken, batch_dims=1), tf.int32) + 1
    return (out_boxes, tf.where(valid, taken_scores, 0.0), tf.where(valid, out_classes, 0),
            tf.reduce_sum(tf.cast(valid, tf.int32), axis=1))
