"""The trainer in-process on a tiny setting: D0 at 128 px on shapes TFRecords.

One fine-tuning run from the D0 reference checkpoint (5 classes) is shared by several tests: the
loss falls, the class predictor alone is skipped, checkpoints/config.yaml/TensorBoard events are
written, the inner loops end where an action is due, and the EMA weights are what a model dir
loads. Bad input fails before any step.
"""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.checkpoints.loading import load_pretrained, trainer_tensors
from efficientdet_tf.checkpoints.official import EMA_SUFFIX, model_variables
from efficientdet_tf.config import get_config
from efficientdet_tf.train.actions import Action
from efficientdet_tf.train.errors import NonFiniteLossError, TrainError
from efficientdet_tf.train.trainer import train
from helpers import SMALL, TINY

CLASS_PREDICTOR = ["class_net/class-predict/bias", "class_net/class-predict/pointwise_kernel"]


@pytest.fixture(scope="module")
def finetuned(shapes_records, d0_reference_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("finetune") / "model")
    # Augmentation off (scale 1, no flip): the same pictures each epoch, so the fall is clear.
    config = get_config("efficientdet-d0", dict(TINY, learning_rate=1.28, lr_warmup_epoch=0.5, jitter_min=1.0,
                                                jitter_max=1.0, input_rand_hflip=False))
    seen = []

    def eval_fn(path, step):
        # The checkpoint of the evaluated step is written before eval_fn runs.
        seen.append((step, tf.train.latest_checkpoint(path)))
        return {"AP": {6: 0.1, 12: 0.3, 18: 0.2, 24: 0.25}[step], "AP50": 0.5}

    loop_ends, every_7 = _Record(), _Record(every=7)
    result = train(config, model_dir, train_file_pattern=shapes_records, train_steps=24, save_every=8,
                   keep_checkpoints=2, pretrained_ckpt=d0_reference_dir, seed=3, summary_every=10,
                   eval_fn=eval_fn, eval_every=6, steps_per_loop=3, actions=(loop_ends, every_7))
    return model_dir, dict(result, seen=seen, loop_ends=loop_ends.steps, every_7=every_7.steps)


class _Record(Action):
    """Notes the steps it runs at: after every inner loop, or every `every` steps."""

    def __init__(self, every=0):
        self.every, self.steps = every, []

    def due(self, run):
        return super().due(run) if self.every else True

    def __call__(self, run):
        self.steps.append(run.step)


def test_inner_loops_end_where_an_action_is_due(finetuned):
    _, result = finetuned
    # Up to 3 steps per loop, cut at step 1 (first summaries), the saves (8), evaluations (6),
    # summaries (10) and the action's own period (7).
    assert result["loop_ends"] == [1, 4, 6, 7, 8, 10, 12, 14, 16, 18, 20, 21, 24]
    assert result["every_7"] == [7, 14, 21]


def test_loss_falls_while_fine_tuning(finetuned):
    _, result = finetuned
    det = np.array([h[1] for h in result["history"]])
    assert [h[0] for h in result["history"]] == list(range(1, 25))
    assert np.all(np.isfinite(det))
    assert det[-6:].mean() < 0.85 * det[:3].mean(), det
    assert result["step"] == 24 and result["pictures_per_second"] > 0


def test_fine_tuning_to_5_classes_skips_only_the_class_predictor(finetuned):
    _, result = finetuned
    pretrained = result["pretrained"]
    assert pretrained["skipped"] == CLASS_PREDICTOR
    assert pretrained["loaded"] == 709 - 2


def test_checkpoints_config_and_summaries_are_written(finetuned):
    model_dir, result = finetuned
    assert result["checkpoint"] == os.path.join(model_dir, "ckpt-24")
    kept = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(model_dir, "ckpt-*.index")))
    assert kept == ["ckpt-18", "ckpt-24"]  # keep_checkpoints=2 (saves at 6, 8, 12, 16, 18, 24)
    saved = get_config(os.path.join(model_dir, "config.yaml"))
    assert saved.num_classes == 5 and saved.image_size == 128 and saved.train.learning_rate == 1.28
    tags = set()
    for events in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(events):
            tags.update(value.tag for value in event.summary.value)
    assert {"det_loss", "cls_loss", "box_loss", "learning_rate", "pictures_per_second", "train_pictures"} <= tags
    scalar_steps = sorted({event.step for events in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))
                           for event in tf.compat.v1.train.summary_iterator(events)
                           if any(value.tag == "det_loss" for value in event.summary.value)})
    assert scalar_steps == [1, 10, 20, 24]


