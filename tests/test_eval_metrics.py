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


def test_confusion_matrix_counts_matches_confusions_misses_and_background():
    from efficientdet_tf.metrics.confusion import confusion_matrix

    def annotation(image_id, class_id, bbox, crowd=0):
        return {"image_id": image_id, "category_id": class_id, "bbox": bbox, "iscrowd": crowd}

    def detection(image_id, class_id, bbox, score):
        return {"image_id": image_id, "category_id": class_id, "bbox": bbox, "score": score}

    groundtruth = {
        "images": [{"id": 1}, {"id": 2}, {"id": 3}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "fox"}],
        "annotations": [
            annotation(1, 1, [0, 0, 10, 10]), annotation(1, 2, [50, 50, 10, 10]),
            annotation(2, 3, [0, 0, 20, 20]),
            # Two overlapping objects: the dog detection overlaps the cat more, but a dog is there too.
            annotation(3, 1, [0, 0, 10, 10]), annotation(3, 2, [2, 0, 10, 10]),
            annotation(3, 3, [100, 100, 30, 30], crowd=1),
        ]}
    results = [
        detection(1, 1, [0, 0, 10, 10], 0.9),    # cat found
        detection(1, 1, [50, 50, 10, 10], 0.8),  # the dog taken for a cat
        detection(1, 2, [0, 0, 10, 10], 0.7),    # a second box on the cat, already matched: background
        detection(2, 1, [200, 200, 9, 9], 0.6),  # nothing there: background
        detection(2, 3, [0, 0, 20, 20], 0.1),    # below min_score: not counted, so the fox is missed
        detection(3, 2, [0.5, 0, 10, 10], 0.9),  # IoU 0.90 with the cat, 0.74 with the dog: the dog
        detection(3, 1, [0, 0, 10, 10], 0.8),    # the cat
        detection(3, 3, [100, 100, 30, 29], 0.8),  # on a crowd region: not counted
    ]
    matrix = confusion_matrix(groundtruth, results, label_map={3: "red fox"}, min_score=0.3)
    assert matrix.names == ["cat", "dog", "red fox", "background"]
    np.testing.assert_array_equal(matrix.counts, [
        [2, 0, 0, 0],   # cat: found twice
        [1, 1, 0, 0],   # dog: once as a cat, once right
        [0, 0, 0, 1],   # fox: missed
        [1, 1, 0, 0],   # background: the cat where nothing is, the second box on the cat
    ])
    assert matrix.most_confused() == [("dog", "cat", 1)]
    assert matrix.to_csv().splitlines()[0] == "true \\ predicted,cat,dog,red fox,background"
    assert matrix.to_csv().splitlines()[2] == "dog,1,1,0,0"
