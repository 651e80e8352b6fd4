"""int8 calibration helpers: the label-free agreement between two detectors' outputs."""

import numpy as np
import pytest

from efficientdet_tf.export.calibration import NothingToCompare, detection_agreement


def _picture(boxes, scores, classes, size=100):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = {"detection_boxes": np.zeros((size, 4), np.float32), "detection_scores": np.zeros(size, np.float32),
           "detection_classes": np.zeros(size, np.int32), "num_detections": np.int32(len(boxes))}
    out["detection_boxes"][:len(boxes)] = boxes
    out["detection_scores"][:len(boxes)] = scores
    out["detection_classes"][:len(boxes)] = classes
    return out


REFERENCE = [_picture([[10, 10, 50, 60], [60, 20, 90, 80], [5, 5, 8, 8]], [0.9, 0.8, 0.1], [1, 2, 1]),
             _picture([[20, 30, 70, 90]], [0.7], [3])]


def test_identical_detections_agree_fully():
    assert detection_agreement(REFERENCE, REFERENCE) == pytest.approx(1.0)


def test_moved_or_missing_boxes_agree_less():
    moved = [_picture(p["detection_boxes"][:3] + 6.0, p["detection_scores"][:3], p["detection_classes"][:3])
             for p in REFERENCE]
    missing = [REFERENCE[0], _picture([], [], [])]
    full = detection_agreement(REFERENCE, REFERENCE)
    assert detection_agreement(REFERENCE, moved) < full
    assert detection_agreement(REFERENCE, missing) < full
    # The low-scoring reference box is no object to find: dropping it costs nothing.
    dropped_weak = [_picture(REFERENCE[0]["detection_boxes"][:2], [0.9, 0.8], [1, 2]), REFERENCE[1]]
    assert detection_agreement(REFERENCE, dropped_weak) == pytest.approx(1.0)


def test_a_reference_that_finds_nothing_is_an_error():
    with pytest.raises(NothingToCompare, match="detects nothing"):
        detection_agreement([_picture([[1, 1, 5, 5]], [0.1], [1])], REFERENCE[:1])
