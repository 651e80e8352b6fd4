"""Export: batch-norm folding, SavedModel signatures in a fresh process, saved_model_cli, TFLite, bad input.

One export (D0 weights from the reference checkpoint at image_size 128, so it is quick) made through
the `efficientdet-export` CLI is shared by the whole module.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.export.fold import fold_batch_norms, folding_error
from efficientdet_tf.litert import make_interpreter
from efficientdet_tf.runtime import Detector
from efficientdet_tf.ops.postprocess import OUTPUT_KEYS
from helpers import assert_detections_match, box_iou, matched_fraction, synthetic_picture

SIZE = 128
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
SIGNATURES = ("serving_default", "serve_image_bytes", "serve_tf_example", "predict_raw")

# Runs in a fresh interpreter: loads the SavedModel and calls every detection signature.
FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf
path, data = sys.argv[1], np.load(sys.argv[2])
sigs = tf.saved_model.load(path).signatures
out = {}
def keep(prefix, result):
    out.update({prefix + k: v.numpy() for k, v in result.items()})
keep("images/", sigs["serving_default"](images=tf.constant(data["image"][None])))
keep("bytes/", sigs["serve_image_bytes"](image_bytes=tf.constant([data["png"].tobytes(), data["jpeg_other"].tobytes()])))
keep("example/", sigs["serve_tf_example"](serialized_example=tf.constant([data["example"].tobytes()])))
keep("raw/", sigs["predict_raw"](normalized_images=tf.zeros([2, %d, %d, 3])))
np.savez(sys.argv[3], **out)
""" % (SIZE, SIZE)


def test_infer_keeps_pictures_of_the_same_name_apart(exported, tmp_path):
    """Real folders: a/x.png and b/x.png must not overwrite each other's drawing or share an id."""
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / "in" / folder).mkdir(parents=True)
        tf.io.write_file(str(tmp_path / "in" / folder / "x.png"), tf.io.encode_png(synthetic_picture(80, 110, seed)))
    tf.io.write_file(str(tmp_path / "in" / "7.png"), tf.io.encode_png(synthetic_picture(80, 110, 3)))
    pattern = ",".join(str(tmp_path / "in" / p) for p in ("*.png", "*/x.png", "a/*.png"))  # a/x.png twice
    cmd = [sys.executable, "-m", "efficientdet_tf.cli.infer", "--saved_model_dir=" + str(exported / "3"),
           "--input=" + pattern, "--output_dir=" + str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["image_id"] for r in results} == {7, "a/x.png", "b/x.png"}
    by_file = {}
    for r in results:
        by_file.setdefault(r["file_name"], set()).add(r["image_id"])
    assert len(by_file) == 3 and all(len(ids) == 1 for ids in by_file.values())
    for drawing in ("7.jpg", "a/x.png.jpg", "b/x.png.jpg"):
        assert (tmp_path / "out" / drawing).is_file(), drawing
    assert "wrote 3 pictures" in result.stdout


def test_infer_stops_on_memory_errors_instead_of_skipping(tmp_path, monkeypatch):
    import errno

    from efficientdet_tf.data import pictures

    path = str(tmp_path / "x.png")
    tf.io.write_file(path, tf.io.encode_png(synthetic_picture(20, 20, 0)))
    for error in (MemoryError(), OSError(errno.EMFILE, "Too many open files")):
        def fail(*args, error=error, **kwargs):
            raise error
        monkeypatch.setattr(pictures, "load_rgb", fail)
        with pytest.raises(type(error)):
            pictures.read_picture(path)
    monkeypatch.setattr(pictures, "load_rgb", lambda *a, **k: (_ for _ in ()).throw(OSError("cannot identify image")))
    assert pictures.read_picture(path) == (None, "OSError: cannot identify image")


def _example(encoded):
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def detector(d0_reference_dir):
    return Detector("efficientdet-d0", d0_reference_dir, image_size=SIZE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, d0_reference_dir):
    """Runs efficientdet-export once (SavedModel + fp32 TFLite); returns its folder."""
    return _export(tmp_path_factory.mktemp("export"), d0_reference_dir, "fp32")[0]


def _export(root, checkpoint, tflite, extra=()):
    cmd = [sys.executable, "-m", "efficientdet_tf.cli.export", "--model_name=efficientdet-d0",
           "--checkpoint=" + checkpoint, "--hparams=image_size=%d" % SIZE,
           "--export_dir=" + str(root / "model"), "--version=3", "--tflite=" + tflite] + list(extra)
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model", result.stdout + result.stderr


