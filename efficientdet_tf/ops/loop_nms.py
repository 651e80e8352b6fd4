"""Greedy NMS (Gaussian soft or hard) in plain tensor ops, for graphs that leave TensorFlow (ONNX).

ONNX's NonMaxSuppression is hard NMS only, so the default soft-NMS would not survive a conversion
of TensorFlow's `NonMaxSuppressionV5`. This writes the same selection as a `tf.while_loop` over
elementwise ops, which tf2onnx turns into an ONNX `Loop`: each step takes the best remaining
score, then decays every other candidate by its IoU with the one taken. That is what the kernel
computes (it decays lazily; the order of the multiplications differs, so scores agree to float32
rounding), rule for rule:
- candidates are the scores above the score threshold (never NaN; the threshold may be negative
  or -inf, as in the official hard NMS);
- soft-NMS (tf_sigma > 0) multiplies by exp(-iou^2 / (2 * tf_sigma)) and ignores the IoU threshold;
  hard NMS removes a candidate for good when iou > iou_threshold, and otherwise keeps its score,
  except that a NaN IoU (a NaN box) multiplies it by 0, which a negative threshold lets through;
- a candidate whose decayed score is at or below the threshold, or NaN, is gone;
- the best score wins, ties to the lower anchor index.
"""

import tensorflow as tf


def _lesser(a, b):
    """std::min(a, b) as the kernel computes it: `b` only when `b < a` (a NaN `b` gives `a`).

    Written as a select because tf.minimum's NaN handling depends on the kernel and vector width."""
    return tf.where(b < a, b, a)


def _greater(a, b):
    """std::max(a, b): `b` only when `a < b`."""
    return tf.where(a < b, b, a)


def _corners(boxes):
    """(ymin, xmin, ymax, xmax, area) of [..., 4] boxes whatever their corner order, as the kernel."""
    ymin, ymax = _lesser(boxes[..., 0], boxes[..., 2]), _greater(boxes[..., 0], boxes[..., 2])
    xmin, xmax = _lesser(boxes[..., 1], boxes[..., 3]), _greater(boxes[..., 1], boxes[..., 3])
    return ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)


# The growing windows of best candidates the loop decays at every step (see `loop_nms`).
WINDOWS = (512, 2048, 8192)
# Gone candidates: the lowest float32, not -inf, which ONNX Runtime's Loop mishandles (every
# detection was lost); thresholds below it (-inf, as the official hard NMS uses) are raised to it,
# so only scores below -3.4e38 are read differently from the kernel.
_GONE = tf.float32.min


def _suppress(current, ymin, xmin, ymax, xmax, area, channels, row, params, per_class):
    """The candidates' scores after the box in `row` [B, 1, 6] is taken; gone ones are -inf."""
    iou_threshold, score_threshold, sigma = params
    score_threshold = max(float(score_threshold), _GONE)
    inter_h = _greater(_lesser(ymax, row[..., 2]) - _greater(ymin, row[..., 0]), 0.0)
    inter_w = _greater(_lesser(xmax, row[..., 3]) - _greater(xmin, row[..., 1]), 0.0)
    inter = inter_h * inter_w
    # The kernel's rule: a box of zero (or negative) area overlaps nothing.
    empty = (area <= 0.0) | (row[..., 4] <= 0.0)
    iou = tf.where(empty, 0.0, inter / tf.where(empty, 1.0, area + row[..., 4] - inter))
    if sigma > 0:
        weight, removed = tf.exp((-0.5 / sigma) * iou * iou), tf.zeros_like(iou, tf.bool)
    else:
        # `iou <= threshold` is False for a NaN IoU: weight 0, but not removed (as the kernel).
        weight, removed = tf.where(iou <= iou_threshold, 1.0, 0.0), iou > iou_threshold
    if per_class:
        same = tf.equal(channels, row[..., 5])
        weight, removed = tf.where(same, weight, 1.0), removed & same
    decayed = current * weight
    # NaN > threshold is False: a NaN score is gone too; a gone one stays gone whatever its weight.
    # (No logical_not here: Grappler rewrites not(a > b) into a <= b, which differs for NaN.)
    alive = (current > score_threshold) & (decayed > score_threshold)
    return tf.where(alive, tf.where(removed, _GONE, decayed), _GONE)


