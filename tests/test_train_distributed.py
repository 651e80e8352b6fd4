"""The loss does not depend on the replica count: one device vs MirroredStrategy over 2 logical CPUs,
and a 2-worker MultiWorkerMirroredStrategy on localhost (TF_CONFIG). Each runs in subprocesses,
because TensorFlow's devices and cluster can be configured only once per process."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, SMALL, free_ports, results_line, subprocess_env


MIRRORED_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from efficientdet_tf.config import get_config
from efficientdet_tf.train.errors import TrainError
from efficientdet_tf.train.trainer import train

shapes_records, out_dir, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = get_config("efficientdet-d0", overrides)
results = {}
for name, strategy in [("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    result = train(config, out_dir + "/" + name, train_file_pattern=shapes_records, train_steps=3, save_every=3,
                   strategy=strategy, seed=7, deterministic=True, progress=False)
    results[name] = {"replicas": strategy.num_replicas_in_sync, "history": result["history"],
                     "losses": result["losses"]}
try:
    train(config.replace({"train.batch_size": 3}), out_dir + "/odd", train_file_pattern=shapes_records, train_steps=1,
          strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), progress=False)
except TrainError as e:
    results["odd_batch_error"] = str(e)
print("RESULTS " + json.dumps(results))
"""

WORKER_SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")  # run from the repository root
from efficientdet_tf.train.trainer import train
from helpers import KillAt
from efficientdet_tf.config import get_config

shapes_records, model_dir, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model, steps, every = (sys.argv[4], int(sys.argv[5]), 2) if len(sys.argv) > 5 else ("efficientdet-d0", 3, 3)
actions = (KillAt(sys.argv[6]),) if len(sys.argv) > 6 else ()
result = train(get_config(model, overrides), model_dir, train_file_pattern=shapes_records, train_steps=steps,
               save_every=every, strategy="multi_worker", seed=7, deterministic=True, progress=False,
               actions=actions)
print("RESULTS " + json.dumps({"history": result["history"], "checkpoint": result["checkpoint"]}))
"""


@pytest.mark.slow
def test_one_device_and_mirrored_give_the_same_losses(shapes_records, tmp_path):
    run = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, shapes_records, str(tmp_path), json.dumps(SMALL)],
                         capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    results = results_line(run.stdout)
    one, mirrored = results["one_device"], results["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    a, b = np.array(one["history"]), np.array(mirrored["history"])
    assert a.shape == (3, 3) and np.all(a[:, 0] == [1, 2, 3])
    # Same global batch: same loss parts at every step, also after two updates of the weights.
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)
    for key in ("cls_loss", "box_loss", "det_loss", "reg_loss", "total_loss"):
        assert abs(one["losses"][key] - mirrored["losses"][key]) <= 1e-4, key
    assert "global batch size 3 is not divisible by the 2 replicas" in results["odd_batch_error"]


def _run_workers(shapes_records, model_dir, *extra, kill_at=None):
    """Runs the two workers of a localhost cluster to the end; returns their RESULTS (chief first).
    With `kill_at` both SIGKILL themselves there (`helpers.KillAt`)."""
    workers = ["localhost:%d" % port for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = subprocess_env(TF_CONFIG=tf_config)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, shapes_records, model_dir, json.dumps(SMALL)] + list(extra)
            + ([kill_at] if kill_at else []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=600)
            if kill_at:
                assert process.returncode == -signal.SIGKILL, stderr[-3000:]
                continue
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(results_line(stdout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


@pytest.mark.slow
def test_two_workers_report_the_same_losses_and_the_chief_writes(shapes_records, tmp_path):
    model_dir = str(tmp_path / "model")
    chief, other = _run_workers(shapes_records, model_dir)
    assert [h[0] for h in chief["history"]] == [1, 2, 3]
    np.testing.assert_array_equal(np.array(chief["history"]), np.array(other["history"]))
    assert chief["checkpoint"] == os.path.join(model_dir, "ckpt-3") and other["checkpoint"] is None
    assert os.path.isfile(os.path.join(model_dir, "ckpt-3.index"))
    assert os.path.isfile(os.path.join(model_dir, "config.yaml"))
    assert not [name for name in os.listdir(model_dir) if name.startswith(".scratch")]


@pytest.mark.slow
def test_two_workers_resume_where_an_uninterrupted_pair_ends(shapes_records, tmp_path):
    # Lite0 (drop-connect) on two workers: two uninterrupted runs of 4 steps, and one killed at
    # step 3 (after ckpt-2) then rerun. The resumed run may differ from the uninterrupted ones by no more
    # than 3x what they differ from each other, plus 1e-5.
    from efficientdet_tf.checkpoints.loading import trainer_tensors
    from helpers import distances

    straight = [str(tmp_path / name) for name in ("a", "b")]
    for model_dir in straight:
        _run_workers(shapes_records, model_dir, "efficientdet-lite0", "4")
    resumed = str(tmp_path / "resumed")
    _run_workers(shapes_records, resumed, "efficientdet-lite0", "4", kill_at="step:3")
    chief, _ = _run_workers(shapes_records, resumed, "efficientdet-lite0", "4")
    assert [h[0] for h in chief["history"]] == [3, 4]
    first, second, again = (trainer_tensors(os.path.join(d, "ckpt-4")) for d in straight + [resumed])
    run_to_run, resumed_gap, movement = distances(first, second, again, trainer_tensors(
        os.path.join(resumed, "ckpt-2")))
    print("\ntwo workers: run to run %.3g, resumed to uninterrupted %.3g, movement %.3g"
          % (run_to_run, resumed_gap, movement))
    assert resumed_gap <= 3 * run_to_run + 1e-5
    assert movement > 20 * (3 * run_to_run + 1e-5)
