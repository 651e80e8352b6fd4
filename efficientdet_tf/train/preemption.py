"""Preemption: on SIGTERM every worker saves a checkpoint at the same step, and training stops cleanly.

Cloud VMs and TPU pods send SIGTERM before they take a machine away. TensorFlow's
`PreemptionCheckpointHandler` catches it, agrees on the step to save at with the other workers
(through the multi-worker coordination service; one process decides alone), and calls our save at
that step on every worker. Rerunning the same command resumes from that checkpoint.
"""

import signal
import threading

import tensorflow as tf


class Preempted(Exception):
    """Raised after the preemption checkpoint is written: the run stops there."""


class PreemptionWatch:
    """Watches for SIGTERM while training; `check()` after each step saves and raises `Preempted`.

    Args:
      strategy: the run's tf.distribute strategy (its cluster resolver names the workers).
      manager: the run's tf.train.CheckpointManager (the handler reads its run counter through it).
      save_fn: called with no arguments to write the checkpoint of the current step.
    """

    def __init__(self, strategy, manager, save_fn):
        self.handler = None
        # Python delivers signals to the main thread only; elsewhere (a notebook's worker thread)
        # SIGTERM keeps its default meaning.
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)
        config = tf.distribute.experimental.TerminationConfig(exit_fn=self._stop, save_fn=save_fn)
        resolver = getattr(strategy, "cluster_resolver", None)
        self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            resolver, manager, termination_config=config)

    @staticmethod
    def _stop():
        raise Preempted()

    def check(self):
        """After a step: when any worker got SIGTERM, saves at the agreed step and raises Preempted."""
        if self.handler is not None:
            self.handler.save_checkpoint_if_preempted()

    def close(self):
        """Gives SIGTERM back its previous handler."""
        if self.handler is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self.handler = None
