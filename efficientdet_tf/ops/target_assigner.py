"""Anchor target assignment: IoU matching of ground truth to anchors, per-level class/box targets.

Class targets per anchor (int32): class channel id - 1 for positives, NEGATIVE (-1) for background,
IGNORE (-2) for anchors the loss must skip (an IoU between unmatched_threshold and
matched_threshold, or, with crowd_anchors='ignore', an anchor that matches only a crowd box).
"""

import tensorflow as tf

from efficientdet_tf.config.schema import choices_of
from efficientdet_tf.ops import anchors as anchors_lib
from efficientdet_tf.ops import box_coder

NEGATIVE = -1
IGNORE = -2


def pairwise_iou(boxes_a, boxes_b):
    """IoU matrix [N, M] of boxes_a [N, 4] and boxes_b [M, 4] ([ymin, xmin, ymax, xmax])."""
    a = tf.expand_dims(boxes_a, 1)
    b = tf.expand_dims(boxes_b, 0)
    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return tf.where(union > 0.0, inter / tf.maximum(union, 1e-12), 0.0)


class TargetAssigner:
    """Assigns ground truth to the anchors of one model (fixed input size).

    Matching (docs/conventions.md): an anchor is positive when its best IoU with a non-crowd ground-truth
    box is >= matched_threshold, negative when it is < unmatched_threshold (the two are equal by
    default: no ignore band); every valid ground-truth box is also force-matched to its best
    anchor (on ties between boxes for one anchor, the lower box index wins). Padding rows (label
    <= 0) and zero-size boxes are ignored. Crowd boxes never create positives. With
    `crowd_anchors` 'background' (the default, as the official trainer's
    `skip_crowd_during_training`) they are dropped before matching, so the anchors on them train as
    background; with 'ignore' a negative anchor whose IoU with a crowd box reaches
    matched_threshold becomes IGNORE (the loss skips it).
    """

    CROWD_ANCHORS = choices_of("loss", "crowd_anchors")

    def __init__(self, image_size, min_level=3, max_level=7, num_scales=3, aspect_ratios=(1.0, 2.0, 0.5),
                 anchor_scale=4.0, matched_threshold=0.5, unmatched_threshold=0.5, crowd_anchors="background"):
        """Args: the anchor grid (see `anchors.generate_anchors`), the two IoU thresholds and what
        anchors on crowd boxes become ('background' or 'ignore')."""
        if crowd_anchors not in self.CROWD_ANCHORS:
            raise ValueError("loss.crowd_anchors must be one of %s, got %r" % (self.CROWD_ANCHORS, crowd_anchors))
        self.crowd_anchors = crowd_anchors
        self.anchors = tf.constant(anchors_lib.generate_anchors(
            image_size, min_level, max_level, num_scales, aspect_ratios, anchor_scale))
        self.levels = anchors_lib.feature_sizes(image_size, min_level, max_level)
        self.num_anchors = anchors_lib.num_anchors(num_scales, aspect_ratios)
        self.matched_threshold = float(matched_threshold)
        self.unmatched_threshold = float(unmatched_threshold)

    def match(self, boxes, classes, is_crowd=None):
        """Flat per-anchor targets.

        Args:
          boxes: float32 [N, 4] ground truth in input-image pixels.
          classes: int [N] 1-based ids; <= 0 marks padding.
          is_crowd: optional int/bool [N].

        Returns:
          (cls_targets int32 [M], box_targets float32 [M, 4], num_positives float32 scalar).
        """
        boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
        crowd = (tf.zeros_like(classes, tf.bool) if is_crowd is None
                 else tf.cast(tf.reshape(is_crowd, [-1]), tf.bool))
        # A padding row at the end keeps every reduction over boxes non-empty (images without boxes).
        boxes = tf.concat([boxes, tf.zeros([1, 4])], 0)
        classes = tf.concat([classes, [0]], 0)
        crowd = tf.concat([crowd, [False]], 0)
        valid = (classes > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        matchable = valid & ~crowd

        iou = pairwise_iou(boxes, self.anchors)  # [N, M]
        gt_iou = tf.where(matchable[:, None], iou, -1.0)
        best_gt = tf.argmax(gt_iou, axis=0, output_type=tf.int32)  # [M]
        best_iou = tf.reduce_max(gt_iou, axis=0)

        # Force-match: each matchable box claims its best anchor, even below the threshold.
        best_anchor = tf.argmax(gt_iou, axis=1, output_type=tf.int32)  # [N]
        claims = tf.one_hot(best_anchor, tf.shape(self.anchors)[0], dtype=tf.int32)
        claims *= tf.cast(matchable, tf.int32)[:, None]
        forced = tf.reduce_any(claims > 0, axis=0)
        forced_gt = tf.argmax(claims, axis=0, output_type=tf.int32)

        matched_gt = tf.where(forced, forced_gt, best_gt)
        positive = forced | (best_iou >= self.matched_threshold)
        ignore = ~positive & (best_iou >= self.unmatched_threshold)
        if self.crowd_anchors == "ignore":
            crowd_iou = tf.reduce_max(tf.where((valid & crowd)[:, None], iou, -1.0), axis=0)
            ignore |= ~positive & (crowd_iou >= self.matched_threshold)

        cls = tf.gather(classes, matched_gt) - 1
        cls_targets = tf.where(positive, cls, tf.where(ignore, IGNORE, NEGATIVE))
        encoded = box_coder.encode(tf.gather(boxes, matched_gt), self.anchors)
        box_targets = tf.where(positive[:, None], encoded, 0.0)
        num_positives = tf.reduce_sum(tf.cast(positive, tf.float32))
        return cls_targets, box_targets, num_positives

    def assign(self, boxes, classes, is_crowd=None):
        """Per-level targets shaped like the head outputs.

        Returns a dict: 'cls_targets_p<level>' int32 [H, W, A], 'box_targets_p<level>' float32
        [H, W, A * 4] (anchor-major, [dy, dx, dh, dw]-minor) and 'num_positives' float32.
        """
        cls_targets, box_targets, num_positives = self.match(boxes, classes, is_crowd)
        out = {"num_positives": num_positives}
        start = 0
        for level, (height, width) in self.levels.items():
            count = height * width * self.num_anchors
            out["cls_targets_p%d" % level] = tf.reshape(
                cls_targets[start:start + count], [height, width, self.num_anchors])
            out["box_targets_p%d" % level] = tf.reshape(
                box_targets[start:start + count], [height, width, self.num_anchors * 4])
            start += count
        return out

