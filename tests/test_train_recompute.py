"""Recompute (gradient checkpointing): the same update, moving statistics and random state as the plain step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.config import get_config
from efficientdet_tf.data.pipeline import InputPipeline
from efficientdet_tf.train import trainer
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.recompute import RecomputedForward, segment_of
from efficientdet_tf.train.train_step import LOSS_KEYS, build_train_step, build_training_model
from helpers import SMALL

# Drop-connect on (high rate) and batch norm training: the two things a recomputation could get wrong.
CONFIG = dict(SMALL, **{"train.batch_size": 4, "backbone_survival_prob": 0.5, "moving_average_decay": 0.0,
                        "data.deterministic": True, "data.seed": 2})


def _one_step(config, model, start, batch, recompute, accumulation_steps=1):
    """Loads `start` (every variable of the model), runs one training step and returns what it changed."""
    for variable, value in zip(model.variables, start):
        variable.assign(value)
    optimizer = build_optimizer(config.train, 0.01, "float32")
    optimizer.build(model.trainable_variables)
    step = build_train_step(tf.distribute.get_strategy(), model, optimizer, model.trainable_variables,
                            factory.build_loss_fn(config), float(config.loss.weight_decay),
                            float(config.train.clip_gradients_norm), recompute=recompute,
                            accumulation_steps=accumulation_steps)
    out = step(batch)
    before = {id(v): value for v, value in zip(model.variables, start)}
    moved = np.concatenate([(v.numpy() - before[id(v)]).ravel() for v in model.trainable_variables])
    state = {v.path: v.numpy() for v in model.non_trainable_variables}
    return moved, state, {key: float(out[key]) for key in LOSS_KEYS}


@pytest.mark.slow
@pytest.mark.parametrize("accumulation_steps", [1, 2])
def test_recompute_gives_the_update_statistics_and_random_state_of_the_plain_step(shapes_records,
                                                                                  accumulation_steps):
    config = get_config("efficientdet-d0", CONFIG)
    batch = next(iter(InputPipeline(shapes_records, config, is_training=True, batch_size=4)()))
    keras.utils.set_random_seed(3)
    model = build_training_model(config)
    start = [v.numpy() for v in model.variables]
    plain, plain_state, plain_losses = _one_step(config, model, start, batch, False, accumulation_steps)
    again, again_state, again_losses = _one_step(config, model, start, batch, True, accumulation_steps)
    error = np.linalg.norm(again - plain) / np.linalg.norm(plain)
    print("relative difference of the updates: %.3g" % error)
    assert np.linalg.norm(plain) > 0
    # The recomputed activations come from differently fused kernels: float noise, 3e-5 measured.
    assert error < 3e-4
    for key in LOSS_KEYS:
        assert again_losses[key] == pytest.approx(plain_losses[key], rel=1e-5), key
    # Moving averages updated once (not twice) and seed generators advanced once.
    assert plain_state.keys() == again_state.keys()
    for path, value in plain_state.items():
        if np.issubdtype(value.dtype, np.integer):
            np.testing.assert_array_equal(again_state[path], value, err_msg=path)
        else:
            np.testing.assert_allclose(again_state[path], value, rtol=1e-5, atol=1e-6, err_msg=path)
    # The masks matter: other drop-connect draws give another update, so the match above is the same masks.
    seeds = [i for i, v in enumerate(model.variables) if "seed_generator" in v.path]
    assert seeds
    shifted = list(start)
    for i in seeds:
        shifted[i] = start[i] + np.array([0, 7], start[i].dtype)
    other, _, _ = _one_step(config, model, shifted, batch, True, accumulation_steps)
    assert np.linalg.norm(other - plain) / np.linalg.norm(plain) > 100 * max(error, 1e-7)


def test_segments_are_the_backbone_blocks_and_bifpn_cells_that_need_gradients():
    config = get_config("efficientdet-d0", dict(SMALL, fpn_cell_repeats=2, backbone_survival_prob=1.0))
    model = build_training_model(config)
    blocks = sorted({segment_of(layer.name) for layer in model.layers if ".blocks_" in layer.name},
                    key=lambda key: int(key.split("_")[1]))
    assert len(blocks) == 16
    everything = RecomputedForward(model, model.trainable_variables)
    assert everything.segments == blocks + ["cell_0", "cell_1"]
    # A frozen backbone keeps no activations for the backward pass: only the cells are recomputed.
    not_backbone = [v for v in model.trainable_variables if not v.path.startswith("efficientnet-")]
    assert RecomputedForward(model, not_backbone).segments == ["cell_0", "cell_1"]
    images = tf.random.uniform([1, 128, 128, 3])
    direct = model(images, training=False)
    assert segment_of("efficientnet-b0.stem.conv2d") is None
    assert segment_of("class_net.class-predict") is None
    # The segment-by-segment pass is the network: same outputs (inference statistics, no drop-connect).
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    segmented = RecomputedForward(model, model.trainable_variables)(images)
    for a, b in zip(tf.nest.flatten(direct), tf.nest.flatten(segmented)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)


def test_recompute_with_nothing_to_recompute_is_one_line(shapes_records, tmp_path):
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.recompute": True}))
    with pytest.raises(trainer.TrainError, match=r"^train.recompute=true has nothing to recompute: "
                                                 r"--freeze='\^\(efficientnet-\|resample_p\|fpn_cells\)' leaves no "):
        trainer.train(config, str(tmp_path / "model"), train_file_pattern=shapes_records, train_steps=1,
                      progress=False, freeze="^(efficientnet-|resample_p|fpn_cells)")
