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


def _scores_and_boxes_model():
    """A float TFLite model of 6 'anchors': scores = sigmoid(x), boxes = exp(3x); returns (bytes, score
    tensor index, box tensor index)."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema_fb

    from efficientdet_tf.export.tflite_graph import builtin_name

    fn = tf.function(lambda x: {"scores": tf.sigmoid(x), "boxes": tf.exp(3.0 * x)},
                     input_signature=[tf.TensorSpec([1, 6], tf.float32, name="x")])
    content = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(content, 0))
    outputs = {builtin_name(model, op): int(op.outputs[0]) for op in model.subgraphs[0].operators}
    return content, outputs["LOGISTIC"], outputs["EXP"]


def test_box_ranges_count_confident_anchors_and_leave_out_runaway_pictures():
    from efficientdet_tf.export.calibration import box_ranges

    content, scores, boxes = _scores_and_boxes_model()
    confident = np.array([[-5.0, 1.0, -5.0, -5.0, -4.0, -5.0]], np.float32)   # anchor 1 scores 0.73
    unsure = np.array([[-3.0, -2.0, -6.0, -6.0, -6.0, -2.5]], np.float32)     # none above 0.2: the best 2
    runaway = np.array([[-5.0, 9.0, -5.0, -5.0, -5.0, -5.0]], np.float32)     # exp(27) for a confident one
    ranges, skipped = box_ranges(content, [boxes], [[confident], [unsure], [runaway]], scores,
                                 min_score=0.2, top_k=2, limit=1e6)
    assert skipped == 1
    low, high = ranges[boxes]
    # exp(3x) over anchor 1 of the first picture and anchors 1 and 5 of the second; never the
    # unconfident anchors' exp(-15) nor the runaway picture.
    np.testing.assert_allclose([low, high], [np.exp(-7.5), np.exp(3.0)], rtol=1e-5)
    with pytest.raises(ValueError, match="on every calibration picture"):
        box_ranges(content, [boxes], [[runaway]], scores, min_score=0.2, top_k=2, limit=1e6)
