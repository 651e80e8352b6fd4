"""Exact resume: a deterministic run SIGKILLed during training and during a checkpoint save, then
rerun with the same command, ends where an uninterrupted run ends.

The model is Lite0, whose backbone trains with drop-connect (random masks drawn from seed
generators inside the model), with augmentation on, so every piece of random state that drives a
step must come back from the checkpoint. Two uninterrupted runs measure how far this machine's
CPU kernels let identical runs drift (zero on most machines); the resumed run may differ from an
uninterrupted one by at most 3x that, plus 1e-5.
"""

import os
import signal

import pytest
import tensorflow as tf

from efficientdet_tf.checkpoints.loading import trainer_tensors
from helpers import SMALL, distances, train_with_kill

MODEL = "efficientdet-lite0"
STEPS = 6


def _train(shapes_records, model_dir, kill_at=None):
    return train_with_kill(shapes_records, model_dir, kill_at, MODEL, SMALL, STEPS)


@pytest.mark.slow
def test_sigkill_in_training_and_in_a_save_then_resume_gives_the_same_weights(shapes_records, tmp_path):
    straight = [str(tmp_path / "straight_a"), str(tmp_path / "straight_b")]
    for model_dir in straight:
        run = _train(shapes_records, model_dir)
        assert run.returncode == 0, run.stderr[-3000:]

    resumed = str(tmp_path / "resumed")
    run = _train(shapes_records, resumed, kill_at="step:3")
    assert run.returncode == -signal.SIGKILL
    assert tf.train.latest_checkpoint(resumed).endswith("ckpt-2")

    # Killed after ckpt-4's files are written, before the state file names them: the state still
    # names ckpt-2, which reads back whole.
    run = _train(shapes_records, resumed, kill_at="save:4")
    assert run.returncode == -signal.SIGKILL
    assert "resuming from %s" % os.path.join(resumed, "ckpt-2") in run.stdout
    assert tf.train.latest_checkpoint(resumed).endswith("ckpt-2")
    assert os.path.isfile(os.path.join(resumed, "ckpt-4.index"))
    assert trainer_tensors(os.path.join(resumed, "ckpt-2"))["weights"]

    run = _train(shapes_records, resumed)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming from %s" % os.path.join(resumed, "ckpt-2") in run.stdout
    assert "step %d:" % STEPS in run.stdout

    final = "ckpt-%d" % STEPS
    first, second, again = (trainer_tensors(os.path.join(d, final)) for d in straight + [resumed])
    start = trainer_tensors(os.path.join(resumed, "ckpt-2"))
    run_to_run, resumed_gap, movement = distances(first, second, again, start)
    print("\nrun to run %.3g, resumed to uninterrupted %.3g, movement since ckpt-2 %.3g"
          % (run_to_run, resumed_gap, movement))
    tolerance = 3 * run_to_run + 1e-5
    assert resumed_gap <= tolerance, (resumed_gap, run_to_run)
    # Training moved the weights far more than that: a resume that lost the optimizer, EMA or
    # drop-connect state, or replayed other data, would miss by a visible fraction of this.
    assert movement > 20 * tolerance, (movement, tolerance)