@pytest.fixture(scope="module")
def inputs():
    image = synthetic_picture(90, 120, 0)
    other = synthetic_picture(150, 100, 1)
    return {"image": image, "other": other, "png": np.frombuffer(tf.io.encode_png(image).numpy(), np.uint8),
            "jpeg_other": np.frombuffer(tf.io.encode_jpeg(other, quality=100).numpy(), np.uint8),
            "example": np.frombuffer(_example(tf.io.encode_png(image).numpy()), np.uint8)}


def test_folded_model_matches_unfolded(d0_reference_dir):
    detector = Detector("efficientdet-d0", d0_reference_dir)
    folded = fold_batch_norms(detector.model)
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in folded.layers)
    net_input = np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))["net_input"]
    assert folding_error(detector.model, folded, net_input) <= 1e-4


@pytest.mark.slow
def test_saved_model_in_fresh_process_matches_detector(exported, inputs, detector, tmp_path):
    np.savez(tmp_path / "in.npz", **inputs)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(script), str(exported / "3"), str(tmp_path / "in.npz"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    expected = detector(inputs["image"])
    jpeg = tf.io.decode_jpeg(inputs["jpeg_other"].tobytes()).numpy()
    checks = [("images/", 0, expected), ("bytes/", 0, expected), ("bytes/", 1, detector(jpeg)),
              ("example/", 0, expected)]
    for prefix, i, want in checks:
        got = {key: out[prefix + key][i] for key in OUTPUT_KEYS}
        assert_detections_match(got, want["detection_boxes"], want["detection_scores"],
                                want["detection_classes"], want["num_detections"], score_tol=1e-4)
        assert got["num_detections"] > 0
    assert out["raw/class_outputs_p3"].shape == (2, SIZE // 8, SIZE // 8, 9 * 90)
    assert out["raw/box_outputs_p7"].shape == (2, 1, 1, 36)


def test_saved_model_cli_lists_signatures_and_named_outputs(exported):
    result = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", str(exported / "3")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for name in SIGNATURES:
        assert "signature_def['%s']" % name in text
    for name in OUTPUT_KEYS + ("images", "image_bytes", "serialized_example", "class_outputs_p3"):
        assert "['%s']" % name in text


def _run_tflite(path, picture):
    """The file's own outputs on a picture of its input size, boxes back in pixels."""
    runner = make_interpreter(str(path)).get_signature_runner()
    got = {k: v[0] for k, v in runner(images=picture[None]).items()}
    assert got["detection_boxes"].shape == (100, 4) and got["num_detections"] > 0
    # The TFLite detection form: boxes as fractions of the input, every output float32.
    assert got["detection_boxes"].max() <= 1.0 + 1e-6 and got["detection_classes"].dtype == np.float32
    height, width = picture.shape[:2]
    return dict(got, detection_boxes=got["detection_boxes"] * np.array([height, width, height, width]))


def test_tflite_fp32_agrees_with_saved_model(exported):
    picture = synthetic_picture(SIZE, SIZE, 5)
    saved = tf.saved_model.load(str(exported / "3")).signatures["serving_default"]
    want = {k: v.numpy()[0] for k, v in saved(images=tf.constant(picture[None])).items()}
    got = _run_tflite(exported / "efficientdet-d0_fp32.tflite", picture)
    # Both ways: every top-50 detection of one is in the other's list (near-equal scores may swap
    # places at the cut-off). TFLite's soft-NMS drops boxes above the IoU threshold unless it is 1.
    assert got["num_detections"] == want["num_detections"]
    for a, b in ((want, got), (got, want)):
        for box, score, class_id in zip(a["detection_boxes"][:50], a["detection_scores"][:50],
                                        a["detection_classes"][:50]):
            near = ((b["detection_classes"] == class_id) & (np.abs(b["detection_scores"] - score) <= 1e-4)
                    & (np.abs(b["detection_boxes"] - box).max(-1) <= 0.05))
            assert near.any(), (box, score, class_id)


def test_tflite_detector_letterboxes_pictures_of_any_size(exported, detector):
    from efficientdet_tf.runtime import TFLiteDetector
    lite = TFLiteDetector(exported / "efficientdet-d0_fp32.tflite", num_threads=1)
    assert lite.input_size == (SIZE, SIZE)
    for height, width in ((90, 160), (200, 120)):
        picture = synthetic_picture(height, width, 11)
        want, got = detector(picture), lite(picture)
        assert got["detection_boxes"].shape == (100, 4) and got["detection_classes"].dtype == np.int32
        # uint8 letterboxing rounds the resized pixels, where the reference resizes normalised
        # floats: the strongest detections stay, in the picture's own pixels. (The reference
        # weights are random: scores crowd near 0.012, so only the top few have a stable order.)
        for box, score, class_id in zip(want["detection_boxes"][:3], want["detection_scores"][:3],
                                        want["detection_classes"][:3]):
            near = ((got["detection_classes"] == class_id) & (np.abs(got["detection_scores"] - score) <= 1e-3)
                    & (box_iou(box[None], got["detection_boxes"])[0] >= 0.95))
            assert near.any(), (box, score, class_id)


@pytest.mark.slow
def test_tflite_fp16_and_int8_are_written_and_run(tmp_path, d0_reference_dir):
    with tf.io.TFRecordWriter(str(tmp_path / "calib.tfrecord")) as writer:
        for seed in range(4):
            writer.write(_example(tf.io.encode_png(synthetic_picture(96, 128, seed)).numpy()))
    model_dir, log = _export(tmp_path, d0_reference_dir, "fp16,int8", [
        "--calibration_file_pattern=" + str(tmp_path / "calib.*"), "--num_calibration_images=4"])
    # The export says which activation ranges it kept (or why it kept the converter's default).
    assert "int8 activation ranges: " in log, log[-2000:]
    for quantization in ("fp16", "int8"):
        _run_tflite(model_dir / ("efficientdet-d0_%s.tflite" % quantization), synthetic_picture(SIZE, SIZE, 5))
    # int8: the network's convolutions are integer; decoding and NMS stay float.
    kinds = _op_input_types(model_dir / "efficientdet-d0_int8.tflite")
    assert kinds["CONV_2D"] == {np.int8} and kinds["DEPTHWISE_CONV_2D"] == {np.int8}
    assert kinds["EXP"] == {np.float32} and kinds["NON_MAX_SUPPRESSION_V5"] == {np.float32}


def _op_input_types(path):
    """{op name: dtypes of its first input} over a TFLite file's ops."""
    interpreter = make_interpreter(model_path=str(path))
    dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    kinds = {}
    for op in interpreter._get_ops_details():
        kinds.setdefault(op["op_name"], set()).add(dtypes[op["inputs"][0]])
    return kinds


def test_bad_inputs_are_errors_not_crashes(exported):
    sigs = tf.saved_model.load(str(exported / "3")).signatures
    for bad, message in [(b"not an image", "Unknown image file format"), (b"", "empty")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            sigs["serve_image_bytes"](image_bytes=tf.constant([bad]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1 pixel"):
        sigs["serving_default"](images=tf.zeros([1, 0, 5, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        sigs["serve_tf_example"](serialized_example=tf.constant([tf.train.Example().SerializeToString()]))
    gray = tf.io.encode_png(np.full((40, 30, 1), 90, np.uint8))
    # Opaque RGBA: the same picture as the gray one (transparent pixels would be composited on white).
    rgba = tf.io.encode_png(np.concatenate([np.full((40, 30, 3), 90, np.uint8), np.full((40, 30, 1), 255, np.uint8)], -1))
    tiny = tf.io.encode_png(np.full((1, 1, 3), 90, np.uint8))
    huge = tf.io.encode_jpeg(tf.zeros([4000, 6000, 3], tf.uint8))
    out = sigs["serve_image_bytes"](image_bytes=tf.stack([gray, rgba, tiny, huge]))
    assert out["detection_boxes"].shape == (4, 100, 4)
    np.testing.assert_allclose(out["detection_scores"][0], out["detection_scores"][1])
    assert np.all(out["detection_boxes"][3].numpy() <= 6000.0)
    json.dumps({k: v.numpy().tolist() for k, v in out.items()})  # serialisable like a REST reply


def test_infer_cli_draws_and_writes_coco_json(exported, tmp_path):
    for i in range(2):
        tf.io.write_file(str(tmp_path / ("%d.png" % (i + 7))), tf.io.encode_png(synthetic_picture(80, 110, i)))
    (tmp_path / "labels.yaml").write_text("1: person\n2: bicycle\n")
    cmd = [sys.executable, "-m", "efficientdet_tf.cli.infer", "--saved_model_dir=" + str(exported / "3"),
           "--input=" + str(tmp_path / "*.png"), "--output_dir=" + str(tmp_path / "out"),
           "--label_map=" + str(tmp_path / "labels.yaml"), "--min_score=0.05"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["image_id"] for r in results} == {7, 8}
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] >= 0 and r["category_id"] >= 1 for r in results)
    assert (tmp_path / "out" / "7.jpg").is_file() and (tmp_path / "out" / "8.jpg").is_file()


@pytest.mark.slow
def test_infer_cli_tiles_a_picture_larger_than_the_input(exported, tmp_path):
    tf.io.write_file(str(tmp_path / "big.png"), tf.io.encode_png(synthetic_picture(300, 420, 5)))
    base = [sys.executable, "-m", "efficientdet_tf.cli.infer", "--saved_model_dir=" + str(exported / "3"),
            "--input=" + str(tmp_path / "big.png"), "--output_dir=" + str(tmp_path / "out")]
    result = subprocess.run(base + ["--tile=160", "--tile_merge=wbf"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(results) > 100  # more than one tile's 100 detections
    assert all(r["bbox"][0] + r["bbox"][2] <= 420.5 and r["bbox"][1] + r["bbox"][3] <= 300.5 for r in results)
    # The SavedModel's own input (128 px, read from the file) bounds the tile from below.
    result = subprocess.run(base + ["--tile=100"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        "--tile=100: the tile size 100x100 is smaller than the model's input 128x128: tiles would be enlarged; "
        "use a tile of at least the input size")


def test_tflite_network_only_reproduces_reference_outputs(tmp_path, d0_reference_dir):
    from efficientdet_tf.export.saved_model import fold_and_check
    from efficientdet_tf.export.tflite import export_tflite
    detector = Detector("efficientdet-d0", d0_reference_dir)
    path = export_tflite(fold_and_check(detector.model, detector.config), detector.config,
                         str(tmp_path / "raw.tflite"), "fp32", raw_outputs=True)
    ref = np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))
    runner = make_interpreter(path, num_threads=2).get_signature_runner()
    out = runner(normalized_images=ref["net_input"])
    for level in range(3, 8):
        for kind in ("class", "box"):
            name = "%s_outputs_p%d" % (kind, level)
            assert np.abs(out[name] - ref[name]).max() <= 1e-4, name


def test_int8_ranges_are_the_mean_of_each_calibration_pictures_extremes():
    """`mean_ranges` replaces the calibrator's overall min/max (set by the most extreme picture)
    by the mean of each picture's minimum and maximum."""
    from tensorflow.lite.python import schema_py_generated as schema_fb

    from efficientdet_tf.export.calibration import has_range, mean_ranges

    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32))
    fn = tf.function(lambda x: tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME")),
                     input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    rng = np.random.default_rng(1)
    samples = [[(scale * rng.normal(size=(1, 8, 8, 3))).astype(np.float32)] for scale in (1.0, 1.0, 10.0)]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    graph = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(calibrated, 0)).subgraphs[0]
    output = graph.outputs[0]
    assert has_range(graph.tensors[output])
    ranges = mean_ranges(calibrated, [output], iter(samples))

    outputs = [fn(sample[0]).numpy() for sample in samples]
    np.testing.assert_allclose(ranges[output], (np.mean([o.min() for o in outputs]),
                                                np.mean([o.max() for o in outputs])), rtol=1e-5)
    overall_max = graph.tensors[output].quantization.max[0]
    np.testing.assert_allclose(overall_max, max(o.max() for o in outputs), rtol=1e-5)
    assert ranges[output][1] < 0.5 * overall_max  # the 10x picture no longer sets the range


@pytest.mark.slow
def test_serve_image_bytes_applies_the_jpeg_orientation_as_infer_does(exported, tmp_path):
    """A phone picture (pixels stored sideways, EXIF orientation 1..8) sent to TF Serving gets its
    boxes in the frame efficientdet-infer (and every viewer) shows it in."""
    from PIL import Image

    # Flat 8x8 blocks, no chroma subsampling: Pillow and TensorFlow decode the same pixels, so the
    # two paths see the same picture and must give the same detections.
    stored = np.kron(synthetic_picture(96, 160, 11)[::8, ::8], np.ones((8, 8, 1), np.uint8))
    files = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / "pictures" / ("%d.jpg" % orientation)
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(stored).save(path, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
        files[orientation] = path.read_bytes()
    cmd = [sys.executable, "-m", "efficientdet_tf.cli.infer", "--saved_model_dir=" + str(exported / "3"),
           "--input=" + str(tmp_path / "pictures" / "*.jpg"), "--output_dir=" + str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    infer = json.loads((tmp_path / "out" / "detections.json").read_text())
    served = tf.saved_model.load(str(exported / "3")).signatures["serve_image_bytes"](
        image_bytes=tf.constant([files[o] for o in range(1, 9)]))
    for orientation in range(1, 9):
        mine = [r for r in infer if r["image_id"] == orientation]
        want = {"num_detections": len(mine), "detection_scores": np.array([r["score"] for r in mine]),
                "detection_classes": np.array([r["category_id"] for r in mine]),
                "detection_boxes": np.array([[y, x, y + h, x + w] for x, y, w, h in (r["bbox"] for r in mine)])}
        got = {k: v[orientation - 1].numpy() for k, v in served.items()}
        assert want["num_detections"] > 0
        assert matched_fraction(got, want, score_tol=2e-4, box_tol=0.6) >= 0.98, orientation
