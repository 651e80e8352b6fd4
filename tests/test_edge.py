"""Device runtimes: MediaPipe Tasks runs our TFLite files as they are (their metadata), LiteRT and
tf.lite give the same detections, and no deprecation warning reaches the user.

One D0 at 128 px (reference weights) exported once at a 4:3 input, the aspect ratio of the test
pictures: MediaPipe stretches a picture to the file's input, where our TFLite runtime letterboxes,
and on pictures of the input's aspect ratio the two are the same resize.
"""

import json
import warnings

import numpy as np
import pytest

from efficientdet_tf.runtime import TFLiteDetector
from helpers import mediapipe_detections, synthetic_picture

INPUT = (96, 128)
LABELS = {i: "thing %d" % i for i in range(1, 91)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, d0_reference_dir):
    from efficientdet_tf.checkpoints.opening import open_model
    from efficientdet_tf.export.saved_model import fold_and_check
    from efficientdet_tf.export.tflite import export_tflite

    network, config = open_model("efficientdet-d0", d0_reference_dir, {"image_size": 128})
    path = str(tmp_path_factory.mktemp("edge") / "d0.tflite")
    return export_tflite(fold_and_check(network, config), config, path, input_size=INPUT, label_map=LABELS)


def _pictures():
    return [synthetic_picture(INPUT[0] * k, INPUT[1] * k, seed) for seed, k in ((0, 1), (1, 3), (2, 5))]


@pytest.mark.slow
def test_the_file_carries_mediapipes_detector_metadata(exported):
    from efficientdet_tf.export.mediapipe_metadata import read_metadata

    with open(exported, "rb") as f:
        metadata = json.loads(read_metadata(f.read()))
    subgraph = metadata["subgraph_metadata"][0]
    assert [t["name"] for t in subgraph["output_tensor_metadata"]] == [
        "location", "category", "score", "number of detections"]
    labels = subgraph["output_tensor_metadata"][1]["associated_files"][0]
    assert labels["type"] == "TENSOR_VALUE_LABELS"
    assert metadata["min_parser_version"] == "1.2.0"  # output tensor groups


@pytest.mark.slow
def test_mediapipe_finds_what_our_tflite_runtime_finds(exported):
    # Pictures of the input's size: no resize on either side. (MediaPipe's resize samples
    # differently from ours, and these reference weights give scores crowded near 0.012, whose
    # order changes with any pixel; a trained model's detections do not.)
    ours = TFLiteDetector(exported)
    for picture in [synthetic_picture(*INPUT, seed) for seed in range(3)]:
        want = ours(picture)
        boxes, scores, names = mediapipe_detections(exported, picture)
        # The 10 best whose boxes lie inside the picture: like the official post-processing, ours
        # clips boxes to the padded square the network saw, and MediaPipe drops some beyond the picture.
        inside = (want["detection_boxes"] <= np.array(picture.shape[:2] * 2) + 2).all(-1)
        top = inside & (want["detection_scores"] >= np.sort(want["detection_scores"][inside])[-10])
        for box, score, class_id in zip(want["detection_boxes"][top], want["detection_scores"][top],
                                        want["detection_classes"][top]):
            # MediaPipe reports whole pixels (origin and size truncated): within 2 px.
            near = np.abs(boxes - box).max(-1) <= 2.0
            same = near & (np.abs(scores - score) <= 1e-5) & (np.array(names) == LABELS[int(class_id)])
            assert same.any(), (picture.shape, box, score, class_id)


@pytest.mark.slow
def test_litert_and_tf_lite_give_the_same_detections(exported):
    litert, tf_lite = TFLiteDetector(exported, backend="litert"), TFLiteDetector(exported, backend="tensorflow")
    batch = np.stack([synthetic_picture(*INPUT, seed) for seed in range(2)])
    for pictures in [batch, list(_pictures())]:
        a, b = litert(pictures), tf_lite(pictures)
        # Same kernels, built apart: float noise only.
        np.testing.assert_array_equal(a["detection_classes"], b["detection_classes"])
        np.testing.assert_array_equal(a["num_detections"], b["num_detections"])
        np.testing.assert_allclose(a["detection_scores"], b["detection_scores"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(a["detection_boxes"], b["detection_boxes"], rtol=0, atol=1e-3)


@pytest.mark.slow
def test_no_deprecation_warning_reaches_the_user(exported):
    for backend in ("litert", "tensorflow", None):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            TFLiteDetector(exported, backend=backend)(synthetic_picture(*INPUT, 0))
        assert not [w for w in caught if "deprecat" in str(w.message).lower()], [str(w.message) for w in caught]


def test_without_mediapipe_the_export_says_so_in_one_line(monkeypatch, capsys):
    from efficientdet_tf.export import mediapipe_metadata

    monkeypatch.setitem(__import__("sys").modules, "mediapipe.tasks.python.core.mediapipe_c_bindings", None)
    assert not mediapipe_metadata.available()
    with pytest.raises(mediapipe_metadata.MetadataUnavailable, match=r"pip install 'efficientdet_tf\[edge\]'"):
        mediapipe_metadata.add_metadata(b"", None, 5)


def test_label_lines_number_the_classes_and_fill_gaps():
    from efficientdet_tf.export.mediapipe_metadata import label_lines

    assert label_lines(None, 3) == ["???", "class_1", "class_2", "class_3"]
    assert label_lines({1: "cat", 3: "dog"}, 3) == ["???", "cat", "???", "dog"]


@pytest.mark.slow
def test_a_label_map_beyond_num_classes_stops_the_export_before_it_writes(d0_reference_dir, tmp_path):
    import subprocess
    import sys

    from helpers import ROOT, subprocess_env

    labels = tmp_path / "labels.yaml"
    labels.write_text("1: person\n95: spaceship\n")
    out = tmp_path / "export"
    result = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.export", "--checkpoint=" + d0_reference_dir,
                             "--model_name=efficientdet-d0", "--export_dir=" + str(out), "--tflite=fp32",
                             "--label_map=" + str(labels)], capture_output=True, text=True, env=subprocess_env(),
                            cwd=ROOT, timeout=600)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        "the label map %s names class id 95 but the model predicts ids 1..90 (num_classes=90): give the label map "
        "of the data it was trained on" % labels)
    assert not out.exists()
