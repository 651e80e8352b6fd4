"""Post-processing on synthetic head outputs: every NMS mode against a plain per-image version."""

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.ops import box_coder, postprocess
from efficientdet_tf.config import get_config
from efficientdet_tf.factory import build_anchors, build_postprocess_fn
from efficientdet_tf.ops.anchors import feature_sizes

NUM_CLASSES = 4


def _config(**nms):
    overrides = {"image_size": 128, "num_classes": NUM_CLASSES}
    overrides.update({"nms." + k: v for k, v in nms.items()})
    return get_config("efficientdet-d0", overrides)


def _raw_outputs(config, batch=2, seed=0):
    """Mostly-background logits with a few confident anchors; small random box deltas."""
    rng = np.random.default_rng(seed)
    classes, boxes = [], []
    for h, w in feature_sizes(config.image_size, config.min_level, config.max_level).values():
        logits = rng.normal(-4.0, 1.5, size=(batch, h, w, 9 * NUM_CLASSES))
        logits[rng.random(logits.shape) < 0.02] += 6.0
        classes.append(tf.constant(logits, tf.float32))
        boxes.append(tf.constant(rng.normal(0, 0.3, size=(batch, h, w, 36)), tf.float32))
    return classes, boxes


def _plain(config, class_outputs, box_outputs, b):
    """Per-image boxes/scores/classes as the reference builds them before NMS."""
    logits = np.concatenate([c[b].numpy().reshape(-1, NUM_CLASSES) for c in class_outputs])
    deltas = np.concatenate([x[b].numpy().reshape(-1, 4) for x in box_outputs])
    boxes = box_coder.decode(deltas, build_anchors(config)).numpy()
    return boxes, 1 / (1 + np.exp(-logits.max(-1))), logits.argmax(-1)


def _nms_parameters(config):
    nms = config.nms
    return postprocess.nms_parameters(nms.method, nms.iou_threshold, nms.score_threshold, nms.sigma)


def _soft_nms(config, boxes, scores):
    iou, threshold, sigma = _nms_parameters(config)
    index, kept = tf.image.non_max_suppression_with_scores(
        boxes, scores, config.nms.max_detections, iou, threshold, sigma)
    return index.numpy(), kept.numpy()


@pytest.mark.parametrize("method", ["gaussian", "hard"])
def test_global_matches_plain_nms(method):
    config = _config(method=method)
    cls, box = _raw_outputs(config)
    scales = np.array([2.0, 0.5], np.float32)
    out = build_postprocess_fn(config)(cls, box, scales)
    for b in range(2):
        boxes, scores, classes = _plain(config, cls, box, b)
        index, kept = _soft_nms(config, boxes, scores)
        n = len(index)
        assert out["num_detections"][b] == n
        np.testing.assert_allclose(out["detection_scores"][b, :n], kept, rtol=1e-6)
        expected = np.clip(boxes[index], 0, config.image_size) * scales[b]
        np.testing.assert_allclose(out["detection_boxes"][b, :n], expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(out["detection_classes"][b, :n], classes[index] + 1)
        assert not np.any(out["detection_scores"][b, n:]) and not np.any(out["detection_classes"][b, n:])


def test_per_class_matches_class_by_class_nms():
    config = _config(mode="per_class")
    cls, box = _raw_outputs(config)
    out = build_postprocess_fn(config)(cls, box)
    for b in range(2):
        boxes, scores, classes = _plain(config, cls, box, b)
        found = []
        for c in range(NUM_CLASSES):
            ids = np.where(classes == c)[0]
            index, kept = _soft_nms(config, boxes[ids], scores[ids])
            found += [(s, c + 1, tuple(boxes[ids][i])) for i, s in zip(index, kept)]
        found.sort(key=lambda t: -t[0])
        found = found[:config.nms.max_detections]
        n = len(found)
        assert out["num_detections"][b] == n
        np.testing.assert_allclose(out["detection_scores"][b, :n], [f[0] for f in found], rtol=1e-6)
        np.testing.assert_array_equal(out["detection_classes"][b, :n], [f[1] for f in found])
        np.testing.assert_allclose(out["detection_boxes"][b, :n], [f[2] for f in found], rtol=1e-6)


def test_hard_nms_leaves_no_overlap_and_combined_is_valid():
    # per_class boxes are not clipped, so their IoUs are the ones NMS saw.
    config = _config(method="hard", iou_threshold=0.3, mode="per_class")
    cls, box = _raw_outputs(config)
    out = build_postprocess_fn(config)(cls, box)
    n = out["num_detections"][0]
    boxes = out["detection_boxes"][0, :n].numpy()
    same_class = out["detection_classes"][0, :n].numpy()[:, None] == out["detection_classes"][0, :n].numpy()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom - top, 0, None), axis=-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    np.fill_diagonal(iou, 0)
    assert n > 10 and iou[same_class].max() <= 0.3 + 1e-6 and iou.max() > 0.3

    combined = build_postprocess_fn(_config(mode="combined", method="hard"))(cls, box)
    n = combined["num_detections"].numpy()
    assert combined["detection_boxes"].shape == (2, 100, 4) and np.all(n > 0)
    classes = combined["detection_classes"].numpy()
    assert classes[0, :n[0]].min() >= 1 and classes[0, :n[0]].max() <= NUM_CLASSES
    assert np.all(np.diff(combined["detection_scores"][0, :n[0]]) <= 0)


