"""int8 activation ranges: two estimates from the calibration pictures, and a label-free choice between them."""

import numpy as np

from efficientdet_tf.litert import make_interpreter
from efficientdet_tf.metrics.coco_format import coco_results
from efficientdet_tf.metrics.coco_metrics import GroundtruthBuilder, evaluate_detections

# Reference detections at least this confident count as the objects the int8 file should find.
AGREEMENT_MIN_SCORE = 0.4


class NothingToCompare(ValueError):
    """The reference detector found nothing confident enough to score another one against."""


def has_range(tensor):
    """Whether the calibrator recorded one (per-tensor) min/max for a calibrated model's `tensor`
    (a flatbuffer TensorT)."""
    q = tensor.quantization
    return q is not None and q.min is not None and len(q.min) == 1


def _finite_extremes(calibrated, tensor_indices, samples, scores=None, min_score=0.0, top_k=0):
    """Yields, sample by sample, {tensor index: (min, max) of its finite values} of a calibrated
    (still float) model; a tensor without finite values is left out of that sample's dict.

    With `scores` (the index of a per-anchor score tensor of N values), tensors with an axis of N
    (one row per anchor) count only the anchors scoring at least `min_score`, or the `top_k` best on
    a sample where none does.
    """
    interpreter = make_interpreter(model_content=calibrated, preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    for sample in samples:
        for detail, value in zip(inputs, sample):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        keep = None
        if scores is not None:
            values = interpreter.get_tensor(scores).reshape(-1)
            keep = values >= min_score
            if not keep.any():
                keep[np.argsort(-values, kind="stable")[:top_k]] = True
        extremes = {}
        for i in tensor_indices:
            value = interpreter.get_tensor(i)
            if keep is not None and keep.size in value.shape:
                value = value.reshape(keep.size, -1)[keep]
            value = value[np.isfinite(value)]
            if value.size:
                extremes[i] = (float(value.min()), float(value.max()))
        yield extremes


def mean_ranges(calibrated, tensor_indices, samples):
    """{tensor index: (mean of the per-sample minima, mean of the per-sample maxima)}.

    Runs the calibrated (still float) model on each sample and averages every listed tensor's
    extremes (of its finite values). The calibrator's own range is the minimum and maximum over all
    samples, so one outlier picture widens a tensor's range for every picture; TensorFlow's
    quantisation-aware training tracks ranges as a moving average of per-batch extremes instead,
    which for batches of one picture is this estimate.
    """
    sums, counts = {}, {}
    for extremes in _finite_extremes(calibrated, tensor_indices, samples):
        for i, pair in extremes.items():
            sums[i] = sums.get(i, np.zeros(2)) + pair
            counts[i] = counts.get(i, 0) + 1
    if not counts and tensor_indices:
        raise ValueError("the calibration data set yielded no sample")
    return {i: (float(low / counts[i]), float(high / counts[i])) for i, (low, high) in sums.items()}


def box_ranges(calibrated, tensor_indices, samples, scores, min_score, top_k, limit):
    """({tensor index: (min, max)}, number of samples left out) for the box decoding's tensors: over
    the anchors scoring at least `min_score` (the `top_k` best where none does; `_finite_extremes`),
    leaving out samples where such an anchor's values pass +-`limit` (a network driven out of its
    range by a picture unlike its data: int8 scales that held them would leave no step for real boxes,
    or none that the int8 kernels can represent).

    Raises:
      ValueError: every sample passes the limit.
    """
    ranges, skipped = {}, 0
    for extremes in _finite_extremes(calibrated, tensor_indices, samples, scores, min_score, top_k):
        if any(max(abs(low), abs(high)) > limit for low, high in extremes.values()):
            skipped += 1
            continue
        for i, (low, high) in extremes.items():
            old = ranges.get(i, (low, high))
            ranges[i] = (min(old[0], low), max(old[1], high))
    if not ranges and tensor_indices:
        raise ValueError("on every calibration picture the model's confident boxes reach beyond %g (values of "
                         "its box decoding): calibrate on pictures like its training data" % limit)
    return ranges, skipped


def finite_ranges(calibrated, tensor_indices, samples):
    """{tensor index: (min, max)} over the finite values of every sample: the calibrator's min/max
    without the infinities that no quantisation scale holds."""
    ranges = {}
    for extremes in _finite_extremes(calibrated, tensor_indices, samples):
        for i, (low, high) in extremes.items():
            old = ranges.get(i, (low, high))
            ranges[i] = (min(old[0], low), max(old[1], high))
    return ranges


def detections(model_content, samples):
    """The detection outputs (one dict per sample, batch axis dropped, boxes in input pixels) of a
    TFLite detection model."""
    runner = make_interpreter(model_content=model_content).get_signature_runner()
    pixel_type = runner.get_input_details()["images"]["dtype"]  # float32 while calibrating, uint8 in the file
    found = []
    for sample in samples:
        out = {key: value[0] for key, value in runner(images=sample[0].astype(pixel_type)).items()}
        height, width = sample[0].shape[1:3]
        out["detection_boxes"] = out["detection_boxes"] * np.array([height, width, height, width], np.float32)
        found.append(out)
    return found


def detection_agreement(reference, candidate):
    """COCO AP of `candidate` detections scored against `reference` detections taken as the truth.

    Both are lists of per-picture detection dicts (detection_boxes, _scores, _classes,
    num_detections) on the same pictures; reference detections scoring below
    AGREEMENT_MIN_SCORE are left out. 1.0 means the candidate finds what the reference finds, in
    the same places. Needs no labels, so it can rank int8 files on the calibration pictures.
    Raises NothingToCompare when no reference detection reaches AGREEMENT_MIN_SCORE.
    """
    truth = GroundtruthBuilder({})
    results = []
    for image_id, (ref, out) in enumerate(zip(reference, candidate)):
        keep = ref["detection_scores"][:int(ref["num_detections"])] >= AGREEMENT_MIN_SCORE
        truth.add(image_id, 1, 1, ref["detection_boxes"][:len(keep)][keep], ref["detection_classes"][:len(keep)][keep])
        results += coco_results(image_id, out)
    if not truth.annotations:
        raise NothingToCompare("the float model detects nothing above %.1f on the %d calibration pictures"
                               % (AGREEMENT_MIN_SCORE, len(reference)))
    ids = {a["category_id"] for a in truth.annotations} | {r["category_id"] for r in results}
    truth.categories = {c: str(c) for c in ids}
    return evaluate_detections(truth.dataset(), results).metrics["AP"]