def test_eval_fn_runs_on_saved_checkpoints_and_the_best_is_kept(finetuned):
    model_dir, result = finetuned
    assert result["seen"] == [(step, os.path.join(model_dir, "ckpt-%d" % step)) for step in (6, 12, 18, 24)]
    assert [step for step, _ in result["evaluations"]] == [6, 12, 18, 24]
    best = os.path.join(model_dir, "best")
    assert result["best"] == {"step": 12, "AP": 0.3, "checkpoint": os.path.join(best, "ckpt-12")}
    assert tf.train.latest_checkpoint(best) == os.path.join(best, "ckpt-12")
    with open(os.path.join(best, "metrics.json")) as f:
        assert json.load(f) == {"step": 12, "AP": 0.3, "AP50": 0.5}
    # best/ holds a loadable model dir of its own (config.yaml beside the checkpoint).
    assert get_config(os.path.join(best, "config.yaml")).num_classes == 5
    assert trainer_tensors(os.path.join(best, "ckpt-12"))["ema"]


def test_model_dir_loads_the_ema_weights(finetuned):
    from efficientdet_tf.runtime import Detector

    model_dir, _ = finetuned
    views = trainer_tensors(os.path.join(model_dir, "ckpt-24"))
    detector = Detector("efficientdet-d0", model_dir, image_size=128, num_classes=5)
    loaded = model_variables(detector.model)
    for name in ["class_net/class-predict/bias", "efficientnet-b0/stem/conv2d/kernel", "box_net/box-predict/bias"]:
        np.testing.assert_array_equal(loaded[name].numpy(), views["ema"][name])
        assert not np.array_equal(views["ema"][name], views["weights"][name]), name
    # Batch-norm statistics are not trained by gradients: they come from the raw weights.
    stat = "efficientnet-b0/stem/tpu_batch_normalization/moving_mean"
    np.testing.assert_array_equal(loaded[stat].numpy(), views["weights"][stat])
    detections = detector(np.zeros((96, 128, 3), np.uint8))
    assert detections["detection_boxes"].shape == (100, 4)
    # The model dir says which network it holds: no model name or overrides needed.
    from_dir = Detector(model_dir)
    assert (from_dir.config.num_classes, from_dir.config.image_size) == (5, 128)
    np.testing.assert_array_equal(model_variables(from_dir.model)["class_net/class-predict/bias"].numpy(),
                                  views["ema"]["class_net/class-predict/bias"])
    with pytest.raises(ValueError, match="holds a efficientdet-d0, not a efficientdet-lite0"):
        Detector("efficientdet-lite0", model_dir)


def test_model_dir_of_another_class_count_is_refused(finetuned, shapes_records):
    model_dir, _ = finetuned
    config = get_config("efficientdet-d0", dict(TINY, num_classes=3))
    with pytest.raises(TrainError, match="written for efficientdet-d0 with 5 classes, not efficientdet-d0 with 3"):
        train(config, model_dir, train_file_pattern=shapes_records, train_steps=30)
    with pytest.raises(TrainError, match="written for efficientdet-d0 with 5 classes, not efficientdet-lite0"):
        train(get_config("efficientdet-lite0", TINY), model_dir, train_file_pattern=shapes_records, train_steps=30)


def test_load_pretrained_takes_the_reference_ema_values(d0_reference_dir):
    from efficientdet_tf.model.efficientdet import build_model

    model = build_model("efficientdet-d0", dict(TINY))
    before = {n: v.numpy() for n, v in model_variables(model).items() if n in CLASS_PREDICTOR}
    report = load_pretrained(model, d0_reference_dir)
    assert report["skipped"] == CLASS_PREDICTOR and report["loaded"] == 707
    reader = tf.train.load_checkpoint(os.path.join(d0_reference_dir, "model"))
    variables = model_variables(model)
    for name in ["box_net/box-predict/pointwise_kernel", "class_net/class-predict/depthwise_kernel",
                 "fpn_cells/cell_2/fnode7/WSM_1", "efficientnet-b0/blocks_15/conv2d_1/kernel"]:
        np.testing.assert_array_equal(variables[name].numpy(), reader.get_tensor(name + EMA_SUFFIX))
    for name in CLASS_PREDICTOR:
        np.testing.assert_array_equal(variables[name].numpy(), before[name])


