"""One distributed optimizer step: forward, loss, gradients, the official clipping, the update."""

import keras
import tensorflow as tf

from efficientdet_tf import losses

# The loss parts a step returns (summed over replicas), in the order the train loop records them.
LOSS_KEYS = ("cls_loss", "box_loss", "det_loss", "reg_loss", "total_loss")


def build_training_model(config, precision="float32"):
    """The network with synchronized batch norm, under the precision policy (restored afterwards)."""
    from efficientdet_tf.model.efficientdet import build_model, set_batch_norm_synchronized

    previous = keras.config.dtype_policy()
    if precision != "float32":
        keras.config.set_dtype_policy("mixed_" + precision)
    try:
        model = build_model(config)
    finally:
        keras.config.set_dtype_policy(previous)
    # Batch statistics over the global batch: the loss does not depend on the replica count.
    set_batch_norm_synchronized(model, True)
    return model


def clip_gradients(grads, clip_norm):
    """The official recipe: each gradient clipped to norm `clip_norm`, then all of them by global norm.

    Both the TF1 trainer that made the paper's checkpoints and the TF2 trainer clip this way; a
    global-norm clip alone moves most variables ~11% less on the first step of D0 and lets a
    single large gradient (the stem's) dominate. A non-finite gradient gives NaN everywhere (so a
    loss scaler still sees the overflow and skips the step).
    """
    per_tensor = [tf.clip_by_norm(g, clip_norm) for g in grads]
    clipped, _ = tf.clip_by_global_norm(per_tensor, clip_norm)
    return clipped


CLIP_SCOPES = ("replica", "global")


def _micro_batches(tensor, count):
    """[B, ...] -> [count, B / count, ...], keeping the static shape of the other axes."""
    rest = [d if d is not None else -1 for d in tensor.shape[1:].as_list()]
    if rest.count(-1):
        return tf.reshape(tensor, tf.concat([[count, -1], tf.shape(tensor)[1:]], 0))
    return tf.reshape(tensor, [count, -1] + rest)


