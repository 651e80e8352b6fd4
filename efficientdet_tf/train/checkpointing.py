"""Trainer checkpoints: `<model_dir>/ckpt-<step>` via tf.train.CheckpointManager, config.yaml, best/.

A checkpoint holds the model, the optimizer (momentum, EMA, loss scale, iterations = step), the
data position, the state of every random-number generator inside the model (`rng`: drop-connect's
seed generators, keyed by layer name; Keras 3 models do not checkpoint them themselves), and two
name-keyed views that readers without the optimizer can use (`checkpoints.loading`): `weights`
(every model variable) and `ema` (the EMA of every trained variable), both keyed by the official
variable names. The views reference the same variables, so they cost no extra space.

Kill safety: TensorFlow writes a checkpoint's shards into a temporary folder and renames them into
place; the manager then rewrites the `checkpoint` state file through a temporary file and a rename.
The state file therefore only ever names complete checkpoints, and a run killed at any moment
resumes from the last one it names.
"""

import json
import os
import shutil

import numpy as np

import tensorflow as tf
import yaml

from efficientdet_tf.checkpoints import loading
from efficientdet_tf.checkpoints.official import model_variables
from efficientdet_tf.train import optimizer as optimizer_lib
from efficientdet_tf.train.errors import TrainError

CONFIG_FILE = loading.CONFIG_FILE  # one name for writer and readers
PREFIX = "ckpt"
BEST_DIR = "best"
def seed_generator_states(model):
    """{'<layer name>/<i>': variable} of the state that a layer holds besides its weights: the
    Keras SeedGenerators' states (drop-connect).

    Keyed by layer names, which the network fixes (the official names), unlike the generators'
    own variable paths, which count up across every model built in the process.
    """
    states = {}
    for layer in model.layers:
        weights = {id(w) for w in layer.weights}
        extra = [v for v in layer.variables if id(v) not in weights]
        for index, variable in enumerate(extra):
            states["%s/%d" % (layer.name, index)] = variable
    return states


def read_best(model_dir):
    """{'step', 'AP', 'checkpoint'} of `<model_dir>/best/` (written by `Checkpointer.save_best`), or None."""
    path = os.path.join(model_dir, BEST_DIR, "metrics.json")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        metrics = json.load(f)
    if "AP" not in metrics:
        return None
    prefix = tf.train.latest_checkpoint(os.path.join(model_dir, BEST_DIR))
    return {"step": int(metrics.get("step", -1)), "AP": float(metrics["AP"]), "checkpoint": prefix}


