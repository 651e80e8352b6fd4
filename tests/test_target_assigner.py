"""Anchor target assignment, checked against an independent numpy computation."""

import numpy as np
import pytest

from efficientdet_tf.config import get_config
from efficientdet_tf.factory import build_anchors, build_target_assigner
from efficientdet_tf.ops.target_assigner import IGNORE, NEGATIVE
from helpers import box_iou

# Two levels, one anchor per location: 64x64 input -> P3 8x8 (stride 8), P4 4x4 (stride 16),
# anchors 16x16 at P3 and 32x32 at P4 (anchor_scale 2).
OVERRIDES = "image_size=64,min_level=3,max_level=4,num_scales=1,aspect_ratios=[1.0],anchor_scale=2.0"


@pytest.fixture(scope="module")
def config():
    return get_config("efficientdet-d0", OVERRIDES)


def _flat(out, config):
    cls = np.concatenate([out["cls_targets_p%d" % l].numpy().reshape(-1) for l in (3, 4)])
    box = np.concatenate([out["box_targets_p%d" % l].numpy().reshape(-1, 4) for l in (3, 4)])
    return cls, box


def test_hand_built_case(config):
    anchors = build_anchors(config)
    assert anchors.shape == (80, 4)
    # P3 anchor at row 1, col 2 is [4, 12, 20, 28]; box A equals it shifted by 1 px (IoU 0.77).
    # Box B is tiny (IoU < 0.5 with everything) and must be force-matched.
    # Box C exactly equals P4 anchor (row 2, col 1) = [24, 8, 56, 40].
    gt = np.array([[5, 12, 21, 28], [40, 42, 44, 46], [24, 8, 56, 40]], np.float32)
    classes = np.array([3, 7, 90])
    out = build_target_assigner(config).assign(gt, classes)
    cls, box = _flat(out, config)

    iou = box_iou(gt, anchors)
    best = iou.argmax(0)
    positive = iou.max(0) >= 0.5
    positive[iou[1].argmax()] = True  # forced match of the tiny box
    expected_cls = np.where(positive, classes[best] - 1, NEGATIVE)
    expected_cls[iou[1].argmax()] = 6
    assert out["num_positives"].numpy() == positive.sum()
    np.testing.assert_array_equal(cls, expected_cls)
    # Hand check of the three expected key anchors.
    assert cls[1 * 8 + 2] == 2
    assert cls[64 + 2 * 4 + 1] == 89
    assert cls[iou[1].argmax()] == 6

    # Box targets: independent Faster R-CNN deltas without scale factors.
    idx = 1 * 8 + 2
    a, g = anchors[idx], gt[0]
    ha, wa = a[2] - a[0], a[3] - a[1]
    expected = [((g[0] + g[2]) / 2 - (a[0] + a[2]) / 2) / ha, ((g[1] + g[3]) / 2 - (a[1] + a[3]) / 2) / wa,
                np.log((g[2] - g[0]) / ha), np.log((g[3] - g[1]) / wa)]
    np.testing.assert_allclose(box[idx], expected, atol=1e-6)
    np.testing.assert_allclose(box[64 + 9], 0.0, atol=1e-6)  # exact match encodes to zeros
    assert np.all(box[cls < 0] == 0)


def test_layout_is_level_y_x_anchor(config):
    full = get_config("efficientdet-d0", "image_size=128")
    assigner = build_target_assigner(full)
    anchors = build_anchors(full)
    index = 16 * 16 * 9 + (3 * 8 + 5) * 9 + 4  # P4, y=3, x=5, anchor 4
    out = assigner.assign(anchors[index][None], [2])
    cls = out["cls_targets_p4"].numpy()
    assert cls.shape == (8, 8, 9)
    assert cls[3, 5, 4] == 1
    assert out["box_targets_p4"].shape == (8, 8, 36)
    np.testing.assert_allclose(out["box_targets_p4"].numpy()[3, 5, 16:20], 0.0, atol=1e-6)


def test_empty_and_padding_give_all_negative(config):
    for gt, classes in [(np.zeros([0, 4]), np.zeros([0])),
                        (np.array([[0, 0, 0, 0], [10, 10, 30, 30]]), np.array([1, 0]))]:
        out = build_target_assigner(config).assign(gt.astype(np.float32), classes)
        cls, box = _flat(out, config)
        assert np.all(cls == NEGATIVE)
        assert np.all(box == 0)
        assert out["num_positives"].numpy() == 0


def test_crowd_box_is_dropped_as_the_official_by_default(config):
    # One box plus one crowd box: the crowd box's anchors train as background (the official
    # skip_crowd_during_training), and the ordinary box is labelled as if it were alone.
    boxes = np.array([[36, 36, 60, 60], [4, 12, 20, 28]], np.float32)  # the crowd box equals P3 anchor (1, 2)
    both = build_target_assigner(config).assign(boxes, [1, 2], is_crowd=[0, 1])
    alone = build_target_assigner(config).assign(boxes[:1], [1])
    cls, box = _flat(both, config)
    cls_alone, box_alone = _flat(alone, config)
    assert not np.any(cls == IGNORE)
    np.testing.assert_array_equal(cls, cls_alone)
    np.testing.assert_array_equal(box, box_alone)
    assert both["num_positives"].numpy() == alone["num_positives"].numpy() > 0


def test_crowd_anchors_ignore_keeps_them_out_of_the_loss(config):
    crowd_box = np.array([[4, 12, 20, 28]], np.float32)  # equals P3 anchor (1, 2)
    out = build_target_assigner(config.replace({"loss.crowd_anchors": "ignore"})).assign(crowd_box, [1], is_crowd=[1])
    cls, _ = _flat(out, config)
    assert out["num_positives"].numpy() == 0
    assert cls[1 * 8 + 2] == IGNORE
    assert set(np.unique(cls)) == {IGNORE, NEGATIVE}
    with pytest.raises(ValueError, match="crowd_anchors"):
        build_target_assigner(config.replace({"loss.crowd_anchors": "skip"}))