def build_train_step(strategy, model, optimizer, trainable, loss_fn, weight_decay, clip_norm=0.0,
                     precision="float32", use_xla=False, clip_scope="replica", accumulation_steps=1,
                     recompute=False):
    """The distributed training step: `step((images, labels), stop=0.0) -> {loss part: value summed over replicas}`.

    Each replica normalises its loss by the positives of the global batch (+1) and carries
    1/replicas of the weight decay, so the replicas' losses and gradients sum to those of the global
    batch on one device. Gradients are clipped (`clip_gradients`, when `clip_norm` > 0) and summed
    over replicas here, then applied by the optimizer, which must not reduce them again
    (`optimizer.DetectionSGD`). `clip_scope` 'replica' clips each replica's share before the sum,
    as the official trainers do (TF1 before its cross-shard sum, TF2 in its per-replica train_step);
    'global' clips the sum, which does not depend on the replica count. On one replica both are the
    same. Under float16 the clipping sees the unscaled gradients.

    `accumulation_steps` k > 1 splits each replica's batch into k micro-batches that go through the
    network one after another, and sums their gradients before the clipping and the single update:
    the update of the whole batch (the loss is normalised by the whole batch's positives) with the
    activations of one micro-batch in memory. Batch norm normalises each micro-batch by its own
    statistics, as a device holding only that micro-batch would, and updates its moving averages
    once per micro-batch.

    `recompute` runs the forward pass through `recompute.RecomputedForward`: the activations inside
    each backbone block and BiFPN cell are computed again in the backward pass instead of kept.

    `stop` (a float32 scalar, positive when this worker was asked to stop) is summed over every
    replica of every worker in the same all-reduce as the positives, and comes back as the
    output's 'stop': all workers see a request at the same step.
    """
    if int(accumulation_steps) < 1:
        raise ValueError("train.accumulation_steps must be >= 1, got %r" % (accumulation_steps,))
    accumulation_steps = int(accumulation_steps)
    if accumulation_steps > 1:
        # Grappler's arithmetic rewrite turns the gradient sums of the micro-batch loop (inside the
        # trainer's loop of steps) into temporary variables that collide on full-size models
        # (AlreadyExistsError: .../ArithmeticOptimizer/AddOpsRewrite_add_N/tmp_var); the option is
        # process-wide and read when a function is first optimized, so it is set here, before that.
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    if clip_scope not in CLIP_SCOPES:
        raise ValueError("train.clip_gradients_scope must be one of %s, got %r" % (CLIP_SCOPES, clip_scope))
    replicas = strategy.num_replicas_in_sync
    if recompute:
        from efficientdet_tf.train.recompute import RecomputedForward

        forward = RecomputedForward(model, trainable)
    else:
        def forward(images):
            return model(images, training=True)
    float16 = precision == "float16"

    def clip(grads):
        if not clip_norm or clip_norm <= 0:
            return grads
        if not float16:
            return clip_gradients(grads, clip_norm)
        # The loss scale is a power of two: unscaling and rescaling are exact, and the
        # LossScaleOptimizer still gets scaled gradients to check for overflow and unscale.
        scale = tf.cast(optimizer.dynamic_scale, grads[0].dtype)
        clipped = clip_gradients([g / scale for g in grads], clip_norm)
        return [g * scale for g in clipped]

    def gradients(images, labels, normalizer, share):
        """Gradients and loss parts of `images`, with `share` of the weight decay."""
        with tf.GradientTape() as tape:
            class_outputs, box_outputs = forward(images)
            parts = loss_fn(list(class_outputs), list(box_outputs), labels, normalizer=normalizer)
            reg = losses.l2_loss(trainable, weight_decay) * share if weight_decay else tf.constant(0.0)
            total = parts["det_loss"] + reg
            scaled = optimizer.scale_loss(total) if float16 else total
        parts = {key: parts[key] for key in LOSS_KEYS[:3]}
        return tape.gradient(scaled, trainable), dict(parts, reg_loss=reg, total_loss=total)

    def accumulated_gradients(images, labels, normalizer):
        # The loss is linear in each picture's anchors, so the micro-batches' gradients (each with
        # the whole batch's normaliser and 1/k of the decay) sum to the whole batch's.
        images = _micro_batches(images, accumulation_steps)
        labels = {key: _micro_batches(value, accumulation_steps) for key, value in labels.items()}
        grads = [tf.zeros(v.shape, v.dtype) for v in trainable]
        parts = {key: tf.constant(0.0) for key in LOSS_KEYS}
        for i in tf.range(accumulation_steps):
            # One micro-batch at a time: that is the point (memory).
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            micro_grads, micro_parts = gradients(images[i], {key: value[i] for key, value in labels.items()},
                                                 normalizer, 1.0 / (replicas * accumulation_steps))
            grads = [a + tf.cast(g, a.dtype) for a, g in zip(grads, micro_grads)]
            parts = {key: parts[key] + tf.cast(micro_parts[key], tf.float32) for key in LOSS_KEYS}
        return grads, parts

    def replica_step(images, labels, stop):
        context = tf.distribute.get_replica_context()
        # One all-reduce carries the batch's positives and the workers' stop requests.
        local = tf.stack([tf.reduce_sum(labels["num_positives"]), tf.cast(stop, tf.float32)])
        positives, stops = tf.unstack(context.all_reduce(tf.distribute.ReduceOp.SUM, local))
        if accumulation_steps > 1:
            grads, parts = accumulated_gradients(images, labels, positives + 1.0)
        else:
            grads, parts = gradients(images, labels, positives + 1.0, 1.0 / replicas)
        if clip_scope == "replica":
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, clip(grads))
        else:
            grads = clip(context.all_reduce(tf.distribute.ReduceOp.SUM, grads))
        optimizer.apply(grads, trainable)
        # Divided back so that the output's sum over replicas is the number of requests.
        return dict(parts, stop=stops / replicas)

    step_fn = tf.function(replica_step, jit_compile=True) if use_xla else replica_step

    @tf.function
    def train_step(batch, stop=0.0):
        images, labels = batch
        # Only the loss's inputs go in: XLA cannot take the string ids, and the rest is unused.
        labels = {k: v for k, v in labels.items() if k.startswith(("cls_targets_", "box_targets_", "num_positives"))}
        per_replica = strategy.run(step_fn, args=(images, labels, stop))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return train_step


def build_train_loop(strategy, train_step, optimizer):
    """The inner loop of the trainer: `loop(iterator, num_steps, stop)` runs `num_steps` steps of
    `train_step` (from `build_train_step`) on the next batches of a distributed iterator in one
    compiled function, so nothing goes back to the host between two steps.

    Returns `(steps, records, (images, boxes))`: the optimizer's step count after each step (int64
    [num_steps]; it stays put where a float16 loss scaler skipped the batch), per step the learning
    rate it used, the `LOSS_KEYS` values and the summed stop requests (float32 [num_steps, 7]), and
    the first local replica's pictures and boxes of the last batch (for summaries). `stop` is read
    once per call.
    """
    step_fn = train_step.python_function

    @tf.function
    def train_loop(iterator, num_steps, stop):
        steps = tf.TensorArray(tf.int64, size=num_steps)
        records = tf.TensorArray(tf.float32, size=num_steps)
        images, boxes = tf.zeros([0, 0, 0, 3]), tf.zeros([0, 0, 4])
        for i in tf.range(num_steps):
            tf.autograph.experimental.set_loop_options(shape_invariants=[
                (images, tf.TensorShape([None, None, None, 3])), (boxes, tf.TensorShape([None, None, 4]))])
            learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
            batch = next(iterator)
            out = step_fn(batch, stop)
            steps = steps.write(i, tf.cast(optimizer.iterations, tf.int64))
            records = records.write(i, tf.stack([learning_rate] + [tf.cast(out[k], tf.float32) for k in LOSS_KEYS]
                                                + [tf.cast(out["stop"], tf.float32)]))
            images = tf.cast(strategy.experimental_local_results(batch[0])[0], tf.float32)
            boxes = tf.cast(strategy.experimental_local_results(batch[1]["boxes"])[0], tf.float32)
        return steps.stack(), records.stack(), (images, boxes)

    return train_loop
