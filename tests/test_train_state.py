"""Training state across steps and restarts: the best evaluation survives a resume, steps that the
float16 loss scaler skips are not saved or evaluated again, and each worker draws its own
augmentation seeds."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.config import get_config
from efficientdet_tf.data.pipeline import InputPipeline
from efficientdet_tf.train import trainer
from efficientdet_tf.train.checkpointing import read_best
from helpers import SMALL


@pytest.mark.slow
def test_a_resumed_run_keeps_the_best_evaluation_of_the_run_before(shapes_records, tmp_path):
    model_dir = str(tmp_path / "model")
    config = get_config("efficientdet-d0", SMALL)
    scores = {2: 0.5, 4: 0.3}
    seen = []

    def eval_fn(path, step):
        seen.append(step)
        return {"AP": scores[step]}

    first = trainer.train(config, model_dir, train_file_pattern=shapes_records, train_steps=2, save_every=2,
                          eval_fn=eval_fn, eval_every=2, progress=False, seed=1)
    assert first["best"]["step"] == 2
    second = trainer.train(config, model_dir, train_file_pattern=shapes_records, train_steps=4, save_every=2,
                           eval_fn=eval_fn, eval_every=2, progress=False, seed=1)
    assert seen == [2, 4] and second["resumed_from"].endswith("ckpt-2")
    # The worse evaluation after the resume does not replace the earlier best.
    assert second["best"]["step"] == 2 and second["best"]["AP"] == 0.5
    assert read_best(model_dir)["step"] == 2
    with open(os.path.join(model_dir, "best", "metrics.json")) as f:
        assert json.load(f)["step"] == 2


@pytest.mark.slow
def test_steps_skipped_by_the_loss_scaler_are_neither_saved_nor_evaluated(shapes_records, tmp_path, monkeypatch):
    build = trainer.build_optimizer

    def overflowing(train_config, learning_rate, precision, statistics=None):
        # A loss scale of 2^40 overflows float16 at once: the scaler skips batches (halving the
        # scale each time) before the first real step.
        sgd = build(train_config, learning_rate, precision, statistics).inner_optimizer
        return keras.optimizers.LossScaleOptimizer(sgd, initial_scale=2.0 ** 40)

    monkeypatch.setattr(trainer, "build_optimizer", overflowing)
    model_dir = str(tmp_path / "model")
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.mixed_precision": "float16"}))
    evaluated = []
    result = trainer.train(config, model_dir, train_file_pattern=shapes_records, train_steps=2, save_every=1,
                           keep_checkpoints=10, eval_fn=lambda path, step: evaluated.append(step) or {"AP": 0.1},
                           eval_every=1, progress=False)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    consumed = int(reader.get_tensor("data/consumed_batches/.ATTRIBUTES/VARIABLE_VALUE"))
    assert consumed > 5  # batches were skipped
    assert [h[0] for h in result["history"]] == [1, 2]
    assert evaluated == [1, 2]
    assert sorted(f for f in os.listdir(model_dir) if f.endswith(".index")) == ["ckpt-1.index", "ckpt-2.index"]


def test_each_worker_draws_its_own_augmentation_seeds(shapes_records):
    config = get_config("efficientdet-d0", dict(SMALL, **{"data.deterministic": True, "data.seed": 7}))
    pipeline = InputPipeline(shapes_records, config, is_training=True)
    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i) for i in range(2)]
    seeds = [pipeline.pipeline_seed(c) for c in contexts]
    assert seeds[0] == 7 and seeds[1] != 7  # one worker keeps the single-worker sequence
    assert pipeline.pipeline_seed(None) == 7
    draws = [list(tf.data.Dataset.random(seed=s).take(4).as_numpy_iterator()) for s in seeds]
    assert draws[0] != draws[1]
    random_pipeline = InputPipeline(shapes_records, get_config("efficientdet-d0", SMALL), is_training=True)
    assert random_pipeline.pipeline_seed(contexts[1]) is None


@pytest.mark.slow
def test_batch_norm_statistics_are_averaged_when_asked(shapes_records, tmp_path):
    from efficientdet_tf.checkpoints.loading import load_weights, trainer_tensors
    from efficientdet_tf.checkpoints.official import model_variables
    from efficientdet_tf.model.efficientdet import build_model

    model_dir = str(tmp_path / "model")
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.average_batch_norm": True}))
    trainer.train(config, model_dir, train_file_pattern=shapes_records, train_steps=3, save_every=3, progress=False,
                  seed=2)
    tensors = trainer_tensors(tf.train.latest_checkpoint(model_dir))
    name = "class_net/class-0-bn-3/moving_variance"
    raw, averaged = tensors["weights"][name], tensors["ema"][name]
    assert not np.allclose(raw, averaged)  # three steps: the average lags the statistics
    # What evaluation and export load: the averaged statistics.
    model = build_model(config)
    load_weights(model, model_dir)
    np.testing.assert_array_equal(model_variables(model)[name].numpy(), averaged)


def _first_pictures(run, batches=2):
    ids = []
    for _ in range(batches):
        _, labels = next(run.iterator)
        ids += run.strategy.experimental_local_results(labels["image_id"])[0].numpy().tolist()
    return ids


@pytest.mark.slow
def test_a_resume_without_deterministic_draws_a_fresh_input_order(shapes_records, tmp_path):
    # With --seed but without --deterministic the global seed fixes tf.data's random ops: a
    # restart used to replay the start of the same order each time.
    config = get_config("efficientdet-d0", SMALL)
    options = trainer.RunOptions(train_file_pattern=shapes_records, train_steps=10, seed=3, progress=False)
    orders = []
    for model_dir in ("a", "b"):
        run = trainer.TrainingRun(config, str(tmp_path / model_dir), options)
        run.set_up()
        run.restore()
        orders.append(_first_pictures(run))
    assert orders[0] == orders[1]  # same seed, fresh runs: the same order (as asked)
    run.consumed = 4
    run.save()
    resumed = trainer.TrainingRun(config, str(tmp_path / "b"), options)
    resumed.set_up()
    resumed.restore()
    assert resumed.consumed == 4
    assert _first_pictures(resumed) != orders[0]
