"""Detector: reference parity on the D0 checkpoint, preprocessing, input checks, weight formats."""

import os

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.config import get_config
from efficientdet_tf.factory import build_preprocessor
from efficientdet_tf.runtime import Detector
from helpers import assert_detections_match


@pytest.fixture(scope="module")
def reference(d0_reference_dir):
    return np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))


@pytest.fixture(scope="module")
def d0_detector(d0_reference_dir):
    return Detector("efficientdet-d0", d0_reference_dir, nms={"score_threshold": 0.0})


@pytest.mark.parametrize("mode", ["global", "per_class"])
def test_detector_reproduces_reference(d0_detector, reference, mode):
    detector = Detector(d0_detector.model, nms={"mode": mode, "score_threshold": 0.0})
    got = detector(reference["image_uint8"])
    assert_detections_match(got, reference[mode + "_boxes"][0], reference[mode + "_scores"][0],
                            reference[mode + "_classes"][0].astype(np.int32), reference[mode + "_valid"][0])
    assert got["detection_boxes"].shape == (100, 4) and got["detection_classes"].dtype == np.int32


def test_batch_equals_single_pictures(d0_detector, reference):
    image = reference["image_uint8"]
    batch = d0_detector(np.stack([image, image[:, ::-1]]))
    for i, picture in enumerate([image, image[:, ::-1]]):
        single = d0_detector(np.ascontiguousarray(picture))
        np.testing.assert_allclose(batch["detection_scores"][i], single["detection_scores"], atol=1e-5)
        np.testing.assert_allclose(batch["detection_boxes"][i], single["detection_boxes"], atol=1e-2)


def test_preprocessing_follows_reference_steps():
    config = get_config("efficientdet-d0", "image_size=128")
    image = np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    inputs, scales = build_preprocessor(config)(image)
    normalised = (image.astype(np.float32) - config.mean_rgb) / config.stddev_rgb
    expected = tf.image.resize(normalised, (96, 128), method="bilinear").numpy()
    np.testing.assert_allclose(inputs[:, :96, :128], expected, atol=1e-5)
    assert not np.any(inputs[:, 96:]) and inputs.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(scales, [0.5])


def test_bad_inputs_give_clear_errors(d0_detector):
    with pytest.raises(ValueError, match="RGB"):
        d0_detector(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        d0_detector(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        d0_detector(np.zeros((0, 8, 3), np.uint8))
    tiny = d0_detector(np.full((1, 1, 3), 200, np.uint8))
    assert tiny["detection_boxes"].shape == (100, 4)


@pytest.mark.slow
def test_keras_weight_files_load(tmp_path):
    source = Detector("efficientdet-lite0", image_size=128, num_classes=3)
    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    expected = source(image)
    path = str(tmp_path / "lite0.weights.h5")
    source.model.save_weights(path)
    loaded = Detector("efficientdet-lite0", path, image_size=128, num_classes=3)
    np.testing.assert_allclose(loaded(image)["detection_scores"], expected["detection_scores"], atol=1e-6)
    ckpt = tf.train.Checkpoint(model=source.model).write(str(tmp_path / "ckpt"))
    restored = Detector("efficientdet-lite0", ckpt, image_size=128, num_classes=3)
    np.testing.assert_allclose(restored(image)["detection_scores"], expected["detection_scores"], atol=1e-6)
