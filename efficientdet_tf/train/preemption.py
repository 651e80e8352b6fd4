"""Preemption: on SIGTERM or a GCE maintenance event every worker saves a checkpoint at one step and stops.

Cloud VMs, TPU pods and batch schedulers send SIGTERM before they take a machine away; Google
Compute Engine GPU VMs also announce `TERMINATE_ON_HOST_MAINTENANCE` through their metadata server.
`PreemptionWatch` turns either into a request flag. The flag travels inside the training step,
in the same all-reduce as the batch's positive-anchor count (`train_step.build_train_step`), so
every worker learns of a request at the same step without any extra message, and all of them
save the checkpoint of that step and stop (exit 0). Rerunning the same command resumes there.

TensorFlow's `PreemptionCheckpointHandler` is not used: on a GCE CPU VM it installs no SIGTERM
handler at all, on GCE GPU VMs it watches only maintenance events, it restores the latest
checkpoint a second time and adds its own `_preemption_checkpointed_runs` variable to every
checkpoint, and its watcher threads stayed blocked in the coordination service, where a rerun
two-worker job aborted ('Resource temporarily unavailable'). Checkpoints written with it restore
as before: the extra variable is ignored.
"""

import signal
import threading

# Seconds between two reads of the GCE maintenance event.
MAINTENANCE_POLL_SECONDS = 5.0


def _gce_maintenance_probe():
    """TensorFlow's GCE helpers `(on_gcp, terminating)`, or None where this TensorFlow lacks them."""
    try:
        from tensorflow.python.distribute.failure_handling import failure_handling_util as util
        return util.on_gcp, util.termination_watcher_function_gce
    except (ImportError, AttributeError):
        return None


class PreemptionWatch:
    """Collects stop requests: SIGTERM (main thread only) and, on GCE, a maintenance event.

    Use `flag()` as the train step's `stop` input; when the step's summed `stop` is positive, every
    worker has seen a request at that step. `close()` gives SIGTERM back its previous handler.

    Args:
      watch_maintenance: poll the GCE metadata server for `TERMINATE_ON_HOST_MAINTENANCE`
        (None: when the metadata server answers, as on every GCE VM; `GCE_METADATA_IP` moves it).
      poll_seconds: seconds between two polls.
    """

    def __init__(self, watch_maintenance=None, poll_seconds=MAINTENANCE_POLL_SECONDS):
        self.reason = None
        self._requested = threading.Event()
        self._closed = threading.Event()
        self._installed = False
        # Python delivers signals to the main thread only; elsewhere (a notebook's worker thread)
        # SIGTERM keeps its meaning.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        probe = _gce_maintenance_probe()
        if watch_maintenance is None:
            watch_maintenance = bool(probe) and probe[0]()
        self._watcher = None
        if watch_maintenance and probe:
            self._watcher = threading.Thread(target=self._watch_maintenance, args=(probe[1], poll_seconds),
                                             name="gce-maintenance-watch", daemon=True)
            self._watcher.start()

    @property
    def requested(self):
        """True once SIGTERM or a maintenance event arrived in this process."""
        return self._requested.is_set()

    @property
    def watching_maintenance(self):
        """True while the GCE maintenance event is polled."""
        return self._watcher is not None and self._watcher.is_alive()

    def request(self, reason):
        """Asks the run to save and stop after the current step (first reason kept)."""
        if not self._requested.is_set():
            self.reason = reason
            self._requested.set()

    def flag(self):
        """The train step's `stop` input: 1.0 after a request, else 0.0 (a float32 scalar tensor)."""
        import tensorflow as tf

        return tf.constant(1.0 if self.requested else 0.0, tf.float32)

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self.request("SIGTERM")

    def _watch_maintenance(self, terminating, poll_seconds):
        while not self._closed.wait(poll_seconds):
            try:
                if terminating():
                    self.request("GCE maintenance event TERMINATE_ON_HOST_MAINTENANCE")
                    return
            except Exception:  # noqa: BLE001 - an unreachable metadata server is asked again later
                continue

    def close(self):
        """Gives SIGTERM back its previous handler and stops the maintenance watch."""
        self._closed.set()
        if self._installed:
            # None: a handler installed outside Python, which cannot be put back; the default then.
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False