def _network_differences(saved, config):
    """Human-readable 'key: saved -> new' for the network keys that differ."""
    from efficientdet_tf.config import Config

    old, new = Config(saved).network_dict(), config.network_dict()
    keys = sorted(set(old) | set(new))
    return ["%s: %r -> %r" % (k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def read_config(model_dir):
    """The config dict stored in `<model_dir>/config.yaml`, or None."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return yaml.safe_load(f)


def check_model_dir(model_dir, config):
    """Refuses a model_dir whose config.yaml describes another network (model or class count)."""
    saved = read_config(model_dir)
    if saved is None:
        if tf.io.gfile.exists(model_dir) and tf.train.latest_checkpoint(model_dir):
            raise TrainError("model_dir %s holds checkpoints but no %s: cannot tell which model "
                             "they belong to" % (model_dir, CONFIG_FILE))
        return
    diffs = _network_differences(saved, config)
    if diffs:
        raise TrainError("model_dir %s was written for %s with %d classes, not %s with %d classes "
                         "(%s); use another --model_dir" % (
                             model_dir, saved.get("name"), saved.get("num_classes", -1), config.name,
                             config.num_classes, "; ".join(diffs[:4])))


def check_writable(model_dir):
    """Refuses, before any step, a local model_dir that cannot be created or written."""
    if "://" in os.fspath(model_dir):
        return  # object stores (gs://, s3://) answer on the first write
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_probe_%d" % os.getpid())
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise TrainError("model_dir %s is not writable (%s): choose another --model_dir"
                         % (model_dir, e.strerror or e)) from None


def check_free_space(model_dir, model, keep_checkpoints):
    """Refuses a local model_dir without room for the checkpoints the run keeps (weights, EMA and
    momentum in float32, `keep_checkpoints` + 1 of them while a save replaces the oldest)."""
    if "://" in os.fspath(model_dir):
        return
    needed = 3 * 4 * sum(int(np.prod(w.shape)) for w in model.weights) * (int(keep_checkpoints) + 1)
    free = shutil.disk_usage(model_dir).free
    if free < needed:
        raise TrainError("model_dir %s has %.1f MB free, the checkpoints of this run need about %.1f MB: "
                         "free some space or choose another --model_dir" % (model_dir, free / 2**20, needed / 2**20))


def write_config(model_dir, config):
    """Writes the resolved config as `<model_dir>/config.yaml` (temporary file, then rename)."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        yaml.safe_dump(config.as_dict(), f, sort_keys=False)
    tf.io.gfile.rename(tmp, path, overwrite=True)


class Checkpointer:
    """Saves and restores the training state under `model_dir` (chief) or a scratch dir (others).

    In a multi-worker run every worker must take part in each save; only the chief's files land
    in `model_dir`, the others write into `<model_dir>/.scratch_<worker>` and delete it.

    `write_callbacks`: functions called with a save's prefix once its files are written, before the
    state file names it (the kill-safety tests stop the process there).
    """

    def __init__(self, model_dir, model, optimizer, data_position, keep, chief=True, worker="worker_0"):
        self.model_dir = model_dir
        self.chief = chief
        self.data_position = data_position
        named = model_variables(model)
        by_id = {id(v): name for name, v in named.items()}
        ema = {by_id[id(var)]: avg for var, avg in optimizer_lib.ema_variables(optimizer) if id(var) in by_id}
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, data=tf.train.Checkpoint(consumed_batches=data_position),
            weights=tf.train.Checkpoint(**named), ema=tf.train.Checkpoint(**ema),
            rng=tf.train.Checkpoint(**seed_generator_states(model)))
        directory = model_dir if chief else os.path.join(model_dir, ".scratch_" + worker)
        self.directory = directory
        self.write_callbacks = []
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max(1, keep),
                                                  checkpoint_name=PREFIX)

    @property
    def latest(self):
        """Prefix of the newest complete checkpoint in model_dir, or None."""
        return tf.train.latest_checkpoint(self.model_dir)

    def restore_latest(self):
        """Restores the newest checkpoint of model_dir (every worker reads the chief's); its prefix or None."""
        prefix = self.latest
        if prefix:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix

    def save(self, step):
        """Writes ckpt-<step>; returns its prefix in model_dir (None on non-chief workers)."""
        options = tf.train.CheckpointOptions(experimental_write_callbacks=list(self.write_callbacks))
        path = self.manager.save(checkpoint_number=step, options=options)
        if not self.chief:
            tf.io.gfile.rmtree(self.directory)
            return None
        return path

    def save_best(self, prefix, step, metrics):
        """Copies checkpoint `prefix` into <model_dir>/best/ with metrics.json (replaced atomically)."""
        best = os.path.join(self.model_dir, BEST_DIR)
        tmp = best + ".tmp"
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)
        tf.io.gfile.makedirs(tmp)
        base = os.path.basename(prefix)
        for path in tf.io.gfile.glob(prefix + ".*"):
            tf.io.gfile.copy(path, os.path.join(tmp, os.path.basename(path)))
        with tf.io.gfile.GFile(os.path.join(tmp, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (base, base))
        with tf.io.gfile.GFile(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump({"step": int(step), **{k: float(v) for k, v in metrics.items()
                                             if isinstance(v, (int, float))}}, f, indent=1)
        src = os.path.join(self.model_dir, CONFIG_FILE)
        if tf.io.gfile.exists(src):
            tf.io.gfile.copy(src, os.path.join(tmp, CONFIG_FILE))
        old = best + ".old"
        if tf.io.gfile.exists(best):
            if tf.io.gfile.exists(old):
                tf.io.gfile.rmtree(old)
            tf.io.gfile.rename(best, old)
        tf.io.gfile.rename(tmp, best)
        if tf.io.gfile.exists(old):
            shutil.rmtree(old, ignore_errors=True)
        return os.path.join(best, base)
