"""Shared test helpers: box IoU, detection matching, synthetic pictures, tiny training settings and
the subprocess plumbing of the training tests."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"image_size": 128, "num_classes": 5, "train.batch_size": 4}
# One BiFPN cell and one head layer: the same code paths, half the graph to trace.
SMALL = dict(TINY, fpn_cell_repeats=1, box_class_repeats=1)


def box_iou(a, b):
    """IoU matrix of [N, 4] and [M, 4] [ymin, xmin, ymax, xmax] boxes (numpy)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    top = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom - top, 0, None), axis=-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def assert_detections_match(got, boxes, scores, classes, num, min_iou=0.99, score_tol=1e-4):
    """Every expected detection has a counterpart of the same class, IoU >= min_iou, close score.

    `got` is one picture's detection dict; boxes/scores/classes/num the expected ones. Boxes clipped
    to zero area (IoU undefined) match when their corners agree within 0.05 px.
    """
    assert int(got["num_detections"]) == int(num)
    n = int(num)
    other = got["detection_boxes"][:n]
    close = np.abs(boxes[:n, None] - other[None]).max(-1) <= 0.05
    same = ((classes[:n, None] == got["detection_classes"][None, :n])
            & (np.abs(scores[:n, None] - got["detection_scores"][None, :n]) <= score_tol)
            & ((box_iou(boxes[:n], other) >= min_iou) | close))
    missing = np.where(~same.any(axis=1))[0]
    assert not len(missing), "no counterpart for expected detections %s" % missing[:10]


def synthetic_picture(height, width, seed):
    """A deterministic uint8 RGB picture: colour gradients with four flat random rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    picture = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        picture[top: top + height // 3, left: left + width // 3] = rng.integers(0, 256, 3)
    return picture


def matched_fraction(got, want, score_tol=1e-4, box_tol=0.5):
    """Share of `want`'s detections that `got` (one picture's detection dicts) also holds: same class,
    score within `score_tol`, every box corner within `box_tol` pixels."""
    n = int(want["num_detections"])
    if n == 0:
        return 1.0 if int(got["num_detections"]) == 0 else 0.0
    boxes, other = want["detection_boxes"][:n], got["detection_boxes"][:int(got["num_detections"])]
    same = ((want["detection_classes"][:n, None] == got["detection_classes"][None, :len(other)])
            & (np.abs(want["detection_scores"][:n, None] - got["detection_scores"][None, :len(other)]) <= score_tol)
            & (np.abs(boxes[:, None] - other[None]).max(-1) <= box_tol))
    return float(same.any(axis=1).mean())


def mediapipe_detections(path, picture):
    """MediaPipe Tasks' ObjectDetector on a TFLite file as it is (score threshold 0, 100 results):
    (boxes [N, 4] as [ymin, xmin, ymax, xmax] pixels, scores [N], class names)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=path), score_threshold=0.0,
                                           max_results=100)
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(picture)))
    boxes = [[d.bounding_box.origin_y, d.bounding_box.origin_x, d.bounding_box.origin_y + d.bounding_box.height,
              d.bounding_box.origin_x + d.bounding_box.width] for d in result.detections]
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array([d.categories[0].score for d in result.detections]),
            [d.categories[0].category_name for d in result.detections])


def make_shapes_records(folder, num_train=16):
    """Shapes pictures (5 classes, 128-160 px) written as one training TFRecord; returns its path."""
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    jsons = make_shapes_dataset(str(folder), num_train, 2, seed=0, size_range=(128, 160))
    paths, report = create_coco_tfrecord.create_coco_tfrecord(
        os.path.join(str(folder), "train"), jsons["train"], os.path.join(str(folder), "train"), num_shards=1)
    assert not report.has_issues()
    return paths[0]


def subprocess_env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def results_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def checkpoint_distance(a, b):
    """Largest element difference over the weights and the EMA of two trainer checkpoints."""
    worst = 0.0
    for view in ("weights", "ema"):
        assert a[view].keys() == b[view].keys() and len(a[view]) > 200
        worst = max(worst, max(float(np.max(np.abs(a[view][k] - b[view][k]))) for k in a[view]))
    return worst


def distances(first, second, resumed, start):
    """(run to run, resumed to uninterrupted, movement since `start`) for the final checkpoints."""
    run_to_run = checkpoint_distance(first, second)
    resumed_gap = max(checkpoint_distance(first, resumed), checkpoint_distance(second, resumed))
    movement = max(float(np.max(np.abs(start["weights"][k] - resumed["weights"][k]))) for k in start["weights"])
    return run_to_run, resumed_gap, movement


from efficientdet_tf.train.actions import Action  # noqa: E402 - light: imports no TensorFlow


class KillAt(Action):
    """A training action that SIGKILLs its own process: 'step:N' right after step N (after the
    built-in actions of that step), 'save:N' once ckpt-N's files are written but before the
    checkpoint state file names them."""

    def __init__(self, where):
        self.kind, step = where.split(":")
        self.step = int(step)
        self.installed = False

    def next_step(self, step):
        return self.step if self.kind == "step" and step < self.step else None

    def due(self, run):
        return self.kind == "save" and not self.installed or run.step == self.step

    def __call__(self, run):
        if self.kind == "save":
            target = "ckpt-%d" % self.step
            run.checkpointer.write_callbacks.append(
                lambda save_path: _kill() if os.path.basename(save_path) == target else None)
            self.installed = True
        else:
            _kill()


def _kill():
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


# `python -c TRAIN_WITH_KILL <tests folder> <step:N | save:N | ''> <efficientdet-train flags...>`:
# the command-line trainer with a KillAt action.
TRAIN_WITH_KILL = r"""
import functools, sys
sys.path.insert(0, sys.argv.pop(1))
kill_at = sys.argv.pop(1)
from helpers import KillAt
from efficientdet_tf.train import trainer
if kill_at:
    trainer.train = functools.partial(trainer.train, actions=(KillAt(kill_at),))
from efficientdet_tf.cli import train as cli
cli.run()
"""


def train_with_kill(records, model_dir, kill_at=None, model="efficientdet-lite0", hparams=None, train_steps=6,
                    save_every=2):
    """Runs `efficientdet-train` (deterministic, seed 5, no progress bar) in a subprocess through
    TRAIN_WITH_KILL; returns the CompletedProcess."""
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, "-c", TRAIN_WITH_KILL, os.path.join(ROOT, "tests"), kill_at or "",
         "--model_name=" + model, "--model_dir=" + model_dir,
         "--hparams=" + ",".join("%s=%s" % (k, json.dumps(v)) for k, v in (hparams or SMALL).items()),
         "--train_file_pattern=" + records, "--train_steps=%d" % train_steps, "--save_every=%d" % save_every,
         "--deterministic", "--seed=5", "--noprogress"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
