"""Official checkpoint import: fine-tuning, backbone-only checkpoints and every error path."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import efficientdet_tf as edt
from efficientdet_tf.checkpoints.official import CheckpointError, read_checkpoint


def _write_checkpoint(prefix, tensors):
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def test_skip_heads_for_another_class_count(d0_reference_dir):
    model = edt.build_model("efficientdet-d0", num_classes=20)
    with pytest.raises(CheckpointError) as err:
        edt.load_official_checkpoint(model, d0_reference_dir)
    assert "class_net/class-predict" in str(err.value) and "skip_heads=True" in str(err.value)
    before = np.asarray(model.get_layer("class_net.class-predict").pointwise_kernel)
    report = edt.load_official_checkpoint(model, d0_reference_dir, skip_heads=True)
    assert sorted(report["skipped"]) == sorted(
        "%s_net/%s-predict/%s" % (k, k, v) for k in ("class", "box")
        for v in ("bias", "depthwise_kernel", "pointwise_kernel"))
    assert report["loaded"] == 709 - 6
    np.testing.assert_array_equal(before, np.asarray(model.get_layer("class_net.class-predict").pointwise_kernel))
    ema = read_checkpoint(os.path.join(d0_reference_dir, "model"))
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("class_net.class-0").pointwise_kernel),
        ema["class_net/class-0/pointwise_kernel/ExponentialMovingAverage"])


def test_backbone_only_checkpoint(tmp_path, d0_reference_dir):
    tensors = read_checkpoint(os.path.join(d0_reference_dir, "model"))
    backbone = {n: v for n, v in tensors.items() if n.startswith("efficientnet-b0/") and "ExponentialMoving" not in n}
    backbone["efficientnet-b0/head/dense/kernel"] = np.zeros((1280, 1000), "float32")  # classifier extras
    prefix = str(tmp_path / "b0" / "model.ckpt")
    os.makedirs(os.path.dirname(prefix))
    _write_checkpoint(prefix, backbone)
    model = edt.build_model("efficientdet-d0")
    bifpn_before = np.asarray(model.get_layer("resample_p6.conv2d").kernel)
    report = edt.load_official_checkpoint(model, os.path.dirname(prefix))
    assert report["backbone_only"] and report["unused"] == ["efficientnet-b0/head/dense/kernel"]
    assert report["loaded"] == len(backbone) - 1
    np.testing.assert_array_equal(np.asarray(model.get_layer("efficientnet-b0.stem.conv2d").kernel),
                                  backbone["efficientnet-b0/stem/conv2d/kernel"])
    np.testing.assert_array_equal(bifpn_before, np.asarray(model.get_layer("resample_p6.conv2d").kernel))


def test_checkpoint_of_another_model(d0_reference_dir):
    model = edt.build_model("efficientdet-lite0", num_classes=90)
    with pytest.raises(CheckpointError, match="efficientnet-b0 backbone but the model uses efficientnet-lite0"):
        edt.load_official_checkpoint(model, d0_reference_dir)


def test_missing_variables_listed(tmp_path, d0_reference_dir):
    tensors = read_checkpoint(os.path.join(d0_reference_dir, "model"))
    del tensors["fpn_cells/cell_0/fnode0/WSM"], tensors["fpn_cells/cell_0/fnode0/WSM/ExponentialMovingAverage"]
    prefix = str(tmp_path / "model")
    _write_checkpoint(prefix, tensors)
    with pytest.raises(CheckpointError, match=r"1 missing: fpn_cells/cell_0/fnode0/WSM$"):
        edt.load_official_checkpoint(edt.build_model("efficientdet-d0"), prefix)


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in directory"):
        edt.load_official_checkpoint(edt.build_model("efficientdet-lite0"), str(tmp_path))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        edt.load_official_checkpoint(edt.build_model("efficientdet-lite0"), str(tmp_path / "nope"))


def test_truncated_checkpoint(tmp_path, d0_reference_dir):
    for f in os.listdir(d0_reference_dir):
        shutil.copy(os.path.join(d0_reference_dir, f), tmp_path / f)
    data = tmp_path / "model.data-00000-of-00001"
    with open(data, "r+b") as fh:
        fh.truncate(os.path.getsize(data) // 2)
    with pytest.raises(CheckpointError) as err:
        edt.load_official_checkpoint(edt.build_model("efficientdet-d0"), str(tmp_path))
    message = str(err.value)
    assert message.startswith("cannot read checkpoint") and "\n" not in message
