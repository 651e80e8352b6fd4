"""Gradient accumulation: k micro-batches make the update of one batch of k times their size, and resume exactly."""

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.config import get_config
from efficientdet_tf.data.pipeline import InputPipeline
from efficientdet_tf.train import trainer
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.train_step import LOSS_KEYS, build_train_step, build_training_model
from helpers import SMALL, distances, train_with_kill


def _one_step(config, model, start, batch, accumulation_steps):
    for variable, value in zip(model.trainable_variables, start):
        variable.assign(value)
    strategy = tf.distribute.get_strategy()
    optimizer = build_optimizer(config.train, 0.01, "float32")
    optimizer.build(model.trainable_variables)
    step = build_train_step(strategy, model, optimizer, model.trainable_variables, factory.build_loss_fn(config),
                            float(config.loss.weight_decay), float(config.train.clip_gradients_norm),
                            accumulation_steps=accumulation_steps)
    out = step(batch)
    moved = np.concatenate([(v.numpy() - s).ravel() for v, s in zip(model.trainable_variables, start)])
    return moved, {key: float(out[key]) for key in LOSS_KEYS}


@pytest.mark.slow
def test_four_micro_batches_of_two_update_as_one_batch_of_eight(shapes_records):
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.batch_size": 8, "backbone_survival_prob": 1.0,
                                                          "moving_average_decay": 0.0}))
    batch = next(iter(InputPipeline(shapes_records, config, is_training=True, batch_size=8)()))
    keras.utils.set_random_seed(1)
    model = build_training_model(config)
    # Batch norm on its moving statistics: what is left to compare is the accumulation itself.
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    start = [v.numpy() for v in model.trainable_variables]
    whole, whole_losses = _one_step(config, model, start, batch, 1)
    accumulated, accumulated_losses = _one_step(config, model, start, batch, 4)
    error = np.linalg.norm(accumulated - whole) / np.linalg.norm(whole)
    print("relative difference of the updates: %.3g" % error)
    assert np.linalg.norm(whole) > 0
    assert error < 1e-4
    for key in LOSS_KEYS:
        assert accumulated_losses[key] == pytest.approx(whole_losses[key], rel=1e-5), key
    # The micro-batches really are smaller: two of eight pictures are not the same update.
    two = {key: value[:2] for key, value in batch[1].items()}
    part, _ = _one_step(config, model, start, (batch[0][:2], two), 1)
    assert np.linalg.norm(part - whole) / np.linalg.norm(whole) > 0.05


def test_a_batch_that_does_not_split_into_micro_batches_is_one_line(shapes_records, tmp_path):
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.batch_size": 6, "train.accumulation_steps": 4}))
    with pytest.raises(trainer.TrainError, match=r"^train.accumulation_steps=4 does not divide the batch of 6 "
                                                 r"pictures per replica \(train.batch_size 6 over 1 replicas\)"):
        trainer.train(config, str(tmp_path / "model"), train_file_pattern=shapes_records, train_steps=1,
                      progress=False)


def _train(shapes_records, model_dir, kill_at=None):
    return train_with_kill(shapes_records, model_dir, kill_at, hparams=dict(SMALL, **{"train.accumulation_steps": 2}),
                           train_steps=4)


@pytest.mark.slow
def test_sigkill_during_accumulated_steps_then_resume_gives_the_same_weights(shapes_records, tmp_path):
    from efficientdet_tf.checkpoints.loading import trainer_tensors

    straight = [str(tmp_path / "straight_a"), str(tmp_path / "straight_b")]
    for model_dir in straight:
        run = _train(shapes_records, model_dir)
        assert run.returncode == 0, run.stderr[-3000:]
    resumed = str(tmp_path / "resumed")
    run = _train(shapes_records, resumed, kill_at="step:3")
    assert run.returncode == -signal.SIGKILL
    assert tf.train.latest_checkpoint(resumed).endswith("ckpt-2")
    run = _train(shapes_records, resumed)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming from %s" % os.path.join(resumed, "ckpt-2") in run.stdout
    first, second, again = (trainer_tensors(os.path.join(d, "ckpt-4")) for d in straight + [resumed])
    run_to_run, resumed_gap, movement = distances(first, second, again, trainer_tensors(os.path.join(resumed, "ckpt-2")))
    tolerance = 3 * run_to_run + 1e-5
    assert resumed_gap <= tolerance, (resumed_gap, run_to_run)
    assert movement > 20 * tolerance, (movement, tolerance)
    assert "step 4:" in run.stdout  # steps count optimizer steps (of 2 micro-batches each)