def loop_nms(boxes, scores, classes, max_out, params, per_class=False, windows=WINDOWS):
    """Batched greedy NMS: boxes [B, N, 4], scores [B, N], classes int32 [B, N] (0-based channels).

    `params` is `postprocess.nms_parameters(...)`: (iou_threshold, score_threshold, tf_sigma).
    With `per_class`, boxes of different classes never decay each other, and the first `max_out`
    taken are the best `max_out` of all classes (each class's scores fall step by step), as the
    per-class NMS followed by a top-`max_out` cut. Returns (boxes [B, M, 4], scores [B, M],
    1-based classes [B, M] with 0 for padding, count [B]); padded entries are zero.

    Scores only fall, so no candidate beyond the best `w` can beat the best score inside them
    while that is above the first outside candidate's initial score (or equal to it, the outside
    one having the higher anchor index). The loop decays only the best `windows[0]` while that
    holds; when it stops holding, the candidates up to the next window catch up on every box taken
    so far, in the same order (the same float results), and the loop goes on over that window, and
    so on; the last window is all candidates. Each step costs in proportion to its window. With
    every one of D0's 49,104 anchors above the threshold and near-equal scores, one window of
    1,024 ran out early and the NMS alone took 54 ms in ONNX Runtime on 2 cores; these windows take
    20 ms (`benchmarks/profile_runtimes.py`, BENCHMARKS.md).
    """
    windows = sorted(set(int(w) for w in windows))
    if not windows or windows[0] < 1:
        raise ValueError("loop_nms windows must be positive sizes, got %r" % (windows,))
    score_threshold = max(float(params[1]), _GONE)
    batch = tf.shape(scores)[0]
    # Only candidates above the threshold can ever be taken (NaN never is): those, best first,
    # ties by index (top_k keeps the lower index first).
    alive = scores > score_threshold
    scores = tf.where(alive, scores, _GONE)
    count = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(alive, tf.int32), axis=1)), 1)
    top, order = tf.math.top_k(scores, k=count)
    candidates = tf.gather(boxes, order, batch_dims=1)
    channels = tf.cast(tf.gather(classes, order, batch_dims=1), tf.float32)
    corners = _corners(candidates)
    # One gather per step fetches everything about the box taken.
    table = tf.stack(list(corners) + [channels], axis=-1)
    never = tf.int32.max

    def make_step(size):
        parts = [part[:, :size] for part in corners + (channels,)]
        positions = tf.range(size)[None, :]
        anchors = order[:, :size]

        def step(i, current, taken, taken_scores):
            score = tf.reduce_max(current, axis=1)
            # Equal scores (a decayed one meeting another) go to the lower anchor index.
            tied = tf.equal(current, score[:, None])
            best = tf.argmin(tf.where(tied, anchors, never), axis=1, output_type=tf.int32)
            row = tf.gather(table, best[:, None], batch_dims=1)  # [B, 1, 6]
            current = tf.where(tf.equal(positions, best[:, None]), _GONE,
                               _suppress(current, *parts, row, params, per_class))
            slot = tf.equal(tf.range(max_out), i)[None, :]
            return (i + 1, current, tf.where(slot, best[:, None], taken),
                    tf.where(slot, score[:, None], taken_scores))
        return step

    def catch_up(begin, end, i, taken, taken_scores, bound):
        """The initial scores of candidates [begin, end) decayed by the `i` boxes taken so far."""
        rest = [part[:, begin:end] for part in corners + (channels,)]
        # Zero rounds when nothing was left to take or no candidate beyond `begin` is alive.
        rounds = tf.where((i < max_out) & tf.reduce_any(bound > score_threshold), i, 0)

        def body(s, current_out):
            row = tf.gather(table, taken[:, s][:, None], batch_dims=1)
            # A batch entry that ran out of candidates took nothing at step s: nothing to decay by.
            done = tf.equal(taken_scores[:, s], _GONE)[:, None]
            return s + 1, tf.where(done, current_out, _suppress(current_out, *rest, row, params, per_class))

        return tf.while_loop(lambda s, _: s < rounds, body, (tf.constant(0), top[:, begin:end]),
                             shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])))[1]

    i = tf.constant(0)
    taken, taken_scores = tf.zeros([batch, max_out], tf.int32), tf.fill([batch, max_out], _GONE)
    current, width, bound = top[:, :0], tf.constant(0), tf.fill([batch], float("inf"))
    for size in windows + [None]:
        begin, width = width, count if size is None else tf.minimum(count, size)
        current = tf.concat([current, catch_up(begin, width, i, taken, taken_scores, bound)], axis=1)
        # The best initial score outside this window (_GONE when all fit inside).
        bound = tf.where(count > width, tf.gather(top, tf.minimum(width, count - 1), axis=1), _GONE)

        def window_holds(i, current, taken, taken_scores, bound=bound):
            best = tf.reduce_max(current, axis=1)
            # Strictly above: an outside candidate of equal score may have the lower anchor index.
            holds = (best > bound) | tf.equal(bound, _GONE)
            return (i < max_out) & tf.reduce_any(best > score_threshold) & tf.reduce_all(holds)

        i, current, taken, taken_scores = tf.while_loop(
            window_holds, make_step(width), (i, current, taken, taken_scores),
            shape_invariants=(i.shape, tf.TensorShape([None, None]), tf.TensorShape([None, max_out]),
                              tf.TensorShape([None, max_out])))
    valid = taken_scores > score_threshold
    out_boxes = tf.where(valid[..., None], tf.gather(candidates, taken, batch_dims=1), 0.0)
    out_classes = tf.cast(tf.gather(channels, taken, batch_dims=1), tf.int32) + 1
    return (out_boxes, tf.where(valid, taken_scores, 0.0), tf.where(valid, out_classes, 0),
            tf.reduce_sum(tf.cast(valid, tf.int32), axis=1))
