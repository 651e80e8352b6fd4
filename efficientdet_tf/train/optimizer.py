"""SGD with momentum, EMA of the weights and (float16) dynamic loss scaling, for the custom loop.

The trainer sums the replicas' gradients itself and clips them (`train_step.clip_gradients`, which
must see the global gradient, as on one device) before it hands them to the optimizer.
"""

import keras
from keras import ops


class DetectionSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (momentum, `use_ema`) for the EfficientDet loop.

    Two differences from the stock optimizer, both for the trainer:
    - gradients arrive already summed over the replicas, so this optimizer does not all-reduce
      them again;
    - the EMA decay warms up as in the official implementation's `ExponentialMovingAverage(decay,
      num_updates=step)`: decay = min(ema_momentum, (1 + step) / (10 + step)), so the averaged
      weights of a short run (fine-tuning, tests) follow training instead of staying at the start.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")
        # The first update copies the weights (the averages start at zero), as the official
        # shadow variables start from the weights' values.
        decay = ops.where(step > 0, ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step)), 0.0)
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                rate = ops.cast(decay, var.dtype)
                average.assign(rate * average + (1.0 - rate) * var)


def build_optimizer(train_config, learning_rate, precision):
    """The optimizer of the `train:` section; float16 wraps it in a dynamic `LossScaleOptimizer`.

    Args:
      train_config: the config's `train` section (momentum, moving_average_decay); gradient
        clipping is the train step's (`train_step.clip_gradients`).
      learning_rate: a float or a `LearningRateSchedule` (already scaled to the global batch).
      precision: 'float32', 'float16' or 'bfloat16' (bfloat16 needs no loss scaling).
    """
    decay = train_config.moving_average_decay
    sgd = DetectionSGD(learning_rate=learning_rate, momentum=train_config.momentum,
                       use_ema=decay > 0, ema_momentum=decay if decay > 0 else 0.99)
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
    return [(var, avg) for var, avg in zip(sgd._trainable_variables, sgd._model_variables_moving_average)
            if avg is not None]