@pytest.mark.parametrize("mode", ["global", "per_class", "combined"])
def test_dynamic_batch_in_tf_function(mode):
    config = _config(mode=mode)
    cls, box = _raw_outputs(config, batch=3, seed=1)
    specs = [tf.TensorSpec([None] + c.shape[1:], tf.float32) for c in cls]
    bspecs = [tf.TensorSpec([None] + b.shape[1:], tf.float32) for b in box]
    fn = tf.function(lambda c, b: build_postprocess_fn(config)(c, b, tf.ones([tf.shape(c[0])[0]])),
                     input_signature=[specs, bspecs])
    dynamic = fn(cls, box)
    static = build_postprocess_fn(config)(cls, box)
    for key in postprocess.OUTPUT_KEYS:
        np.testing.assert_allclose(dynamic[key], static[key], rtol=1e-5, atol=1e-4)
    assert dynamic["detection_classes"].dtype == tf.int32 and dynamic["num_detections"].dtype == tf.int32


def test_tensorflow_soft_nms_ignores_the_iou_threshold():
    # Why nms_parameters passes 1.0 for Gaussian soft-NMS: TensorFlow decays, it does not drop.
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (300, 2)).astype(np.float32)], -1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    runs = [tf.image.non_max_suppression_with_scores(boxes, scores, 100, iou, 0.001, 0.25) for iou in (0.3, 1.0)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    hard = [tf.image.non_max_suppression_with_scores(boxes, scores, 100, iou, 0.001, 0.0)[0].numpy()
            for iou in (0.3, 1.0)]
    assert not np.array_equal(hard[0], hard[1])  # where it does act: hard NMS


def test_score_threshold_zero_falls_back_for_gaussian_and_max_nms_inputs():
    assert _nms_parameters(_config(score_threshold=0.0)) == (1.0, 0.001, 0.25)
    assert _nms_parameters(_config(method="hard", score_threshold=0.0)) == (0.5, 0.0, 0.0)
    cls, box = _raw_outputs(_config())
    out = build_postprocess_fn(_config(max_nms_inputs=50))(cls, box)
    assert 0 < out["num_detections"][0] <= 50


def test_best_class_reductions_agree_ties_included():
    rng = np.random.default_rng(5)
    levels = [rng.normal(size=(2, s, s, 3 * 4)).astype(np.float32) for s in (4, 2)]
    levels[0][0, 0, 0, :4] = 7.0  # an anchor whose 4 classes tie: the lower channel wins
    levels[1][1, 1, 0, 4:8] = -2.0  # and one whose classes tie in another level, picture and anchor
    a = postprocess.best_class(levels, 4, "top_k")
    for reduction in ("max_argmax", "channels_first"):
        b = postprocess.best_class(levels, 4, reduction)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert a[1][0, 0] == 0 and a[0][0, 0] == 7.0
    want = np.concatenate([x.reshape(2, -1, 4) for x in levels], axis=1)
    np.testing.assert_array_equal(a[1], want.argmax(-1))
    with pytest.raises(ValueError, match="reduction"):
        postprocess.best_class(levels, 4, "sort")


def _one_object_everywhere(config, batch=1):
    """Every anchor predicts class channel 1 with the same box (zero deltas against a fixed box)."""
    anchors = np.asarray(build_anchors(config), np.float32)
    target = np.array([30.0, 40.0, 90.0, 100.0], np.float32)
    deltas = np.asarray(box_coder.encode(np.broadcast_to(target, anchors.shape), anchors), np.float32)
    classes, boxes, start = [], [], 0
    for h, w in feature_sizes(config.image_size, config.min_level, config.max_level).values():
        count = h * w * 9
        logits = np.full((batch, h, w, 9, NUM_CLASSES), -8.0, np.float32)
        logits[..., 1] = np.linspace(2.0, 3.0, count, dtype=np.float32).reshape(h, w, 9)
        classes.append(tf.constant(logits.reshape(batch, h, w, -1)))
        level = deltas[start:start + count].reshape(1, h, w, 36)
        boxes.append(tf.constant(np.repeat(level, batch, axis=0)))
        start += count
    return classes, boxes


def test_combined_mode_suppresses_duplicates_with_the_default_method():
    # Gaussian is the default method; combined NMS has no soft-NMS and must still suppress at the
    # configured IoU (it used to get the soft-NMS IoU threshold of 1 and kept 100 copies of one box).
    config = _config(mode="combined")
    assert config.nms.method == "gaussian"
    cls, box = _one_object_everywhere(config)
    out = build_postprocess_fn(config)(cls, box)
    assert int(out["num_detections"][0]) == 1
    np.testing.assert_allclose(out["detection_boxes"][0, 0], [30, 40, 90, 100], atol=1e-3)
    assert int(out["detection_classes"][0, 0]) == 2


def test_max_nms_inputs_keeps_anchor_class_pairs_as_the_official():
    # One anchor confident in two classes: the official top-k keeps both pairs, so per-class NMS
    # returns the same box once per class.
    config = _config(mode="per_class", max_nms_inputs=2)
    cls, box = _one_object_everywhere(config)
    first = cls[0].numpy().reshape(1, -1, NUM_CLASSES)
    first[0, 0, 1], first[0, 0, 3] = 9.0, 8.0
    cls[0] = tf.constant(first.reshape(cls[0].shape))
    out = build_postprocess_fn(config)(cls, box)
    assert int(out["num_detections"][0]) == 2
    assert sorted(out["detection_classes"][0, :2].numpy().tolist()) == [2, 4]
    np.testing.assert_allclose(out["detection_scores"][0, :2], 1 / (1 + np.exp(-np.array([9.0, 8.0]))), rtol=1e-6)


def test_evaluation_runs_the_official_post_processing_by_default():
    from efficientdet_tf.factory import OFFICIAL_EVAL_NMS, evaluation_config

    config = get_config("efficientdet-d0")
    assert config.eval.nms_preset == "official" and config.nms.mode == "global"
    evaluated = evaluation_config(config)
    assert {k: evaluated.nms[k] for k in OFFICIAL_EVAL_NMS} == OFFICIAL_EVAL_NMS
    assert evaluated.nms.mode == "per_class" and evaluated.nms.max_nms_inputs == 5000
    assert evaluation_config(config, "config").nms.as_dict() == config.nms.as_dict()
    with pytest.raises(ValueError, match="nms_preset"):
        evaluation_config(config, "fast")


def _clustered_candidates(count, flat, seed=0):
    """Boxes in clusters (so soft-NMS decays many), scores spread (`flat`: all within 1%)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 480, size=(count // 20 + 1, 2))[rng.integers(0, count // 20 + 1, count)]
    centres += rng.normal(0, 6, size=(count, 2))
    half = rng.uniform(8, 40, size=(count, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    scores = rng.uniform(0.5, 0.505, count) if flat else rng.beta(0.5, 3.0, count)
    return boxes[None], scores.astype(np.float32)[None], rng.integers(0, NUM_CLASSES, (1, count)).astype(np.int32)


@pytest.mark.parametrize("method", ["gaussian", "hard"])
@pytest.mark.parametrize("flat", [False, True])
def test_loop_nms_window_gives_what_the_whole_loop_and_tensorflow_give(method, flat):
    """The ONNX NMS decays only the best `windows[0]` candidates while no outside one can win; on
    flat scores (the window runs out) it catches up and goes on over the next window, and at last
    over all of them. All give the unwindowed loop's detections bit for bit and TensorFlow's
    kernel's to float rounding."""
    from efficientdet_tf.ops.loop_nms import loop_nms
    boxes, scores, classes = _clustered_candidates(3000, flat)
    config = _config(method=method, score_threshold=0.01)
    params = _nms_parameters(config)

    def run(per_class, windows):  # a graph: the loop's steps in eager mode take seconds
        fn = tf.function(lambda b, s, c: loop_nms(b, s, c, 100, params, per_class, windows=windows))
        return [t.numpy() for t in fn(boxes, scores, classes)]

    for per_class in (False, True):
        whole = run(per_class, (4096,))
        for windows in ((16,), (256,), (16, 64, 512)):
            for got, want in zip(run(per_class, windows), whole):
                np.testing.assert_array_equal(got, want)
    index, kept = tf.image.non_max_suppression_with_scores(boxes[0], scores[0], 100, *params)
    out_boxes, out_scores, _, count = run(False, (16, 64))
    assert int(count[0]) == len(index) == 100
    np.testing.assert_allclose(out_scores[0], kept.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(out_boxes[0], boxes[0][index.numpy()])


def _kernel_and_loop(boxes, scores, params, max_out, windows=(2, 16)):
    """(boxes, scores) selected by TensorFlow's NonMaxSuppressionV5 and by `loop_nms`."""
    from efficientdet_tf.ops.loop_nms import loop_nms
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    index, kept, valid = tf.raw_ops.NonMaxSuppressionV5(
        boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=params[0], score_threshold=params[1],
        soft_nms_sigma=params[2], pad_to_max_output_size=True)
    valid = int(valid)
    fn = tf.function(lambda b, s, c: loop_nms(b, s, c, max_out, params, windows=windows))
    out_boxes, out_scores, _, count = fn(boxes[None], scores[None], np.zeros((1, len(scores)), np.int32))
    count = int(count[0])
    return ((boxes[index.numpy()[:valid]], kept.numpy()[:valid]),
            (out_boxes.numpy()[0, :count], out_scores.numpy()[0, :count]))


def _assert_same_selection(boxes, scores, params, max_out):
    (want_boxes, want_scores), (got_boxes, got_scores) = _kernel_and_loop(boxes, scores, params, max_out)
    assert len(got_boxes) == len(want_boxes)
    np.testing.assert_array_equal(got_boxes, want_boxes)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)


HARD, SOFT = (0.5, 0.0, 0.0), (1.0, 0.0, 0.25)


@pytest.mark.parametrize("params", [(0.5, -0.5, 0.0), (0.5, float("-inf"), 0.0), (1.0, float("-inf"), 0.25)],
                         ids=["hard-0.5", "hard-inf", "soft-inf"])
def test_loop_nms_with_a_negative_score_threshold_selects_what_the_kernel_selects(params):
    """The official hard NMS runs with a threshold of -inf: suppressed boxes must stay suppressed
    (not come back with score 0) and a box taken must not be taken again."""
    boxes, scores, _ = _clustered_candidates(600, flat=False)
    _assert_same_selection(boxes[0], scores[0], params, 600)


NAN = float("nan")
FAR = [[50, 50, 60, 60], [70, 70, 80, 80]]


@pytest.mark.parametrize("params", [HARD, (0.5, float("-inf"), 0.0), SOFT, (1.0, float("-inf"), 0.25)],
                         ids=["hard", "hard-inf", "soft", "soft-inf"])
@pytest.mark.parametrize("case", ["nan_score", "nan_box_first", "nan_box_later", "nan_ymax_first"])
def test_loop_nms_on_nan_inputs_selects_what_the_kernel_selects(case, params):
    """A NaN score is never a candidate (it must not push a valid box out); a NaN box taken first
    zeroes the others' scores, and one met later is dropped, as in the kernel."""
    boxes = [[0, 0, 10, 10], [0, 2, 10, 12]] + FAR
    scores = [0.9, 0.8, 0.7, 0.6]
    if case == "nan_score":
        scores[0] = NAN
    elif case == "nan_box_first":
        boxes[0] = [NAN, 0, 10, 10]
    elif case == "nan_box_later":
        boxes[2] = [NAN, 50, 60, 60]
    else:  # the kernel reads a NaN in the second corner as an empty box
        boxes[0] = [0, 0, NAN, 10]
    (want_boxes, want_scores), (got_boxes, got_scores) = _kernel_and_loop(boxes, scores, params, 4)
    assert len(got_boxes) == len(want_boxes) >= 1
    np.testing.assert_array_equal(got_boxes, want_boxes)  # NaN corners compare equal here
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)


