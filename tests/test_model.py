"""The network: parity with the official outputs, sizes of every model, layers and serialisation."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import efficientdet_tf as edt
from efficientdet_tf.model.published import PUBLISHED
from efficientdet_tf.model.fpn_topologies import bifpn_nodes, validate_nodes
from efficientdet_tf.model.flops import count_macs
from efficientdet_tf.model.layers import WeightedFusion, nearest_indices

LEVELS = range(3, 8)


def _max_diffs(model, ref):
    class_outputs, box_outputs = model(ref["net_input"], training=False)
    return [float(np.abs(np.asarray(out) - ref["%s_outputs_p%d" % (kind, level)]).max())
            for kind, outs in (("class", class_outputs), ("box", box_outputs))
            for level, out in zip(LEVELS, outs)]


def test_d0_reproduces_reference_outputs(d0_reference_dir):
    model = edt.build_model("efficientdet-d0")
    report = edt.load_official_checkpoint(model, d0_reference_dir)
    assert report["loaded"] == 709 and not report["unused"] and not report["skipped"]
    ref = np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))
    assert max(_max_diffs(model, ref)) <= 1e-4
    # The raw (non-EMA) weights differ, so loading them must change the outputs.
    edt.load_official_checkpoint(model, d0_reference_dir, use_ema=False)
    assert max(_max_diffs(model, ref)) > 1e-3


JAX_SCRIPT = """
import numpy as np, keras, efficientdet_tf as edt
assert keras.backend.backend() == "jax", keras.backend.backend()
model = edt.build_model("efficientdet-d0")
edt.load_official_checkpoint(model, {ref!r})
ref = np.load({npz!r})
c, b = model(ref["net_input"], training=False)
diff = max(float(np.abs(np.asarray(o) - ref["%s_outputs_p%d" % (k, l)]).max())
           for k, outs in (("class", c), ("box", b)) for l, o in zip(range(3, 8), outs))
print("MAXDIFF", diff)
"""


@pytest.mark.slow
def test_d0_reproduces_reference_outputs_on_jax(d0_reference_dir):
    pytest.importorskip("jax")
    script = JAX_SCRIPT.format(ref=d0_reference_dir, npz=os.path.join(d0_reference_dir, "reference_outputs.npz"))
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    diff = float(out.stdout.split("MAXDIFF")[1])
    assert diff <= 1e-4


OFFICIAL = PUBLISHED


@pytest.mark.slow
def test_every_model_builds_with_official_size_and_flops():
    assert sorted(OFFICIAL) == edt.model_names()
    for name, (params_m, flops_b) in OFFICIAL.items():
        model = edt.build_model(name)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert abs(trainable / 1e6 - params_m) <= 0.01 * params_m + 0.05, (name, trainable)
        if flops_b:
            assert abs(count_macs(model) / 1e9 / flops_b - 1) < 0.05, (name, count_macs(model))
        cfg = model.config
        num_anchors = cfg.anchors.num_scales * len(cfg.anchors.aspect_ratios)
        class_outs, box_outs = model.outputs[:len(model.outputs) // 2], model.outputs[len(model.outputs) // 2:]
        assert len(class_outs) == cfg.max_level - cfg.min_level + 1
        assert class_outs[0].shape[1:] == (cfg.image_size // 8, cfg.image_size // 8, num_anchors * cfg.num_classes)
        assert box_outs[-1].shape[-1] == num_anchors * 4
        keras.backend.clear_session()


def test_d0_exact_official_counts():
    model = edt.build_model("efficientdet-d0")
    assert len(model.weights) == 709
    assert model.count_params() == 3927203
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3880067


def test_bifpn_topology_matches_design():
    assert validate_nodes(bifpn_nodes(3, 7), 3, 7) == [(6, [3, 4]), (5, [2, 5]), (4, [1, 6]), (3, [0, 7]),
                                 (4, [1, 7, 8]), (5, [2, 6, 9]), (6, [3, 5, 10]), (7, [4, 11])]
    nodes8 = validate_nodes(bifpn_nodes(3, 8), 3, 8)
    assert len(nodes8) == 10 and nodes8[0] == (7, [4, 5]) and nodes8[-1] == (8, [5, 14])


def test_nearest_upsample_uses_tf1_indices():
    assert nearest_indices(3, 5).tolist() == [0, 0, 1, 1, 2]
    assert nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # lite0 at 320 has P7 of 3 and P6 of 5: the model must build and run there.
    model = edt.build_model("efficientdet-lite0", num_classes=2)
    class_outputs, _ = model(np.zeros((1, 320, 320, 3), "float32"), training=False)
    assert [o.shape[1] for o in class_outputs] == [40, 20, 10, 5, 3]


@pytest.mark.parametrize("method", ["sum", "attn", "fastattn", "channel_attn", "channel_fastattn"])
def test_fusion_methods(method):
    x = [np.full((1, 2, 2, 3), v, "float32") for v in (1.0, 3.0)]
    layer = WeightedFusion(method)
    out = np.asarray(layer(x))
    expected = {"sum": 4.0, "attn": 2.0, "fastattn": 4.0 / (2 + 1e-4), "channel_attn": 2.0,
                "channel_fastattn": 4.0 / (2 + 1e-4)}[method]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert len(layer.weights) == (0 if method == "sum" else 2)
    if method.startswith("channel"):
        assert layer.weights[0].shape == (3,)
    if method in ("attn", "fastattn"):
        layer.weights[1].assign(3.0)
        weights = np.array([1.0, 3.0])
        w = np.exp(weights) / np.exp(weights).sum() if method == "attn" else weights / (4 + 1e-4)
        np.testing.assert_allclose(np.asarray(layer(x)), w[0] * 1 + w[1] * 3, rtol=1e-6)


def test_keras_file_round_trip(tmp_path):
    model = edt.build_model("efficientdet-d0", "fpn_weight_method=channel_fastattn,image_size=256,num_classes=3,"
                            "data.training_file_pattern=/data/train-*")
    rng = np.random.default_rng(0)
    for w in model.weights:  # move every weight off its initial value
        w.assign(np.asarray(w) + rng.normal(0, 0.01, w.shape).astype("float32"))
    x = rng.normal(size=(2, 256, 256, 3)).astype("float32")
    before = model(x, training=False)
    path = str(tmp_path / "d0.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    # The file holds what defines the network, not where the training data was.
    assert loaded.config.network_dict() == model.config.network_dict()
    assert loaded.config.data.training_file_pattern == ""
    after = loaded(x, training=False)
    for a, b in zip(before[0] + before[1], after[0] + after[1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_mode_uses_drop_connect_and_batch_stats():
    model = edt.build_model("efficientdet-lite0", "image_size=128,num_classes=2")
    x = np.random.default_rng(1).normal(size=(2, 128, 128, 3)).astype("float32")
    eval_out = np.asarray(model(x, training=False)[0][0])
    train_out = np.asarray(model(x, training=True)[0][0])
    assert not np.allclose(eval_out, train_out)
