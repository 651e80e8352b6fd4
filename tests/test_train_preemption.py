"""Preemption and lost workers: SIGTERM (or a GCE maintenance event) saves a checkpoint on every
worker at one step and exits 0; rerunning resumes there and keeps saving. Each run is a subprocess
on localhost (multi-worker through TF_CONFIG); a stand-in of the GCE metadata server on 127.0.0.1
(`GCE_METADATA_IP`) makes the runs see a Google Cloud VM."""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from helpers import SMALL
from helpers import ROOT, free_ports, results_line, subprocess_env

SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")  # run from the repository root
from efficientdet_tf.train.trainer import train
from helpers import KillAt
from efficientdet_tf.config import get_config

from efficientdet_tf.train.errors import TrainError

import os
shapes_records, model_dir, overrides, strategy, steps, timeout, kill_at = sys.argv[1:8]
try:
    result = train(get_config("efficientdet-d0", json.loads(overrides)), model_dir, train_file_pattern=shapes_records,
                   train_steps=int(steps), save_every=2, strategy=strategy or None, seed=7, deterministic=True,
                   progress=False, collective_timeout=float(timeout), actions=(KillAt(kill_at),) if kill_at else ())
except TrainError as e:
    print("TRAINERROR " + str(e))
    sys.exit(3)
print("RESULTS " + json.dumps({"step": result["step"], "preempted": result["preempted"],
                               "history": result["history"], "resumed_from": result["resumed_from"],
                               "threads": len(os.listdir("/proc/self/task"))}))
"""


class _MetadataServer(http.server.ThreadingHTTPServer):
    """Answers as a GCE VM's metadata server does; `event` is the maintenance event it reports."""

    event = "NONE"


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        answers = {"/computeMetadata/v1/instance/hostname": "stand-in.c.project.internal",
                   "/computeMetadata/v1/instance/maintenance-event": self.server.event}
        if self.headers.get("Metadata-Flavor") != "Google" or self.path.split("?")[0] not in answers:
            self.send_error(404)
            return
        body = answers[self.path.split("?")[0]].encode()
        self.send_response(200)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gce():
    """A GCE metadata stand-in on 127.0.0.1; yields (server, env for the runs)."""
    server = _MetadataServer(("127.0.0.1", 0), _MetadataHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, {"GCE_METADATA_IP": "127.0.0.1:%d" % server.server_address[1]}
    finally:
        server.shutdown()
        server.server_close()


def _start(shapes_records, model_dir, strategy, steps, workers=None, index=0, timeout=300, kill_at="",
           **env_extra):
    env = subprocess_env(**env_extra)
    if workers:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    return subprocess.Popen([sys.executable, "-c", SCRIPT, shapes_records, model_dir, json.dumps(SMALL), strategy,
                             str(steps), str(timeout), kill_at], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


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
        outputs.append((results_line(stdout), stdout))
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("on_gce", [False, True], ids=["plain", "gce"])
def test_sigterm_saves_and_a_rerun_resumes_there(shapes_records, tmp_path, gce, on_gce):
    """On a GCE VM TensorFlow's own handler installed no SIGTERM handler (CPU) and the run died
    with -15; ours saves and exits 0 on every platform."""
    env = gce[1] if on_gce else {}
    model_dir = str(tmp_path / "model")
    process = _start(shapes_records, model_dir, "", 60, **env)
    _wait_for(os.path.join(model_dir, "ckpt-2.index"), [process])
    process.send_signal(signal.SIGTERM)
    (result, stdout), = _finish([process])
    assert result["preempted"] and 2 <= result["step"] < 60
    assert "preempted (SIGTERM): saved %s at step %d" % (os.path.join(model_dir, "ckpt-%d" % result["step"]),
                                                          result["step"]) in stdout
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-%d" % result["step"])
    (again, _), = _finish([_start(shapes_records, model_dir, "", result["step"] + 2, **env)])
    assert not again["preempted"] and again["resumed_from"].endswith("ckpt-%d" % result["step"])
    assert [h[0] for h in again["history"]] == [result["step"] + 1, result["step"] + 2]


@pytest.mark.slow
def test_a_gce_maintenance_event_saves_and_stops(shapes_records, tmp_path, gce):
    server, env = gce
    model_dir = str(tmp_path / "model")
    process = _start(shapes_records, model_dir, "", 200, **env)
    _wait_for(os.path.join(model_dir, "ckpt-2.index"), [process])
    server.event = "TERMINATE_ON_HOST_MAINTENANCE"
    (result, stdout), = _finish([process])
    assert result["preempted"] and 2 <= result["step"] < 200
    assert "preempted (GCE maintenance event TERMINATE_ON_HOST_MAINTENANCE): saved %s at step %d" % (
        os.path.join(model_dir, "ckpt-%d" % result["step"]), result["step"]) in stdout
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-%d" % result["step"])


@pytest.mark.slow
def test_sigterm_to_one_worker_saves_every_worker_at_one_step(shapes_records, tmp_path, gce):
    """Two workers on a (stand-in) GCE VM; the rerun saves several times after it resumes: with a
    timeout on every collective, TensorFlow piled up a sleeping thread per all-reduce until the
    processes aborted at their next save ('Resource temporarily unavailable')."""
    env = gce[1]
    model_dir = str(tmp_path / "model")
    workers = ["localhost:%d" % port for port in free_ports(2)]
    processes = [_start(shapes_records, model_dir, "multi_worker", 60, workers, index, **env) for index in range(2)]
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
    workers = ["localhost:%d" % port for port in free_ports(2)]
    end = chief["step"] + 7  # saves every 2 steps: at least three saves after the resume
    resumed = _finish([_start(shapes_records, model_dir, "multi_worker", end, workers, i, **env) for i in range(2)])
    for result, _ in resumed:
        assert result["resumed_from"].endswith("ckpt-%d" % chief["step"])
        assert [h[0] for h in result["history"]] == list(range(chief["step"] + 1, end + 1))
        assert result["threads"] < 1000, result["threads"]
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-%d" % end)


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_within_the_timeout(shapes_records, tmp_path):
    model_dir = str(tmp_path / "model")
    workers = ["localhost:%d" % port for port in free_ports(2)]
    chief = _start(shapes_records, model_dir, "multi_worker", 40, workers, 0, timeout=20)
    lost = _start(shapes_records, model_dir, "multi_worker", 40, workers, 1, timeout=20, kill_at="step:5")
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
    assert "lost contact with worker 1 of the cluster after step" in line, line
    assert "the last checkpoint is %s" % os.path.join(model_dir, "ckpt-4") in line, line
    assert waited < 20 + 60
    workers = ["localhost:%d" % port for port in free_ports(2)]
    resumed = _finish([_start(shapes_records, model_dir, "multi_worker", 10, workers, i) for i in range(2)])
    for result, _ in resumed:
        assert result["resumed_from"].endswith("ckpt-4") and [h[0] for h in result["history"]] == list(range(5, 11))
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-10")
