"""COCO metrics: a hand-made case with known AP, and equality with pycocotools' own COCOeval."""

import contextlib
import io
import json

import numpy as np
import pytest

from efficientdet_tf.metrics import coco_metrics
from efficientdet_tf.metrics.coco_format import coco_results


def _one_picture_groundtruth():
    builder = coco_metrics.GroundtruthBuilder({1: "circle", 2: "square"})
    # Two circles, [ymin, xmin, ymax, xmax] pixels; areas from the boxes.
    builder.add(7, 200, 300, [[10, 10, 60, 60], [100, 150, 180, 250]], [1, 1])
    return builder.dataset()


def test_hand_made_case_with_known_ap():
    gt = _one_picture_groundtruth()
    assert gt["annotations"][0]["bbox"] == [10.0, 10.0, 50.0, 50.0] and gt["annotations"][0]["area"] == 2500.0
    detections = {"detection_boxes": np.array([[10, 10, 60, 60], [0, 200, 20, 220]], np.float32),
                  "detection_scores": np.array([0.9, 0.8]), "detection_classes": np.array([1, 1]),
                  "num_detections": 2}
    metrics = coco_metrics.evaluate_detections(gt, coco_results(7, detections)).metrics
    # Ranked: a true positive (recall 0.5, precision 1), then a false positive; the second circle is
    # never found. Interpolated precision is 1 at the 51 recall points 0.00..0.50 and 0 above:
    # AP = 51 / 101 at every IoU threshold (the match is exact).
    for key in ("AP", "AP50", "AP75"):
        assert metrics[key] == pytest.approx(51 / 101, abs=1e-9), key
    assert metrics["ARmax1"] == pytest.approx(0.5) and metrics["ARmax100"] == pytest.approx(0.5)
    assert metrics["APs"] == -1.0  # no small object (area < 32^2) in the ground truth: COCO's "undefined"
    assert metrics["per_class"]["circle"] == {"id": 1, "AP": pytest.approx(51 / 101), "AP50": pytest.approx(51 / 101),
                                              "num_groundtruths": 2}
    assert metrics["per_class"]["square"]["AP"] is None  # no square anywhere
    perfect = dict(detections, detection_boxes=np.array([[10, 10, 60, 60], [100, 150, 180, 250]], np.float32))
    assert coco_metrics.evaluate_detections(gt, coco_results(7, perfect)).metrics["AP"] == pytest.approx(1.0)
    nothing = coco_metrics.evaluate_detections(gt, []).metrics
    assert nothing["AP"] == 0.0 and nothing["ARmax100"] == 0.0


def test_equals_pycocotools_on_the_same_detections(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)
    builder = coco_metrics.GroundtruthBuilder({1: "a", 2: "b", 3: "c"})
    results = []
    for image_id in range(1, 21):
        count = int(rng.integers(1, 6))
        ymin, xmin = rng.uniform(0, 200, (2, count))
        size = rng.uniform(8, 150, (2, count))  # small, medium and large objects
        boxes = np.stack([ymin, xmin, ymin + size[0], xmin + size[1]], -1)
        classes = rng.integers(1, 4, count)
        crowd = (rng.uniform(size=count) < 0.1).astype(int)
        builder.add(image_id, 400, 400, boxes, classes, crowd)
        # Detections: jittered copies (some with the wrong class) and random boxes.
        noisy = boxes + rng.normal(0, 6, boxes.shape)
        extra = rng.uniform(0, 300, (3, 2))
        extra = np.concatenate([extra, extra + rng.uniform(10, 90, (3, 2))], -1)
        detections = {"detection_boxes": np.concatenate([noisy, extra]),
                      "detection_scores": rng.uniform(0.05, 1, count + 3),
                      "detection_classes": np.concatenate([np.where(rng.uniform(size=count) < 0.2, 1, classes),
                                                           rng.integers(1, 4, 3)]),
                      "num_detections": count + 3}
        results += coco_results(image_id, detections)
    dataset = builder.dataset()
    ours = coco_metrics.evaluate_detections(dataset, results).metrics

    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(dataset))
    dt_path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        reference = COCOeval(gt, gt.loadRes(str(dt_path)), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert [ours[k] for k in coco_metrics.METRIC_KEYS] == [float(v) for v in reference.stats]
    assert 0.05 < ours["AP"] < 0.95  # a case that tells the numbers apart
    # Per-class AP as pycocotools computes it for one category at a time.
    for name, row in ours["per_class"].items():
        with contextlib.redirect_stdout(io.StringIO()):
            single = COCOeval(gt, gt.loadRes(str(dt_path)), "bbox")
            single.params.catIds = [row["id"]]
            single.evaluate()
            single.accumulate()
            single.summarize()
        assert row["AP"] == pytest.approx(single.stats[0], abs=1e-12), name
        assert row["AP50"] == pytest.approx(single.stats[1], abs=1e-12), name


def test_tables_format():
    metrics = coco_metrics.evaluate_detections(_one_picture_groundtruth(), []).metrics
    text = coco_metrics.format_metrics(metrics)
    assert all(key in text for key in coco_metrics.METRIC_KEYS)
    table = coco_metrics.format_per_class(metrics["per_class"]).splitlines()
    assert table[1].split()[:2] == ["1", "circle"] and table[2].split()[2] == "-"
