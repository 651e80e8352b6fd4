"""OpenVINO: the exported `.xml` reproduces the SavedModel's detections through `load_detector`, on
pictures of several sizes, a same-size batch and a list, and says what it holds."""

import numpy as np
import pytest

from efficientdet_tf.runtime import load_detector
from helpers import synthetic_picture


@pytest.fixture(scope="module")
def exported(tmp_path_factory, d0_reference_dir):
    from efficientdet_tf.checkpoints.opening import open_model
    from efficientdet_tf.export.openvino import export_openvino
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check

    network, config = open_model("efficientdet-d0", d0_reference_dir, {"image_size": 128})
    root = tmp_path_factory.mktemp("openvino")
    saved = export_saved_model(fold_and_check(network, config), config, str(root / "export"))
    return saved, export_openvino(saved, config, str(root / "d0.xml"))


def _assert_same(want, got):
    """Each of the 20 best SavedModel detections is in OpenVINO's list: same class, corners within
    1 px, score within 2e-3 (near-equal scores may swap places)."""
    assert int(got["num_detections"]) == int(want["num_detections"])
    for box, score, class_id in zip(want["detection_boxes"][:20], want["detection_scores"][:20],
                                    want["detection_classes"][:20]):
        near = ((got["detection_classes"] == class_id) & (np.abs(got["detection_scores"] - score) <= 2e-3)
                & (np.abs(got["detection_boxes"] - box).max(-1) <= 1.0))
        assert near.any(), (box, score, class_id)


@pytest.mark.slow
def test_openvino_reproduces_the_saved_model(exported):
    saved, xml = exported
    reference, openvino = load_detector(saved), load_detector(xml)
    assert openvino.kind == "openvino" and openvino.config.image_size == 128
    pictures = [synthetic_picture(h, w, seed) for seed, (h, w) in enumerate([(128, 128), (90, 160), (300, 200)])]
    for picture in pictures:
        _assert_same(reference(picture), openvino(picture))
    batch = np.stack([synthetic_picture(96, 128, seed) for seed in range(3)])
    for want, got in ((reference(batch), openvino(batch)), (reference(pictures), openvino(pictures))):
        assert got["detection_boxes"].shape == want["detection_boxes"].shape
        for i in range(len(want["num_detections"])):
            _assert_same({k: v[i] for k, v in want.items()}, {k: v[i] for k, v in got.items()})


def test_a_file_that_is_not_an_efficientdet_is_refused(tmp_path):  # no export needed
    from efficientdet_tf.runtime.base import LoadError

    bad = tmp_path / "bad.xml"
    bad.write_text("<net/>")
    with pytest.raises(LoadError, match="cannot open the OpenVINO file"):
        load_detector(str(bad))


def test_a_saved_model_openvino_cannot_convert_is_one_line(monkeypatch, tmp_path):
    import openvino

    from efficientdet_tf.config import get_config
    from efficientdet_tf.export.openvino import ConversionError, export_openvino

    def fail(path):
        raise RuntimeError("Check 'false' failed at src/frontends/...\nModel wasn't fully converted.\n"
                           "-- VarHandleOp with a message:\n...\n-- Conversion is failed for: VarHandleOp\n")

    monkeypatch.setattr(openvino, "convert_model", fail)
    monkeypatch.setattr("efficientdet_tf.export.openvino._serving_function", lambda path, config: path)
    with pytest.raises(ConversionError) as caught:
        export_openvino(str(tmp_path / "1"), get_config("efficientdet-d0"), str(tmp_path / "d0.xml"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("OpenVINO %s cannot convert the SavedModel %s (Conversion is failed for: VarHandleOp)"
                              % (openvino.__version__.split("-")[0], tmp_path / "1"))


@pytest.mark.slow
def test_the_int8_file_is_quantized_and_scores_as_the_float_file(exported, tmp_path):
    import openvino

    from efficientdet_tf.export.openvino import quantize_openvino

    _, xml = exported
    pictures = [synthetic_picture(128, 128, seed) for seed in range(8)]
    path = quantize_openvino(xml, pictures, str(tmp_path / "d0_int8.xml"))
    model = openvino.Core().read_model(path)
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) > 50  # the convolutions
    float_file, int8_file = load_detector(xml), load_detector(path)
    assert int8_file.config.image_size == 128  # the config came along
    for picture in [synthetic_picture(128, 128, 20), synthetic_picture(90, 160, 21)]:
        want, got = float_file(picture), int8_file(picture)
        assert np.isfinite(got["detection_scores"]).all() and int(got["num_detections"]) > 0
        # Reference weights score every box near 0.012, so int8 noise reorders the boxes (the AP of
        # a trained model's int8 file is measured in BENCHMARKS.md); the scores must stay close.
        assert abs(got["detection_scores"][0] - want["detection_scores"][0]) < 0.1 * want["detection_scores"][0]
        np.testing.assert_allclose(np.sort(got["detection_scores"])[-20:], np.sort(want["detection_scores"])[-20:],
                                   rtol=0.15)


@pytest.mark.slow
def test_a_lite_model_with_drop_connect_converts_and_reproduces_the_saved_model(tmp_path):
    """The trained shapes demo detector (Lite0's design, drop-connect in its backbone): OpenVINO's
    SavedModel reader alone fails on it ("Cannot find requested variable"); the export converts the
    frozen serving function instead."""
    import os

    from efficientdet_tf.checkpoints.opening import open_model
    from efficientdet_tf.export.openvino import export_openvino
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from helpers import ROOT

    network, config = open_model(os.path.join(ROOT, "tests", "data", "shapes_demo.keras"))
    assert config.backbone_survival_prob < 1.0
    saved = export_saved_model(fold_and_check(network, config), config, str(tmp_path / "export"))
    reference, openvino = load_detector(saved), load_detector(export_openvino(saved, config, str(tmp_path / "m.xml")))
    pictures = [synthetic_picture(h, w, seed) for seed, (h, w) in enumerate([(128, 128), (150, 120)])]
    for picture in pictures:
        _assert_same(reference(picture), openvino(picture))
