"""Focal and Huber losses against formulas written out in numpy."""

import numpy as np
import tensorflow as tf

from efficientdet_tf.config import get_config
from efficientdet_tf.factory import build_loss_fn
from efficientdet_tf.losses import l2_loss


def _np_focal(logit, target, alpha=0.25, gamma=1.5):
    p = 1 / (1 + np.exp(-logit))
    p_t = p if target else 1 - p
    a_t = alpha if target else 1 - alpha
    return -a_t * (1 - p_t) ** gamma * np.log(p_t)


def test_detection_loss_matches_hand_computation():
    config = get_config("efficientdet-d0", "num_classes=2,num_scales=1,aspect_ratios=[1.0],min_level=3,max_level=3")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 1, 2)).astype("float32")  # 2 anchors, 2 classes
    deltas = rng.normal(size=(1, 2, 1, 4)).astype("float32")
    # anchor 0 positive for class channel 1, anchor 1 ignored (-2).
    labels = {"cls_targets_p3": np.array([[[[1]], [[-2]]]], "int32"),
              "box_targets_p3": np.zeros((1, 2, 1, 4), "float32"),
              "num_positives": np.array([1.0], "float32")}
    labels["box_targets_p3"][0, 0, 0] = [0.05, -0.5, 0.0, 0.2]
    out = build_loss_fn(config)([tf.constant(logits)], [tf.constant(deltas)], labels)
    cls = (_np_focal(logits[0, 0, 0, 0], 0) + _np_focal(logits[0, 0, 0, 1], 1)) / 2.0
    err = np.abs(deltas[0, 0, 0] - labels["box_targets_p3"][0, 0, 0])
    per_coordinate = np.where(err <= 0.1, 0.5 * err ** 2, 0.1 * (err - 0.05))
    # The official box loss leaves out the coordinate whose target is exactly 0.0 (index 2).
    huber = per_coordinate[[0, 1, 3]].sum() / 8.0
    np.testing.assert_allclose(out["cls_loss"].numpy(), cls, rtol=1e-5)
    np.testing.assert_allclose(out["box_loss"].numpy(), huber, rtol=1e-5)
    np.testing.assert_allclose(out["det_loss"].numpy(), cls + 50 * huber, rtol=1e-5)
    every = build_loss_fn(config)([tf.constant(logits)], [tf.constant(deltas)], labels,
                                  mask_zero_box_targets=False)
    np.testing.assert_allclose(every["box_loss"].numpy(), per_coordinate.sum() / 8.0, rtol=1e-5)
    # An explicit normaliser (the trainer's positives summed over replicas, + 1) replaces positives + 1.
    halved = build_loss_fn(config)([tf.constant(logits)], [tf.constant(deltas)], labels, normalizer=4.0)
    np.testing.assert_allclose(halved["cls_loss"].numpy(), cls / 2.0, rtol=1e-5)
    np.testing.assert_allclose(halved["box_loss"].numpy(), huber / 2.0, rtol=1e-5)


def test_l2_loss_covers_kernels_only():
    kernel = tf.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = tf.Variable(np.ones((2,), "float32"), name="bias")
    np.testing.assert_allclose(l2_loss([kernel, bias], 4e-5).numpy(), 4e-5 * 0.5 * 4)