@pytest.mark.slow
def test_nan_loss_stops_with_step_parts_rate_and_last_checkpoint(shapes_records, tmp_path, monkeypatch):
    from efficientdet_tf import losses

    original = losses.detection_loss
    calls = tf.Variable(0, dtype=tf.int64)

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        count = calls.assign_add(1)
        # From the third step on the box loss is NaN (a stand-in for diverging training).
        nan = tf.where(count >= 3, tf.constant(np.nan, tf.float32), 0.0)
        out = dict(out, box_loss=out["box_loss"] + nan)
        out["det_loss"] = out["cls_loss"] + 50.0 * out["box_loss"]
        return out

    monkeypatch.setattr(losses, "detection_loss", poisoned)
    model_dir = str(tmp_path / "model")
    with pytest.raises(NonFiniteLossError) as info:
        train(get_config("efficientdet-d0", SMALL), model_dir, train_file_pattern=shapes_records, train_steps=10,
              save_every=2, seed=1, progress=False)
    message = str(info.value)
    assert "loss is not finite at step 3" in message
    assert "box_loss nan" in message and "cls_loss" in message and "learning rate" in message
    assert "last good checkpoint: %s" % os.path.join(model_dir, "ckpt-2") in message
    # Nothing after the last good checkpoint was saved.
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-2")
    assert not glob.glob(os.path.join(model_dir, "ckpt-3*"))


def test_bad_input_fails_before_training(shapes_records, tmp_path, d0_reference_dir):
    config = get_config("efficientdet-d0", SMALL)
    cases = [
        (dict(train_file_pattern=str(tmp_path / "missing-*.tfrecord")), "no file matches"),
        (dict(train_file_pattern=None), "give --train_file_pattern or --tfds_name"),
        (dict(train_file_pattern=shapes_records, strategy="tpu"), "no TPU found"),
        (dict(train_file_pattern=shapes_records, strategy="parameter_server"), "--strategy must be one of"),
        (dict(train_file_pattern=shapes_records, freeze="^nothing-like-this"), "matches no variable"),
        (dict(train_file_pattern=shapes_records, deterministic=True, use_xla=True), "do not go together"),
    ]
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    cases.append((dict(train_file_pattern=str(empty)), "hold no records"))
    for kwargs, expected in cases:
        with pytest.raises(TrainError, match=expected):
            train(config, str(tmp_path / "model"), train_steps=2, **kwargs)
    with pytest.raises(TrainError, match=r"label map .*train_label_map.yaml has ids up to 5 but num_classes is 3"):
        train(config.replace("num_classes=3"), str(tmp_path / "model"), train_steps=2, train_file_pattern=shapes_records)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(TrainError, match=r"model_dir .*a_file/model is not writable"):
        train(config, str(tmp_path / "a_file" / "model"), train_steps=2, train_file_pattern=shapes_records)
    lite = get_config("efficientdet-lite0", SMALL)
    with pytest.raises(TrainError, match="efficientnet-b0 backbone but the model uses efficientnet-lite0"):
        train(lite, str(tmp_path / "lite"), train_file_pattern=shapes_records, train_steps=2,
              pretrained_ckpt=d0_reference_dir)
    assert not glob.glob(str(tmp_path / "*" / "ckpt-*"))


