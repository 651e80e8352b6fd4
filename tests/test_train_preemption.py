"""Preemption and lost workers: SIGTERM saves a checkpoint on every worker at one step and exits 0;
rerunning resumes there. Each run is a subprocess on localhost (multi-worker through TF_CONFIG)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from test_train import SMALL, make_shapes_records
from test_train_distributed import ROOT, _env, _free_ports, _results

SCRIPT = r"""
import json, sys
from efficientdet_tf.train.trainer import train
from efficientdet_tf.config import get_config

from efficientdet_tf.train.errors import TrainError

records, model_dir, overrides, strategy, steps, timeout = sys.argv[1:7]
try:
    result = train(get_config("efficientdet-d0", json.loads(overrides)), model_dir, train_file_pattern=records,
                   train_steps=int(steps), save_every=2, strategy=strategy or None, seed=7, deterministic=True,
                   progress=False, collective_timeout=float(timeout))
except TrainError as e:
    print("TRAINERROR " + str(e))
    sys.exit(3)
print("RESULTS " + json.dumps({"step": result["step"], "preempted": result["preempted"],
                               "history": result["history"], "resumed_from": result["resumed_from"]}))
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_shapes_records(tmp_path_factory.mktemp("shapes"))


def _start(records, model_dir, strategy, steps, workers=None, index=0, timeout=300, **env_extra):
    env = _env(**env_extra)
    if workers:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    return subprocess.Popen([sys.executable, "-c", SCRIPT, records, model_dir, json.dumps(SMALL), strategy,
                             str(steps), str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for(path, processes, limit=600):
    start = time.monotonic()
    while not os.path.exists(path):
        for p in processes:
            assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.monotonic() - start < limit, "no %s after %d s" % (path, limit)
        time.sleep(0.2)


def _finish(processes, timeout=600):
    outputs = []
    for p in processes:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        outputs.append((_results(stdout), stdout))
    return outputs


@pytest.mark.slow
def test_sigterm_saves_and_a_rerun_resumes_there(records, tmp_path):
    model_dir = str(tmp_path / "model")
    process = _start(records, model_dir, "", 60)
    _wait_for(os.path.join(model_dir, "ckpt-2.index"), [process])
    process.send_signal(signal.SIGTERM)
    (result, stdout), = _finish([process])
    assert result["preempted"] and 2 <= result["step"] < 60
    assert "preempted (SIGTERM): saved %s at step %d" % (os.path.join(model_dir, "ckpt-%d" % result["step"]),
                                                          result["step"]) in stdout
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-%d" % result["step"])
    (again, _), = _finish([_start(records, model_dir, "", result["step"] + 2)])
    assert not again["preempted"] and again["resumed_from"].endswith("ckpt-%d" % result["step"])
    assert [h[0] for h in again["history"]] == [result["step"] + 1, result["step"] + 2]


@pytest.mark.slow
def test_sigterm_to_one_worker_saves_every_worker_at_one_step(records, tmp_path):
    model_dir = str(tmp_path / "model")
    workers = ["localhost:%d" % port for port in _free_ports(2)]
    processes = [_start(records, model_dir, "multi_worker", 60, workers, index) for index in range(2)]
    try:
        _wait_for(os.path.join(model_dir, "ckpt-2.index"), processes)
        processes[1].send_signal(signal.SIGTERM)  # the non-chief worker: the chief must follow it
        (chief, chief_out), (other, _) = _finish(processes)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert chief["preempted"] and other["preempted"] and chief["step"] == other["step"] < 60
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-%d" % chief["step"])
    assert not [name for name in os.listdir(model_dir) if name.startswith(".scratch")]
    workers = ["localhost:%d" % port for port in _free_ports(2)]
    resumed = _finish([_start(records, model_dir, "multi_worker", chief["step"] + 2, workers, i) for i in range(2)])
    for result, _ in resumed:
        assert result["resumed_from"].endswith("ckpt-%d" % chief["step"])
        assert [h[0] for h in result["history"]] == [chief["step"] + 1, chief["step"] + 2]


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_within_the_timeout(records, tmp_path):
    from efficientdet_tf.train.checkpointing import KILL_ENV

    model_dir = str(tmp_path / "model")
    workers = ["localhost:%d" % port for port in _free_ports(2)]
    chief = _start(records, model_dir, "multi_worker", 40, workers, 0, timeout=20)
    lost = _start(records, model_dir, "multi_worker", 40, workers, 1, timeout=20, **{KILL_ENV: "step:5"})
    try:
        lost.communicate(timeout=600)
        assert lost.returncode == -signal.SIGKILL
        killed_at = time.monotonic()
        stdout, stderr = chief.communicate(timeout=300)
        waited = time.monotonic() - killed_at
    finally:
        for p in (chief, lost):
            if p.poll() is None:
                p.kill()
    print("\nthe chief stopped %.1f s after its peer was killed, exit %s:\n%s\n%s" % (
        waited, chief.returncode, stdout[-1500:], stderr[-3000:]))
    assert chief.returncode == 3, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith("TRAINERROR ")][0]
    assert "lost contact with worker 1 of the cluster at step" in line, line
    assert "the last checkpoint is %s" % os.path.join(model_dir, "ckpt-4") in line, line
    assert waited < 20 + 60
    workers = ["localhost:%d" % port for port in _free_ports(2)]
    resumed = _finish([_start(records, model_dir, "multi_worker", 6, workers, i) for i in range(2)])
    for result, _ in resumed:
        assert result["resumed_from"].endswith("ckpt-4") and [h[0] for h in result["history"]] == [5, 6]
