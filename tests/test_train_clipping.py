"""Gradient clipping across replicas: 'replica' clips each replica's share before the sum (the
official trainers), 'global' clips the sum. Two logical CPUs in a subprocess, one D0 step each."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from efficientdet_tf import factory, losses
from efficientdet_tf.config import get_config
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.train_step import build_train_step, build_training_model, clip_gradients

data = np.load(sys.argv[1])
clip = float(sys.argv[2])
config = get_config("efficientdet-d0", {"image_size": 256, "train.batch_size": 2, "clip_gradients_norm": clip,
                                        "moving_average_decay": 0, "backbone_survival_prob": 1.0,
                                        "fpn_cell_repeats": 1, "box_class_repeats": 1})
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
labels = {k: data[k] for k in data.files if k.startswith(("cls_targets", "box_targets"))}
labels["num_positives"] = data["num_positives"].astype(np.float32)
dataset = tf.data.Dataset.from_tensor_slices((data["images"], labels)).batch(2)
batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
loss_fn, decay = factory.build_loss_fn(config), float(config.loss.weight_decay)
keras.utils.set_random_seed(3)
with strategy.scope():
    model = build_training_model(config)
trainable = model.trainable_variables


def gradients(images, labels):
    # Each replica's share, as the train step computes it (global positives, 1/2 of the decay).
    context = tf.distribute.get_replica_context()
    positives = context.all_reduce("sum", tf.reduce_sum(labels["num_positives"]))
    with tf.GradientTape() as tape:
        cls, box = model(images, training=True)
        total = loss_fn(list(cls), list(box), labels, normalizer=positives + 1.0)["det_loss"]
        total += losses.l2_loss(trainable, decay) / 2
    return tape.gradient(total, trainable)


shares = [[g.numpy() for g in local] for local in
          zip(*[strategy.experimental_local_results(g) for g in strategy.run(tf.function(gradients), args=batch)])]
start = [v.numpy() for v in trainable]
results = {}
for scope in ("replica", "global"):
    if scope == "replica":
        want = [a + b for a, b in zip(*[clip_gradients([tf.constant(g) for g in share], clip) for share in shares])]
    else:
        want = clip_gradients([tf.constant(a + b) for a, b in zip(*shares)], clip)
    for variable, value in zip(trainable, start):
        variable.assign(value)
    with strategy.scope():
        optimizer = build_optimizer(config.train, 0.01, "float32")
        optimizer.build(trainable)
    build_train_step(strategy, model, optimizer, trainable, loss_fn, decay, clip, clip_scope=scope)(batch)
    moved = np.concatenate([(v.numpy() - b).ravel() for v, b in zip(trainable, start)])
    expected = -0.01 * np.concatenate([np.asarray(w).ravel() for w in want])
    results[scope] = {"error": float(np.linalg.norm(moved - expected) / np.linalg.norm(expected)),
                      "norm": float(np.linalg.norm(moved)),
                      "share_norms": [float(np.linalg.norm(np.concatenate([g.ravel() for g in s]))) for s in shares]}
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow
def test_each_clipping_scope_computes_what_it_says(d0_reference_dir, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, os.path.join(d0_reference_dir, "training_step_reference.npz"),
                           "1.0"], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.split("RESULTS ", 1)[1])
    print(results)
    for scope in ("replica", "global"):
        # Weights change by ~1e-5 on values ~0.1: float32 differences carry ~1e-3 relative rounding.
        assert results[scope]["error"] < 5e-3, (scope, results[scope])
        # Clipping is active: every share is longer than the clip norm.
        assert min(results[scope]["share_norms"]) > 1.0
    # Each replica's share clipped to norm 1 then summed moves further than the clipped sum.
    assert results["replica"]["norm"] > 1.2 * results["global"]["norm"]
