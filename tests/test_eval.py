"""COCO evaluation end to end: checkpoint, Detector, SavedModel (and TFLite) agree; outputs; bad input in one line.

The validation records are labelled with the reference D0 model's own strongest detections (one of
them displaced), so the model scores a known, non-trivial AP on them and every way of running it
must find the same number.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.metrics import coco_metrics
from efficientdet_tf.eval.evaluator import EvalError, Evaluator, evaluate, make_eval_fn
from efficientdet_tf.runtime import Detector
from helpers import synthetic_picture
from tfrecord_tools.example_writer import make_example, write_records

SIZE = 128
SIZES = [(96, 128), (128, 96), (120, 120), (100, 140), (128, 128), (90, 110)]
HPARAMS = "image_size=%d" % SIZE
# The Detector and the SavedModel run the `nms` section inside them; a checkpoint is evaluated with
# the official post-processing unless eval.nms_preset=config says to run that same section.
SAME_NMS = HPARAMS + ",eval.nms_preset=config"


@pytest.fixture(scope="module")
def detector(d0_reference_dir):
    return Detector("efficientdet-d0", d0_reference_dir, image_size=SIZE)


@pytest.fixture(scope="module")
def records(tmp_path_factory, detector):
    """val-00000-of-00001.tfrecord with pseudo ground truth: the model's top 4 detections per picture."""
    folder = tmp_path_factory.mktemp("records")
    examples = []
    for index, (height, width) in enumerate(SIZES):
        picture = synthetic_picture(height, width, index)
        found = detector(picture)
        boxes = found["detection_boxes"][:4].copy()
        classes = found["detection_classes"][:4]
        if index % 2:
            boxes[1] += [0.4 * (boxes[1, 2] - boxes[1, 0]), 0, 0.4 * (boxes[1, 2] - boxes[1, 0]), 0]  # a miss
        boxes = np.clip(boxes, 0, [height, width, height, width])
        examples.append(make_example(picture, boxes, classes, source_id=str(100 + index), image_format="png"))
    return write_records(str(folder / "val-00000-of-00001.tfrecord"), examples)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, detector):
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check

    return export_saved_model(fold_and_check(detector.model, detector.config), detector.config,
                              str(tmp_path_factory.mktemp("export")), version=1)


@pytest.fixture(scope="module")
def checkpoint_report(d0_reference_dir, records, tmp_path_factory):
    return evaluate(d0_reference_dir, val_file_pattern=records, model_name="efficientdet-d0", hparams=SAME_NMS,
                    output_dir=str(tmp_path_factory.mktemp("eval")), progress=False)


def test_checkpoint_detector_and_saved_model_give_the_same_ap(checkpoint_report, detector, saved_model, records):
    expected = checkpoint_report.metrics
    assert expected["num_pictures"] == len(SIZES)
    assert 0.3 < expected["AP"] < 0.95 and expected["AP50"] > expected["AP"]
    for source in (detector, saved_model, os.path.dirname(saved_model)):
        got = evaluate(source, val_file_pattern=records, progress=False, nms="serving").metrics
        for key in coco_metrics.METRIC_KEYS:
            assert got[key] == pytest.approx(expected[key], abs=1e-3), (source, key)


def test_a_checkpoint_is_evaluated_with_the_official_post_processing_by_default(d0_reference_dir, records,
                                                                               checkpoint_report):
    # Pseudo ground truth from the serving NMS: the official per-class soft-NMS over the top 5000
    # (anchor, class) pairs scores it differently, so the default really is another setting.
    official = evaluate(d0_reference_dir, val_file_pattern=records, model_name="efficientdet-d0", hparams=HPARAMS,
                        progress=False).metrics
    assert abs(official["AP"] - checkpoint_report.metrics["AP"]) > 0.01
    with pytest.raises(EvalError, match="nms_preset"):
        evaluate(d0_reference_dir, val_file_pattern=records, model_name="efficientdet-d0",
                 hparams=HPARAMS + ",eval.nms_preset=fast", progress=False)


def test_tflite_file_is_evaluated_like_the_saved_model(detector, saved_model, tmp_path):
    from efficientdet_tf.export.saved_model import fold_and_check
    from efficientdet_tf.export.tflite import export_tflite

    # Pictures of the file's input size: letterboxing changes nothing, so the numbers must agree.
    examples = []
    for index in range(4):
        picture = synthetic_picture(SIZE, SIZE, 20 + index)
        found = detector(picture)
        examples.append(make_example(picture, found["detection_boxes"][:3], found["detection_classes"][:3],
                                     source_id=str(200 + index), image_format="png"))
    records = write_records(str(tmp_path / "square-00000-of-00001.tfrecord"), examples)
    path = export_tflite(fold_and_check(detector.model, detector.config), detector.config,
                         str(tmp_path / "d0.tflite"))
    want = evaluate(saved_model, val_file_pattern=records, progress=False).metrics
    got = evaluate(path, val_file_pattern=records, model_name="efficientdet-d0", hparams=HPARAMS,
                   progress=False).metrics
    assert got["num_pictures"] == 4 and 0.3 < want["AP"]
    for key in coco_metrics.METRIC_KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-3), key