def test_loop_nms_breaks_a_tie_after_gaussian_decay_by_anchor_index():
    """A decayed score equal to another candidate's goes to the lower anchor index, as the kernel's
    priority queue orders them, not to the higher initial score."""
    taken, decayed = [0, 0, 10, 10], [0, 3, 10, 13]
    (_, pair_scores), _ = _kernel_and_loop([taken, decayed], [0.95, 0.9], SOFT, 2)
    # Anchor 1 starts with exactly the score anchor 3 decays to once anchor 2 is taken.
    boxes = [[90, 90, 95, 95], [50, 50, 60, 60], taken, decayed]
    scores = [0.1, pair_scores[1], 0.95, 0.9]
    (want_boxes, _), (got_boxes, got_scores) = _kernel_and_loop(boxes, scores, SOFT, 4)
    assert got_scores[1] == got_scores[2]
    np.testing.assert_array_equal(want_boxes[1], boxes[1])
    np.testing.assert_array_equal(got_boxes, want_boxes)


@pytest.mark.parametrize("params", [(0.5, float("-inf"), 0.0), (1.0, float("-inf"), 0.25)], ids=["hard-inf", "soft-inf"])
def test_loop_nms_in_onnx_runtime_selects_what_the_kernel_selects(params):
    """The same edge cases through the ONNX graph that the end-to-end ONNX file carries."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    import logging

    import onnxruntime
    import tf2onnx

    from efficientdet_tf.ops.loop_nms import loop_nms
    signature = [tf.TensorSpec([None, None, 4], tf.float32, name="boxes"),
                 tf.TensorSpec([None, None], tf.float32, name="scores"),
                 tf.TensorSpec([None, None], tf.int32, name="classes")]
    fn = tf.function(lambda b, s, c: loop_nms(b, s, c, 64, params, windows=(4, 16)), input_signature=signature)
    level = logging.getLogger("tf2onnx").level
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=17)
    logging.getLogger("tf2onnx").setLevel(level)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    clustered, clustered_scores, _ = _clustered_candidates(200, flat=False)
    cases = [(clustered[0], clustered_scores[0]),
             ([[0, 0, 10, 10], [0, 2, 10, 12], [NAN, 50, 60, 60]] + FAR, [0.9, 0.8, 0.7, 0.6, 0.5]),
             ([[NAN, 0, 10, 10]] + FAR, [0.9, 0.8, 0.7])]
    for boxes, scores in cases:
        boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
        (want_boxes, want_scores), _ = _kernel_and_loop(boxes, scores, params, 64)
        got_boxes, got_scores, _, count = session.run(None, {"boxes": boxes[None], "scores": scores[None],
                                                             "classes": np.zeros((1, len(scores)), np.int32)})
        assert int(count[0]) == len(want_boxes) >= 1
        np.testing.assert_array_equal(got_boxes[0, :int(count[0])], want_boxes)
        np.testing.assert_allclose(got_scores[0, :int(count[0])], want_scores, rtol=1e-5)
