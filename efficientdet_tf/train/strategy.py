"""Picks the tf.distribute strategy: one device, mirrored (local GPUs/CPUs), multi-worker, TPU."""

import json
import os

import tensorflow as tf

from efficientdet_tf.train.errors import TrainError

STRATEGIES = ("", "one_device", "mirrored", "multi_worker", "tpu")


# Seconds a collective (the gradient all-reduce) may wait for the other workers before it fails:
# a worker that died must not leave the others waiting forever.
DEFAULT_COLLECTIVE_TIMEOUT = 300.0


def get_strategy(name="", tpu=None, collective_timeout=DEFAULT_COLLECTIVE_TIMEOUT):
    """Builds the strategy `name` ('' picks: mirrored over several GPUs, else one device).

    'multi_worker' reads the cluster from TF_CONFIG (worker 0 is the chief); it must be created
    before TensorFlow runs anything else in the process. Its collectives give up after
    `collective_timeout` seconds (0: wait forever), so the survivors of a lost worker stop.
    'tpu' resolves `tpu` (a name or grpc address; empty: the local TPU or the one the environment
    names).
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    name = name or ""
    if name not in STRATEGIES:
        raise TrainError("--strategy must be one of '', one_device, mirrored, multi_worker, tpu; got %r" % name)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TrainError("--strategy=tpu: no TPU found (%s)" % first) from None
    if name == "multi_worker":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        if not cluster.get("cluster", {}).get("worker"):
            raise TrainError("--strategy=multi_worker needs TF_CONFIG with a cluster of workers "
                             "(e.g. {\"cluster\": {\"worker\": [\"host:port\", ...]}, \"task\": "
                             "{\"type\": \"worker\", \"index\": 0}})")
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=float(collective_timeout) if collective_timeout else None)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    device = gpus[0].name if gpus else "/cpu:0"
    if name == "" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy(device)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and config.yaml (task 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                          and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy):
    """'<type>_<index>' of this worker (for non-chief scratch directories)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "worker_0"
    return "%s_%d" % (resolver.task_type, resolver.task_id)


def is_multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy with a cluster of more than one worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return len(resolver.cluster_spec().as_dict().get("worker", [])) + len(
        resolver.cluster_spec().as_dict().get("chief", [])) > 1