def test_outputs_written(checkpoint_report):
    paths = checkpoint_report.paths
    metrics = json.loads(open(paths["metrics"]).read())
    assert set(coco_metrics.METRIC_KEYS) <= set(metrics) and "per_class" in metrics
    assert all(isinstance(metrics[k], float) for k in coco_metrics.METRIC_KEYS)
    for key in ("pr_curve", "pictures", "confusion_plot"):
        assert os.path.getsize(paths[key]) > 1000, key
    # The table holds every ground-truth object once: its row sums are the objects per class.
    table = [line.split(",") for line in open(paths["confusion"]).read().splitlines()]
    counts = np.array([[int(v) for v in row[1:]] for row in table[1:]])
    objects = checkpoint_report.metrics["per_class"]
    assert table[0][-1] == "background" and counts.shape == (len(objects) + 1,) * 2
    assert counts[:-1].sum(axis=1).tolist() == [objects[name]["num_groundtruths"] for name in table[0][1:-1]]
    np.testing.assert_array_equal(counts, checkpoint_report.confusion.counts)
    groundtruth = json.loads(open(paths["groundtruth"]).read())
    assert sorted(image["id"] for image in groundtruth["images"]) == list(range(100, 100 + len(SIZES)))
    assert {(image["height"], image["width"]) for image in groundtruth["images"]} == set(SIZES)
    assert "AP50" in open(paths["per_class"]).read()


def test_val_json_gives_the_same_numbers(checkpoint_report, records, detector, tmp_path):
    gt_file = tmp_path / "val.json"
    gt_file.write_text(open(checkpoint_report.paths["groundtruth"]).read())
    got = evaluate(detector, val_file_pattern=records, val_json_file=str(gt_file), progress=False,
                   nms="serving").metrics
    assert got["AP"] == pytest.approx(checkpoint_report.metrics["AP"], abs=1e-3)


def test_trainer_eval_fn_on_a_keras_model(checkpoint_report, detector, records):
    eval_fn = make_eval_fn(detector.config.replace({"eval.nms_preset": "config"}), val_file_pattern=records)
    metrics = eval_fn(detector.model, 10)
    assert metrics["AP"] == pytest.approx(checkpoint_report.metrics["AP"], abs=1e-3)
    assert eval_fn(detector.model, 20)["AP"] == metrics["AP"]  # reusable


def test_other_class_count_than_the_records(records, detector, saved_model, tmp_path):
    # A label map beside the records says they hold 5 classes; the model predicts 90.
    folder = tmp_path / "five"
    folder.mkdir()
    path = folder / "val-00000-of-00001.tfrecord"
    path.write_bytes(open(records, "rb").read())
    (folder / "val_label_map.yaml").write_text("".join("%d: c%d\n" % (i, i) for i in range(1, 6)))
    for source in (detector, saved_model):
        with pytest.raises(EvalError, match=r"predicts 90 classes but the validation records' label map .*1\.\.5"):
            evaluate(source, val_file_pattern=str(path), progress=False)
    # Without a label map: records with ids the model cannot predict.
    small = Detector("efficientdet-lite0", image_size=128, num_classes=3)
    with pytest.raises(EvalError, match=r"class ids the model \(3 classes\) does not predict"):
        evaluate(small, val_file_pattern=records, progress=False, nms="serving")
    small_network = small.model  # the network path
    with pytest.raises(EvalError, match=r"class ids the model \(3 classes\) does not predict.*record #0"):
        Evaluator(small.config, val_file_pattern=records).evaluate(small_network)


def test_val_json_that_does_not_match_the_records(records, detector, tmp_path):
    gt_file = tmp_path / "other.json"
    gt_file.write_text(json.dumps({"images": [{"id": 1, "height": 10, "width": 10}], "annotations": [],
                                   "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(EvalError, match=r"does not match the validation records: 6 of 6 record image ids"):
        evaluate(detector, val_file_pattern=records, val_json_file=str(gt_file), progress=False)


def test_empty_validation_set(detector, tmp_path):
    empty = write_records(str(tmp_path / "val-00000-of-00001.tfrecord"), [])
    with pytest.raises(EvalError, match="is empty: no picture to evaluate"):
        evaluate(detector, val_file_pattern=empty, progress=False)
    with pytest.raises(EvalError, match="matches no file"):
        evaluate(detector, val_file_pattern=str(tmp_path / "nothing-*.tfrecord"), progress=False)


def test_cli_reports_bad_input_in_one_line(saved_model, tmp_path):
    empty = write_records(str(tmp_path / "val-00000-of-00001.tfrecord"), [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.eval", "--checkpoint=" + saved_model,
                             "--val_file_pattern=" + empty, "--output_dir=" + str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "is empty" in lines[0] and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.eval", "--checkpoint=" + str(tmp_path),
                             "--val_file_pattern=" + empty], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and "--model_name is needed" in result.stderr and "Traceback" not in result.stderr


def test_tfds_source_without_tensorflow_datasets_names_the_extra(monkeypatch):
    from efficientdet_tf.data import tfds_source

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"efficientdet_tf\[tfds\]"):
        tfds_source.load("coco/2017", "validation")
    assert tf.constant(1).numpy() == 1


def test_tfds_split_on_both_paths():
    tfds = pytest.importorskip("tensorflow_datasets")
    detector = Detector("efficientdet-lite0", image_size=128, num_classes=20)
    with tfds.testing.mock_data(num_examples=3):
        # The detector runs its own NMS: the network gets the same one (eval.nms_preset=config).
        network = evaluate(detector.model, tfds_name="voc/2007", hparams="eval.nms_preset=config",
                           progress=False).metrics
        pictures = evaluate(detector, tfds_name="voc/2007", progress=False, nms="serving").metrics
    assert network["num_pictures"] == pictures["num_pictures"] == 3
    for key in coco_metrics.METRIC_KEYS:
        assert network[key] == pytest.approx(pictures[key], abs=1e-3), key