def test_full_disk_fails_before_training(shapes_records, tmp_path, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 20, 9 << 20, 1 << 20))
    with pytest.raises(TrainError, match=r"has 1.0 MB free, the checkpoints of this run need about"):
        train(get_config("efficientdet-d0", SMALL), str(tmp_path / "model"), train_steps=2, train_file_pattern=shapes_records)
    assert not glob.glob(str(tmp_path / "model" / "ckpt-*"))


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "efficientdet_tf.cli.train", "--model_dir=%s" % (tmp_path / "m"),
         "--train_file_pattern=%s" % (tmp_path / "nothing-*.tfrecord"), "--hparams=image_size=128"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if re.match(r"^\S+: error: ", line)]
    assert len(lines) == 1 and "no file matches the input pattern" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_traineval_evaluates_and_keeps_the_best(shapes_records, tmp_path):
    model_dir = tmp_path / "m"
    hparams = "image_size=128,num_classes=5,fpn_cell_repeats=1,box_class_repeats=1,train.batch_size=4"
    result = subprocess.run(
        [sys.executable, "-m", "efficientdet_tf.cli.train", "--model_name=efficientdet-lite0",
         "--model_dir=%s" % model_dir, "--train_file_pattern=%s" % shapes_records, "--hparams=" + hparams,
         "--train_steps=4", "--save_every=2", "--mode=traineval", "--val_file_pattern=%s" % shapes_records,
         "--eval_every=2", "--seed=1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best checkpoint by AP" in result.stdout
    for step in (2, 4):  # COCO metrics of the EMA weights at each evaluation
        with open(model_dir / "eval" / ("step_%d" % step) / "metrics.json") as f:
            assert {"AP", "AP50", "ARmax100", "per_class"} <= set(json.load(f))
    assert tf.train.latest_checkpoint(str(model_dir / "best")) is not None
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_mixed_precision_trains_with_float32_weights(shapes_records, tmp_path):
    # (--use_xla is left out here: compiling D0 with XLA on this CPU takes minutes.)
    losses = {}
    for name in ("", "float16", "bfloat16"):
        config = get_config("efficientdet-d0", dict(SMALL, **{"train.mixed_precision": name}))
        result = train(config, str(tmp_path / (name or "float32")), train_file_pattern=shapes_records, train_steps=3,
                       seed=1, deterministic=True, progress=False)
        assert result["step"] == 3 and np.all(np.isfinite([h[2] for h in result["history"]])), name
        losses[name] = result["history"][0][1]
        views = trainer_tensors(result["checkpoint"])
        assert {str(v.dtype) for v in views["weights"].values()} == {"float32"}, name
    # Same seed, same first batch: the first loss agrees up to the compute precision.
    for name, tolerance in [("float16", 1e-2), ("bfloat16", 3e-2)]:
        assert abs(losses[name] - losses[""]) <= tolerance * losses[""], (name, losses)


def test_ema_starts_at_the_weights_and_warms_up_like_the_official():
    import keras

    from efficientdet_tf.train.optimizer import DetectionSGD, ema_variables

    weight = keras.Variable(np.array([1.0, -2.0], np.float32))
    sgd = DetectionSGD(learning_rate=0.1, momentum=0.0, use_ema=True, ema_momentum=0.9998)
    sgd.build([weight])
    (_, average), = ema_variables(sgd)
    expected = None
    for step in range(4):
        sgd.apply([tf.constant([1.0, 1.0])], [weight])
        value = weight.numpy()
        decay = 0.0 if step == 0 else min(0.9998, (1.0 + step) / (10.0 + step))
        expected = value if expected is None else decay * expected + (1 - decay) * value
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(weight.numpy(), [0.6, -2.4], rtol=1e-6)


def test_schedule_warms_up_then_decays_by_cosine_scaled_with_the_batch():
    from efficientdet_tf.train.schedules import build_schedule

    train_config = get_config("efficientdet-d0").train  # lr 0.08, warm-up from 0.008 over 1 epoch
    schedule = build_schedule(train_config, global_batch=32, steps_per_epoch=10, total_steps=110)
    rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(rates, [0.004, 0.022, 0.04, 0.02, 0.0], atol=1e-7)


@pytest.mark.slow
def test_a_stop_request_on_a_skipped_float16_step_saves_and_ends_the_run(shapes_records, tmp_path, monkeypatch):
    """A request (SIGTERM, a maintenance event) before the second step, which the float16 loss
    scaler skips (overflowing gradients from the second step on): the run saves the last step and
    stops. Checkpoints hold only the training state. (SIGTERM itself: test_train_preemption.py.)"""
    from efficientdet_tf import losses
    from efficientdet_tf.train.preemption import PreemptionWatch

    flags = []
    original_flag = PreemptionWatch.flag

    def flag(self):
        flags.append(len(flags))
        if len(flags) == 2:
            self.request("test request")
        return original_flag(self)

    monkeypatch.setattr(PreemptionWatch, "flag", flag)
    original_loss = losses.detection_loss
    calls = tf.Variable(0, dtype=tf.int64)

    def overflowing(*args, **kwargs):
        out = original_loss(*args, **kwargs)
        count = calls.assign_add(1)
        # Same value, a gradient no float16 loss scale survives: the scaler skips the step.
        box = out["box_loss"]
        blow_up = tf.where(count >= 2, 1e30, 0.0) * (box - tf.stop_gradient(box))
        return dict(out, det_loss=out["det_loss"] + blow_up)

    monkeypatch.setattr(losses, "detection_loss", overflowing)
    model_dir = str(tmp_path / "model")
    config = get_config("efficientdet-d0", dict(SMALL, **{"train.mixed_precision": "float16"}))
    result = train(config, model_dir, train_file_pattern=shapes_records, train_steps=10, save_every=100, seed=1,
                   progress=False)
    assert len(flags) == 2 and result["preempted"]
    assert result["step"] == 1
    prefix = tf.train.latest_checkpoint(model_dir)
    assert prefix.endswith("ckpt-%d" % result["step"]) and result["checkpoint"] == prefix
    assert not [name for name, _ in tf.train.list_variables(prefix) if "preemption" in name]


def test_an_unknown_run_option_is_named(tmp_path):
    # The options are RunOptions' fields, declared once: a typo does not pass silently.
    with pytest.raises(TypeError, match=r"unexpected option\(s\) train_step; known: .*train_steps"):
        train(get_config("efficientdet-d0", SMALL), str(tmp_path / "model"), train_step=3)
