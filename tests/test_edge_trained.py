"""A trained detector on devices: MediaPipe Tasks runs our fp32, int8 and full-integer TFLite files and
finds what our own TFLite runtime finds; the full-integer file computes in integers up to the NMS.

The model is the `efficientdet-demo` detector trained on the shapes data (tests/data/shapes_demo.keras,
written by tests/data/make_shapes_demo.py), exported once through `efficientdet-export`, calibrated on
freshly drawn shapes pictures that it never saw in training.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, mediapipe_detections, subprocess_env

MODEL = os.path.join(ROOT, "tests", "data", "shapes_demo.keras")
LABELS = os.path.join(ROOT, "tests", "data", "shapes_demo_labels.yaml")
FILES = ("fp32", "int8", "full_int8")
MIN_SCORE = 0.35
# The files' input (the network runs at 128 px; the file resizes inside). MediaPipe reports whole pixels
# (origin and size truncated), which at 128 px alone takes small shapes below IoU 0.9.
SIDE = 384

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """(calibration TFRecord pattern, test pictures): shapes drawn with another seed than the demo's."""
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    folder = str(tmp_path_factory.mktemp("shapes"))
    jsons = make_shapes_dataset(folder, 24, 12, seed=11, size_range=(128, 160))
    paths, report = create_coco_tfrecord.create_coco_tfrecord(
        os.path.join(folder, "train"), jsons["train"], os.path.join(folder, "train"), num_shards=1)
    assert not report.has_issues()
    from PIL import Image

    val = os.path.join(folder, "val")
    pictures = [np.asarray(Image.open(os.path.join(val, name)).convert("RGB"))
                for name in sorted(os.listdir(val)) if name.endswith((".jpg", ".png"))]
    assert len(pictures) == 12
    return paths[0], pictures


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shapes):
    """{quantization: .tflite path} and the export command's stdout."""
    out = tmp_path_factory.mktemp("export")
    result = subprocess.run(
        [sys.executable, "-m", "efficientdet_tf.cli.export", "--checkpoint=" + MODEL, "--model_name=" + MODEL,
         "--export_dir=" + str(out), "--tflite=" + ",".join(FILES), "--calibration_file_pattern=" + shapes[0],
         "--num_calibration_images=24", "--label_map=" + LABELS, "--tflite_input_size=%dx%d" % (SIDE, SIDE)],
        capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    files = {q: str(out / ("efficientdet-lite0_%s.tflite" % q)) for q in FILES}
    assert all(os.path.exists(p) for p in files.values()), os.listdir(out)
    return files, result.stdout


def _square(picture):
    """The picture letterboxed to the files' square input: MediaPipe stretches a picture to the input
    where our runtime letterboxes it; on a picture of the input's size neither resizes."""
    from efficientdet_tf.ops.letterbox import LITE_PAD_RGB, letterbox

    canvas, _ = letterbox(picture, (SIDE, SIDE), LITE_PAD_RGB)
    return canvas


def _iou(box, boxes):
    from efficientdet_tf.ops.box_iou import box_iou

    return box_iou(np.asarray(box, np.float64)[None], np.asarray(boxes, np.float64))[0]


@pytest.mark.parametrize("quantization", FILES)
def test_mediapipe_finds_our_detections_of_a_trained_model(exported, shapes, quantization):
    from efficientdet_tf.data.label_map import load_label_map
    from efficientdet_tf.runtime import TFLiteDetector
    from efficientdet_tf.ops.letterbox import LITE_PAD_RGB

    path = exported[0][quantization]
    names = load_label_map(LABELS)
    ours = TFLiteDetector(path, pad_rgb=LITE_PAD_RGB)
    wanted = found = 0
    for picture in shapes[1]:
        square = _square(picture)
        want = ours(square)
        keep = want["detection_scores"] >= MIN_SCORE
        boxes, _, labels = mediapipe_detections(path, square)
        for box, class_id in zip(want["detection_boxes"][keep], want["detection_classes"][keep]):
            wanted += 1
            same = np.array(labels) == names[int(class_id)]
            found += bool(same.any() and (_iou(box, boxes[same]) >= 0.9).any())
    # A trained model: confident detections on most pictures, not a handful.
    assert wanted >= 2 * len(shapes[1]), wanted
    assert found >= 0.98 * wanted, (found, wanted)


def test_the_full_integer_file_is_integer_up_to_the_nms(exported):
    from tensorflow.lite.python import schema_py_generated as schema_fb

    from efficientdet_tf.export.tflite_graph import builtin_name, float_ops

    with open(exported[0]["full_int8"], "rb") as f:
        content = f.read()
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(content, 0))
    graph = model.subgraphs[0]
    pixels = graph.tensors[graph.inputs[0]]
    assert pixels.type == schema_fb.TensorType.UINT8
    assert list(pixels.quantization.scale) == [1.0] and list(pixels.quantization.zeroPoint) == [0]
    names = [builtin_name(model, op) for op in graph.operators]
    nms = names.index("NON_MAX_SUPPRESSION_V5")
    for op, name in zip(graph.operators[:nms], names[:nms]):
        # Before the NMS only the boundary into it dequantises; the box decoding (PACK of the four
        # corners) and the scores (LOGISTIC) are int8, every convolution has int8 weights.
        types = {graph.tensors[i].type for i in op.outputs}
        if name != "DEQUANTIZE":
            assert schema_fb.TensorType.FLOAT32 not in types, name
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert graph.tensors[op.inputs[1]].type == schema_fb.TensorType.INT8
    assert names[:nms].count("DEQUANTIZE") == 2  # the boxes and the scores, into the NMS
    assert {"PACK", "LOGISTIC", "EXP"} <= set(names[:nms])
    ops = float_ops(content)
    assert ops["NON_MAX_SUPPRESSION_V5"] == 1 and not {"CONV_2D", "LOGISTIC", "EXP", "PACK"} & set(ops)
    # ... and the export command lists them.
    line = [line for line in exported[1].splitlines() if "ops left in float" in line]
    assert line and all("%s x%d" % item in line[0] for item in ops.items()), exported[1]


def test_the_full_integer_file_keeps_the_float_files_detections(exported, shapes):
    """Confident detections of the fp32 file found by the full-integer one (same class, IoU >= 0.5)."""
    from efficientdet_tf.ops.letterbox import LITE_PAD_RGB
    from efficientdet_tf.runtime import TFLiteDetector

    fp32, full = (TFLiteDetector(exported[0][q], pad_rgb=LITE_PAD_RGB) for q in ("fp32", "full_int8"))
    wanted = found = 0
    for picture in shapes[1]:
        want, got = fp32(picture), full(picture)
        keep = want["detection_scores"] >= 0.5
        for box, class_id in zip(want["detection_boxes"][keep], want["detection_classes"][keep]):
            wanted += 1
            same = (got["detection_classes"] == class_id) & (got["detection_scores"] >= 0.2)
            found += bool(same.any() and (_iou(box, got["detection_boxes"][same]) >= 0.5).any())
    assert wanted >= 2 * len(shapes[1]) and found >= 0.9 * wanted, (found, wanted)
