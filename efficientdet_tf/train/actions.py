"""The training loop's periodic actions (progress, summaries, save, evaluate and keep the best, preemption).

As in Orbit, the loop runs the optimizer steps in inner loops of up to `steps_per_loop` steps
inside one compiled function and hands control back to these objects between two of them. Each
action says at which steps it wants to see the run (`next_step`), and the inner loop ends there,
so an action every 1000 steps runs at step 1000 exactly, whatever `steps_per_loop` is.
"""


class Action:
    """Something the training loop does at some steps, between two inner loops.

    Subclasses override `due` and `__call__`, and `next_step` when they need the loop to stop at
    given steps (the default: every `every` steps, or no particular step when `every` is 0).
    `__call__` receives the `TrainingRun`: its `step`, `values` (loss parts of that step),
    `learning_rate_used`, `pictures_per_second`, `last_batch`, `save()`, `evaluate()`.

    Attributes:
      every: steps between two runs of the action (0: no fixed period).
      after_skipped_steps: run even when the last inner loop did not advance the step (float16:
        the loss scaler skipped every batch of it). Only the preemption stop needs that.
    """

    every = 0
    after_skipped_steps = False

    def next_step(self, step):
        """The first step after `step` at which the inner loop must stop for this action, or None."""
        return (step // self.every + 1) * self.every if self.every else None

    def due(self, run):
        """Whether to run now (after the inner loop that reached `run.step`)."""
        return bool(self.every) and run.step % self.every == 0

    def __call__(self, run):
        raise NotImplementedError


class ProgressBar(Action):
    """A Keras progress bar over the total steps, updated after every inner loop (chief only)."""

    def __init__(self, total_steps, interactive):
        import keras

        from efficientdet_tf.train.train_step import LOSS_KEYS

        # Off a terminal (CI logs, nohup) the bar prints a line per update: every 15 s is enough there.
        self.bar = keras.utils.Progbar(total_steps, stateful_metrics=list(LOSS_KEYS) + ["lr", "pics/s"],
                                       unit_name="step", interval=0.05 if interactive else 15.0)

    def due(self, run):
        return True

    def __call__(self, run):
        values = [(k, run.values[k]) for k in ("cls_loss", "box_loss", "total_loss")]
        self.bar.update(run.step, values=values + [("lr", run.learning_rate_used), ("pics/s", run.pictures_per_second)])


class WriteSummaries(Action):
    """TensorBoard scalars at step 1, every `every` steps and at the end; training pictures with their
    boxes at step 1 and every 10 * `every` steps (chief only)."""

    def __init__(self, writer, every, total_steps):
        self.writer, self.every, self.total_steps = writer, max(1, int(every)), total_steps

    def next_step(self, step):
        return 1 if step < 1 else super().next_step(step)

    def due(self, run):
        return run.step == 1 or run.step % self.every == 0 or run.step == self.total_steps

    def __call__(self, run):
        self.writer.scalars(run.step, dict(run.values, learning_rate=run.learning_rate_used,
                                           pictures_per_second=run.pictures_per_second))
        if run.step == 1 or run.step % (self.every * 10) == 0:
            images, boxes = run.last_batch
            self.writer.pictures(run.step, images.numpy(), {"boxes": boxes.numpy()})


class SaveCheckpoint(Action):
    """Writes `ckpt-<step>` every `every` steps and at the last step (every worker takes part)."""

    def __init__(self, every, total_steps):
        self.every, self.total_steps = int(every), total_steps

    def due(self, run):
        return (run.step % self.every == 0 or run.step == self.total_steps) and run.saved_step != run.step

    def __call__(self, run):
        run.save()


class EvaluateAndKeepBest(Action):
    """Evaluates the checkpoint of the step every `every` steps; the best by AP goes to `best/`."""

    def __init__(self, every):
        self.every = int(every)

    def __call__(self, run):
        run.evaluate()


class StopOnPreemption(Action):
    """When any worker was asked to stop (SIGTERM, a GCE maintenance event), every worker saves the
    checkpoint of this step and the run ends. The request travels in the step's own all-reduce and
    is read once per inner loop, so all workers stop after the same inner loop."""

    after_skipped_steps = True

    def due(self, run):
        return run.stop_requests > 0

    def __call__(self, run):
        run.stop_for_preemption()
