"""Picks the tf.distribute strategy: one device, mirrored (local GPUs/CPUs), multi-worker, TPU."""

import json
import os

import tensorflow as tf

from efficientdet_tf.train.errors import TrainError

STRATEGIES = ("", "one_device", "mirrored", "multi_worker", "tpu")


# Seconds a worker may stop answering (the coordination service's heartbeats) before the others
# stop: a worker that died or hangs must not leave the others waiting forever.
DEFAULT_COLLECTIVE_TIMEOUT = 60.0


def _watch_peers(heartbeat_timeout):
    """Configures TensorFlow's coordination service as MultiWorkerMirroredStrategy would, with
    `heartbeat_timeout` seconds before a silent worker counts as lost (its pending all-reduces then
    fail on every other worker).

    Not through the collectives' own timeout: TensorFlow starts a thread per collective op that
    sleeps for the whole timeout, and a training step runs hundreds of them (one per gradient and
    per synchronized batch norm): two Lite0 workers reached 14,000 threads each within 20 s and
    aborted ('Resource temporarily unavailable').
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return  # configured by the caller: theirs stands
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in ("chief", "worker") if job in cluster.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster),
        heartbeat_timeout_in_ms=int(float(heartbeat_timeout) * 1000), coordinated_jobs=jobs)


def get_strategy(name="", tpu=None, collective_timeout=DEFAULT_COLLECTIVE_TIMEOUT):
    """Builds the strategy `name` ('' picks: mirrored over several GPUs, else one device).

    'multi_worker' reads the cluster from TF_CONFIG (worker 0 is the chief); it must be created
    before TensorFlow runs anything else in the process. A worker that stops answering for
    `collective_timeout` seconds (0: TensorFlow's default heartbeat timeout) counts as lost, and the
    others' all-reduces fail, so the survivors stop.
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
        if collective_timeout:
            _watch_peers(collective_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy()
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
