"""SGD with momentum, EMA of the weights and (float16) dynamic loss scaling, for the custom loop.

The trainer sums the replicas' gradients itself and clips them (`train_step.clip_gradients`, which
must see the global gradient, as on one device) before it hands them to the optimizer.
"""

import keras
from keras import ops


class DetectionSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (momentum, `use_ema`) for the EfficientDet loop.

    Differences from the stock optimizer, all for the trainer:
    - gradients arrive already summed over the replicas, so this optimizer does not all-reduce
      them again;
    - the EMA decay warms up as in the official implementation's `ExponentialMovingAverage(decay,
      num_updates=step)`: decay = min(ema_momentum, (1 + step) / (10 + step)), so the averaged
      weights of a short run (fine-tuning, tests) follow training instead of staying at the start;
    - `averaged_statistics` (batch-norm moving means and variances) get the same EMA as the
      weights, as the official TF1 trainer that made the published checkpoints did
      (`train.average_batch_norm`).
    """

    def __init__(self, *args, averaged_statistics=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._averaged_statistics = list(averaged_statistics or [])
        self._statistics_moving_average = []

    def build(self, variables):
        super().build(variables)
        if self.use_ema and self._averaged_statistics:
            self._statistics_moving_average = [self.add_variable_from_reference(v, name="average")
                                               for v in self._averaged_statistics]

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")
        # The first update copies the weights (the averages start at zero), as the official
        # shadow variables start from the weights' values.
        decay = ops.where(step > 0, ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step)), 0.0)
        pairs = list(zip(trainable_variables, self._model_variables_moving_average))
        pairs += list(zip(self._averaged_statistics, self._statistics_moving_average))
        for var, average in pairs:
            if average is not None:
                rate = ops.cast(decay, var.dtype)
                average.assign(rate * average + (1.0 - rate) * var)


def build_optimizer(train_config, learning_rate, precision, statistics=None):
    """The optimizer of the `train:` section; float16 wraps it in a dynamic `LossScaleOptimizer`.

    Args:
      train_config: the config's `train` section (momentum, moving_average_decay,
        average_batch_norm); gradient clipping is the train step's (`train_step.clip_gradients`).
      learning_rate: a float or a `LearningRateSchedule` (already scaled to the global batch).
      precision: 'float32', 'float16' or 'bfloat16' (bfloat16 needs no loss scaling).
      statistics: the model's batch-norm moving statistics, averaged with the weights when
        `train_config.average_batch_norm` is on (and the EMA is).
    """
    decay = train_config.moving_average_decay
    sgd = DetectionSGD(learning_rate=learning_rate, momentum=train_config.momentum,
                       use_ema=decay > 0, ema_momentum=decay if decay > 0 else 0.99,
                       averaged_statistics=statistics if train_config.average_batch_norm else None)
    if precision == "float16":
        return keras.optimizers.LossScaleOptimizer(sgd)
    return sgd


def inner_optimizer(optimizer):
    """The SGD inside a `LossScaleOptimizer` (or the optimizer itself)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def ema_variables(optimizer):
    """[(model variable, its EMA variable)] of a built optimizer; empty without EMA."""
    sgd = inner_optimizer(optimizer)
    if not sgd.use_ema or not sgd.built:
        return []
    pairs = list(zip(sgd._trainable_variables, sgd._model_variables_moving_average))
    pairs += list(zip(sgd._averaged_statistics, sgd._statistics_moving_average))
    return [(var, avg) for var, avg in pairs if avg is not None]
