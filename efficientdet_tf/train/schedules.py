"""Learning-rate schedules: linear warm-up, then cosine decay (or constant), scaled with the batch."""

import math

import keras
import tensorflow as tf

from efficientdet_tf.config.schema import choices_of
from efficientdet_tf.train.errors import TrainError

SCHEDULES = choices_of("train", "lr_schedule")
REFERENCE_BATCH = 64  # train.learning_rate and train.lr_warmup_init are given for 64 pictures


def scale_for_batch(value, global_batch):
    """`value` (a rate for 64 pictures) scaled linearly to `global_batch` pictures."""
    return float(value) * global_batch / REFERENCE_BATCH


@keras.saving.register_keras_serializable(package="efficientdet_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_init` to `peak` over `warmup_steps`, then cosine decay to 0 at
    `total_steps` ('cosine') or `peak` held ('constant'). Step = optimizer iterations."""

    def __init__(self, peak, warmup_init, warmup_steps, total_steps, kind="cosine"):
        if kind not in SCHEDULES:
            raise TrainError("train.lr_schedule must be one of %s, got %r" % (", ".join(SCHEDULES), kind))
        self.peak = float(peak)
        self.warmup_init = float(warmup_init)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)
        self.kind = kind

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = max(self.warmup_steps, 1)
        ramp = self.warmup_init + (self.peak - self.warmup_init) * step / warmup
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            after = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        else:
            after = tf.constant(self.peak, tf.float32)
        return tf.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        return {"peak": self.peak, "warmup_init": self.warmup_init, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "kind": self.kind}


def build_schedule(train_config, global_batch, steps_per_epoch, total_steps):
    """The schedule of the `train:` section for this global batch and run length."""
    warmup_steps = int(round(train_config.lr_warmup_epoch * steps_per_epoch))
    # A warm-up longer than the run would never reach the peak rate.
    warmup_steps = min(warmup_steps, max(total_steps // 2, 0))
    return WarmupSchedule(scale_for_batch(train_config.learning_rate, global_batch),
                          scale_for_batch(train_config.lr_warmup_init, global_batch),
                          warmup_steps, total_steps, train_config.lr_schedule)
