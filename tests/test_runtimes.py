"""Runtimes: one `load_detector` call for every kind of model, the same detections from each, ONNX export.

The quick tests use D0 at 128 px (reference weights); the slow one runs every runtime on the D0
reference picture at 512 px against the official implementation's detections.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from efficientdet_tf.ops.postprocess import OUTPUT_KEYS
from efficientdet_tf.runtime import LoadError, load_detector
from helpers import matched_fraction, synthetic_picture

SIZE = 128
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def _per_picture(outputs, i):
    return {key: np.asarray(outputs[key])[i] for key in OUTPUT_KEYS}


@pytest.fixture(scope="module")
def keras_detector(d0_reference_dir):
    return load_detector(d0_reference_dir, model_name="efficientdet-d0", hparams="image_size=%d" % SIZE)


class _Files(dict):
    """ONNX files of the folded D0, each exported when a test first asks for it."""

    def __init__(self, detector, folder):
        super().__init__()
        self.detector, self.folder = detector, folder

    def __missing__(self, kind):
        from efficientdet_tf.export.onnx import export_onnx
        from efficientdet_tf.export.saved_model import fold_and_check

        network = fold_and_check(self.detector.model, self.detector.config)
        self[kind] = export_onnx(network, self.detector.config, str(self.folder / (kind + ".onnx")),
                                 network_only=kind == "network_only")
        return self[kind]


@pytest.fixture(scope="module")
def onnx_files(keras_detector, tmp_path_factory):
    return _Files(keras_detector, tmp_path_factory.mktemp("onnx"))


@pytest.mark.slow
def test_onnx_end_to_end_matches_keras_on_other_sizes_and_batches(keras_detector, onnx_files):
    import onnx

    model = onnx.load(onnx_files["end_to_end"])
    assert [i.name for i in model.graph.input] == ["images"]
    assert sorted(o.name for o in model.graph.output) == sorted(OUTPUT_KEYS)
    assert "Loop" in {node.op_type for node in model.graph.node}  # the soft-NMS, inside the file
    detector = load_detector(onnx_files["end_to_end"])
    assert detector.kind == "onnx" and detector.num_classes == 90 and detector.config.image_size == SIZE
    pictures = [synthetic_picture(SIZE, SIZE, 3), synthetic_picture(90, 160, 4), synthetic_picture(200, 120, 5)]
    for picture in pictures:
        got, want = detector(picture), keras_detector(picture)
        assert got["detection_boxes"].shape == (100, 4) and got["detection_classes"].dtype == np.int32
        assert int(got["num_detections"]) == int(want["num_detections"]) > 0
        assert matched_fraction(got, want) >= 0.99
    batch = np.stack([synthetic_picture(100, 140, seed) for seed in (6, 7)])
    got, want = detector(batch), keras_detector(batch)
    assert got["detection_scores"].shape == (2, 100)
    for i in range(2):
        assert matched_fraction(_per_picture(got, i), _per_picture(want, i)) >= 0.99
    mixed = detector([pictures[1], pictures[2]])  # a list of sizes: one call, batch axis in front
    assert matched_fraction(_per_picture(mixed, 1), keras_detector(pictures[2])) >= 0.99


@pytest.mark.slow
def test_onnx_network_only_gives_raw_outputs_and_detections(keras_detector, onnx_files):
    import onnxruntime

    from efficientdet_tf import factory
    from efficientdet_tf.inference import raw_output_dict

    inputs, _ = factory.build_preprocessor(keras_detector.config)(synthetic_picture(SIZE, SIZE, 8)[None])
    session = onnxruntime.InferenceSession(onnx_files["network_only"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"normalized_images": inputs.numpy()})))
    want = raw_output_dict(keras_detector.model, keras_detector.config, inputs)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], np.asarray(value), atol=1e-4)
    detector = load_detector(onnx_files["network_only"])
    assert detector.network_only
    picture = synthetic_picture(96, 150, 9)
    assert matched_fraction(detector(picture), keras_detector(picture)) >= 0.99


@pytest.mark.slow
def test_onnx_per_class_nms_matches_tensorflow(keras_detector, tmp_path):
    from efficientdet_tf.export.onnx import export_onnx
    from efficientdet_tf.runtime import Detector

    per_class = Detector(keras_detector.model, nms={"mode": "per_class", "max_nms_inputs": 500})
    path = export_onnx(per_class.model, per_class.config, str(tmp_path / "per_class.onnx"))
    picture = synthetic_picture(110, 128, 10)
    assert matched_fraction(load_detector(path)(picture), per_class(picture)) >= 0.99


@pytest.mark.slow
def test_every_kind_opens_with_one_call(keras_detector, onnx_files, tmp_path, d0_reference_dir):
    from efficientdet_tf.export.saved_model import export_saved_model

    picture = synthetic_picture(SIZE, SIZE, 12)
    want = keras_detector(picture)
    export_saved_model(keras_detector.model, keras_detector.config, str(tmp_path / "export"), version=2)
    keras_file = str(tmp_path / "d0.keras")
    keras_detector.model.save(keras_file)
    opened = {"saved_model": load_detector(str(tmp_path / "export")), "keras": load_detector(keras_file),
              "onnx": load_detector(onnx_files["end_to_end"]), "built": load_detector(keras_detector.model)}
    for kind, detector in opened.items():
        assert matched_fraction(detector(picture), want) >= 0.99, kind
    assert opened["saved_model"].kind == "saved_model" and opened["saved_model"].num_classes == 90
    with pytest.raises(LoadError, match="does not exist"):
        load_detector(str(tmp_path / "missing.onnx"))
    with pytest.raises(LoadError, match="--model_name is needed"):
        load_detector(d0_reference_dir)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(LoadError, match="cannot open the ONNX file .*broken.onnx"):
        load_detector(str(tmp_path / "broken.onnx"))


@pytest.mark.slow
def test_missing_onnxruntime_is_one_clear_line(tmp_path, onnx_files):
    # A stand-in that fails to import, first on the path: what a machine without the extra sees.
    (tmp_path / "onnxruntime.py").write_text("raise ImportError('No module named onnxruntime')\n")
    script = ("import sys; from efficientdet_tf.runtime import load_detector, LoadError\n"
              "try:\n    load_detector(sys.argv[1])\nexcept LoadError as e:\n    print('ERROR', e)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", script, onnx_files["end_to_end"]], env=env, capture_output=True,
                         text=True, timeout=300)
    assert "ERROR ONNX files need onnxruntime, which is not installed: pip install 'efficientdet_tf[onnx]'" \
        in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.slow
def test_eval_and_infer_take_onnx_files(onnx_files, keras_detector, tmp_path):
    from efficientdet_tf.eval.evaluator import evaluate
    from tfrecord_tools.example_writer import make_example, write_records

    examples = []
    for index, (height, width) in enumerate([(SIZE, SIZE), (100, 128), (128, 90)]):
        picture = synthetic_picture(height, width, 20 + index)
        found = keras_detector(picture)
        examples.append(make_example(picture, found["detection_boxes"][:3], found["detection_classes"][:3],
                                     source_id=str(index + 1), image_format="png"))
    records = str(tmp_path / "val.tfrecord")
    write_records(records, examples)
    settings = "eval.nms_preset=config,num_classes=90"
    onnx_ap = evaluate(onnx_files["end_to_end"], val_file_pattern=records, hparams=settings, progress=False)
    keras_ap = evaluate(keras_detector, val_file_pattern=records, hparams=settings, progress=False,
                        nms="serving")
    assert abs(onnx_ap.metrics["AP"] - keras_ap.metrics["AP"]) <= 1e-3 and keras_ap.metrics["AP"] > 0.5

    (tmp_path / "pics").mkdir()
    np.save(tmp_path / "pics" / "not_a_picture.png", np.zeros(3))
    (tmp_path / "pics" / "5.png").write_bytes(b"")
    from PIL import Image
    Image.fromarray(synthetic_picture(80, 100, 1)).save(tmp_path / "pics" / "7.png")
    cmd = [sys.executable, "-m", "efficientdet_tf.cli.infer", "--checkpoint=" + onnx_files["end_to_end"],
           "--input=" + str(tmp_path / "pics" / "*"), "--output_dir=" + str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {r["image_id"] for r in json.loads((tmp_path / "out" / "detections.json").read_text())} == {7}
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert sorted(os.path.basename(s["file"]) for s in skipped) == ["5.png", "not_a_picture.png.npy"]
    assert "skipped 2 unreadable file(s)" in result.stderr
    strict = subprocess.run(cmd + ["--strict"], capture_output=True, text=True, timeout=600)
    assert strict.returncode == 1 and (tmp_path / "out" / "7.jpg").is_file()


@pytest.mark.slow
def test_every_runtime_reproduces_the_official_detections(d0_reference_dir, tmp_path):
    """SavedModel, TFLite fp32, ONNX end to end and ONNX network-only, all from one folded D0 at 512 px,
    on the reference picture: each holds >= 99% of the official implementation's detections."""
    from efficientdet_tf.export.onnx import export_onnx
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import export_tflite

    reference = np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))
    picture = reference["image_uint8"]
    official = {"detection_boxes": reference["global_boxes"][0], "detection_scores": reference["global_scores"][0],
                "detection_classes": reference["global_classes"][0].astype(np.int32),
                "num_detections": reference["global_valid"][0]}
    keras_detector = load_detector(d0_reference_dir, model_name="efficientdet-d0")
    network = fold_and_check(keras_detector.model, keras_detector.config)
    config = keras_detector.config
    files = {"saved_model": export_saved_model(network, config, str(tmp_path / "export")),
             # The file's fixed input is the picture's own size, so no letterboxing (uint8 rounding) happens.
             "tflite": export_tflite(network, config, str(tmp_path / "d0.tflite"), input_size=picture.shape[:2]),
             "onnx": export_onnx(network, config, str(tmp_path / "d0.onnx")),
             "onnx_network_only": export_onnx(network, config, str(tmp_path / "d0_network.onnx"), network_only=True)}
    fractions = {"keras": matched_fraction(keras_detector(picture), official)}
    for kind, path in files.items():
        fractions[kind] = matched_fraction(load_detector(path, model_name="efficientdet-d0")(picture), official)
    print("share of the official detections matched:", fractions)
    assert min(fractions.values()) >= 0.99, fractions
