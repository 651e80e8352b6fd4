"""One optimizer step of the trainer equals one step of the official TF2 trainer.

training_step_reference.npz (made by running the official trainer; tests/data/README.md) holds a batch, its official anchor
targets, and every variable's change after steps 1..3 of the official `train_lib` step on D0 at
256 px, batch 2, from the raw weights of the reference checkpoint. The project's own step
(`train_step.build_train_step` with the trainer's schedule, optimizer and clipping) must move
every variable as the official one did.

Learning rates: ours scale the warm-up start with batch/64 (as the official TF1 trainer did); the
official TF2 trainer does not. `lr_warmup_init = 0.008 * 64 / batch` gives the same rates here.

Batch-norm moving variance: on one device the official step runs TensorFlow's fused batch norm,
which moves the moving variance toward the unbiased batch variance (n / (n - 1) times the biased
one, n = pictures x height x width of the map); its multi-replica (TPU, GPU) batch norm, and ours
at any replica count, use the biased one. The test converts the official change of each moving
variance to the biased batch variance before comparing (exact: the momentum and n are known).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.checkpoints.loading import load_weights
from efficientdet_tf.checkpoints.official import model_variables, official_name
from efficientdet_tf.config import get_config
from efficientdet_tf.train import schedules, strategy as strategy_lib
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.train_step import build_train_step, build_training_model, clip_gradients

LEVELS = range(3, 8)
# Element-wise: within 2% of the variable's largest official change, plus a few float32 steps of
# the weight itself (the update is a difference of two rounded weights).
RELATIVE = 0.02
NORM_RELATIVE = 0.01
LOSS_TOLERANCE = 2e-3


def _kind(name):
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("moving_mean", "moving_variance"):
        return "batch-norm statistics"
    if leaf in ("gamma", "beta"):
        return "batch-norm gamma/beta"
    if leaf == "depthwise_kernel":
        return "depthwise kernels"
    if leaf in ("kernel", "pointwise_kernel"):
        return "kernels"
    if leaf == "bias":
        return "biases"
    if leaf.startswith("WSM"):
        return "fusion weights"
    return leaf


@pytest.fixture(scope="module")
def reference(d0_reference_dir):
    data = np.load(os.path.join(d0_reference_dir, "training_step_reference.npz"))
    return {k: data[k] for k in data.files}, json.loads(str(data["meta"]))


@pytest.fixture(scope="module")
def steps(reference, d0_reference_dir):
    """Runs two steps of ours; returns (start weights, weights after step 1, losses of steps 1 and 2)."""
    data, meta = reference
    hp, batch = meta["hparams"], meta["batch"]
    steps_per_epoch = 10
    config = get_config(meta["model_name"], {
        "image_size": meta["image_size"], "train.batch_size": batch, "learning_rate": hp["learning_rate"],
        "lr_warmup_init": hp["lr_warmup_init"] * schedules.REFERENCE_BATCH / batch,
        "lr_warmup_epoch": hp["lr_warmup_step"] / steps_per_epoch, "momentum": hp["momentum"],
        "weight_decay": hp["weight_decay"], "clip_gradients_norm": hp["clip_gradients_norm"],
        "moving_average_decay": hp["moving_average_decay"], "alpha": hp["alpha"], "gamma": hp["gamma"],
        "delta": hp["delta"], "box_loss_weight": hp["box_loss_weight"]})
    strategy = strategy_lib.get_strategy("")
    with strategy.scope():
        model = build_training_model(config)
        load_weights(model, os.path.join(d0_reference_dir, "model"), use_ema=False)
        schedule = schedules.build_schedule(config.train, batch, steps_per_epoch, hp["total_steps"])
        optimizer = build_optimizer(config.train, schedule, "float32")
        optimizer.build(model.trainable_variables)
    step = build_train_step(strategy, model, optimizer, model.trainable_variables, factory.build_loss_fn(config),
                            float(config.loss.weight_decay), float(config.train.clip_gradients_norm))
    labels = {"num_positives": tf.constant(data["num_positives"], tf.float32)}
    for level in LEVELS:
        labels["cls_targets_p%d" % level] = tf.constant(data["cls_targets_p%d" % level])
        labels["box_targets_p%d" % level] = tf.constant(data["box_targets_p%d" % level])
    batch_data = (tf.constant(data["images"]), labels)
    variables = model_variables(model)
    counts = {}  # values per channel that each batch norm averages: n of the Bessel correction
    for layer in model.layers:
        for variable in layer.weights:
            if variable.name == "moving_variance":
                counts[official_name(layer, variable)] = (batch * int(np.prod(layer.output.shape[1:-1])),
                                                          float(layer.momentum))
    start = {name: v.numpy() for name, v in variables.items()}
    rates = [float(optimizer.learning_rate.numpy())]
    first = {k: float(v) for k, v in step(batch_data).items()}
    after = {name: v.numpy() for name, v in variables.items()}
    rates.append(float(optimizer.learning_rate.numpy()))
    second = {k: float(v) for k, v in step(batch_data).items()}
    return start, after, [first, second], rates, counts


def _official_change(data, name, start, counts):
    """(official change or its first 512 values, its L2 norm or None when stored whole).

    A moving variance's change is converted from the unbiased batch variance of the official
    single-device step to the biased one (see the module docstring)."""
    if "delta1/" + name in data:
        change, norm = data["delta1/" + name], None
    else:
        change, norm = data["delta1_head/" + name], float(data["delta1_norm/" + name])
    if name in counts:
        n, momentum = counts[name]
        moving = start[name].reshape(-1)[: change.size].reshape(change.shape)
        unbiased = change / (1.0 - momentum) + moving
        change = (1.0 - momentum) * (unbiased * (n - 1) / n - moving)
        assert norm is None  # moving statistics are small: stored whole
    return change, norm


def _compare(data, start, after, counts):
    """{name: (largest element difference beyond float noise / largest official change, norm ratio or
    None, largest element difference / largest official change)}."""
    out = {}
    for name in start:
        official, norm = _official_change(data, name, start, counts)
        ours = (after[name] - start[name]).reshape(-1)
        head = ours[: official.size].reshape(official.shape)
        # Float noise at the variable's scale: a few steps of float32 at its largest value.
        noise = 4 * np.spacing(np.float32(np.max(np.abs(start[name]))))
        scale = float(np.max(np.abs(official)))
        excess = np.maximum(np.abs(head - official) - noise, 0.0)
        relative = float(np.max(excess)) / scale if scale > 0 else float(np.max(excess))
        # Variables that (almost) did not move (biases and betas that get a ~1e-10 change) have no
        # meaningful relative difference: left out of the raw figure.
        raw = float(np.max(np.abs(head - official))) / scale if scale > 100 * noise else 0.0
        out[name] = (relative, None if norm is None else float(np.linalg.norm(ours)) / norm, raw)
    return out


def test_learning_rates_are_the_official_ones(reference, steps):
    _, meta = reference
    rates = steps[3]
    for index, rate in enumerate(rates):
        np.testing.assert_allclose(rate, meta["steps"][str(index + 1)]["learning_rate"], rtol=1e-6)


def test_first_step_losses_equal_the_official_ones(reference, steps):
    _, meta = reference
    first = steps[2][0]
    official = meta["steps"]["1"]
    for ours, theirs in (("cls_loss", "cls_loss"), ("box_loss", "box_loss"), ("det_loss", "det_loss"),
                         ("reg_loss", "reg_l2_loss"), ("total_loss", "loss")):
        np.testing.assert_allclose(first[ours], official[theirs], rtol=1e-5, err_msg=ours)


def test_every_variable_moves_as_in_the_official_step(reference, steps):
    data, _ = reference
    start, after, _, _, counts = steps
    assert len(start) == 709 and len(counts) > 60
    compared = _compare(data, start, after, counts)
    worst_by_kind = {}
    for name, (relative, norm_ratio, raw) in compared.items():
        kind = _kind(name)
        worst = worst_by_kind.setdefault(kind, [0.0, 0.0, 0.0])
        worst[0] = max(worst[0], raw)
        worst[1] = max(worst[1], relative)
        if norm_ratio is not None:
            worst[2] = max(worst[2], abs(norm_ratio - 1.0))
    print("\nlargest difference per variable kind, relative to the variable's largest official change "
          "(element; element beyond float noise; L2 norm of large variables):")
    for kind, (raw, element, norm) in sorted(worst_by_kind.items()):
        print("  %-24s %.2e  %.2e  %.2e" % (kind, raw, element, norm))
    bad = {n: c for n, c in compared.items()
           if c[0] > RELATIVE or (c[1] is not None and abs(c[1] - 1.0) > NORM_RELATIVE)}
    assert not bad, sorted(bad.items(), key=lambda item: -item[1][0])[:10]


def test_second_step_losses_are_the_official_ones(reference, steps):
    _, meta = reference
    second = steps[2][1]
    official = meta["steps"]["2"]
    for ours, theirs in (("cls_loss", "cls_loss"), ("box_loss", "box_loss"), ("det_loss", "det_loss"),
                         ("reg_loss", "reg_l2_loss")):
        assert abs(second[ours] - official[theirs]) <= LOSS_TOLERANCE, (ours, second[ours], official[theirs])


def test_global_norm_clipping_alone_would_miss_the_official_step():
    # The official recipe clips each tensor first: a gradient of norm 30 beside a small one ends
    # at norm 10/sqrt(1.01) ~ 9.95 with the small one kept, not shrunk 3x as a global clip does.
    grads = [tf.constant([30.0, 0.0]), tf.constant([0.0, 1.0])]
    official = [g.numpy() for g in clip_gradients(grads, 10.0)]
    global_only = [g.numpy() for g in tf.clip_by_global_norm(grads, 10.0)[0]]
    np.testing.assert_allclose(official[1], [0.0, 10.0 / np.sqrt(101.0)], rtol=1e-6)
    assert np.linalg.norm(np.concatenate(official)) == pytest.approx(10.0, rel=1e-6)
    assert abs(global_only[1][1] - official[1][1]) > 0.2
