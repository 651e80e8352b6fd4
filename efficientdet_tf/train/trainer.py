"""The training loop: one custom tf.distribute loop for every strategy (no keras fit)."""

import math
import os
import re
import sys
import time

import keras
import tensorflow as tf

from efficientdet_tf import factory, losses
from efficientdet_tf.checkpoints.errors import CheckpointError
from efficientdet_tf.config import Config, ConfigError, get_config
from efficientdet_tf.train import checkpointing, schedules, strategy as strategy_lib
from efficientdet_tf.train.errors import NonFiniteLossError, TrainError
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.summaries import SummaryWriter

PRECISIONS = {"": "float32", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
LOSS_KEYS = ("cls_loss", "box_loss", "det_loss", "reg_loss", "total_loss")


def _precision(value):
    if value is True:
        return "float16"
    if value is False or value is None:
        return "float32"
    if value not in PRECISIONS:
        raise TrainError("train.mixed_precision must be '', float16 or bfloat16; got %r" % value)
    return PRECISIONS[value]


def _count_tfrecords(files):
    """Records in the TFRecord files (reads them once)."""
    dataset = tf.data.TFRecordDataset(files)
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def _first_record(files):
    for _ in tf.data.TFRecordDataset(files).take(1):
        return True
    return False


def _input_size(pipeline, need_count):
    """Number of training examples (None when not needed and not cheap); raises on no/empty input."""
    if pipeline.tfds_name:
        try:
            import tensorflow_datasets as tfds
        except ImportError:
            raise TrainError("--tfds_name needs tensorflow-datasets (pip install tensorflow-datasets)") from None
        try:
            builder = tfds.builder(pipeline.tfds_name, data_dir=pipeline.config.data.tfds_data_dir or None)
            count = builder.info.splits[pipeline.tfds_split].num_examples
        except Exception as e:  # unknown name, split or missing data: one line
            raise TrainError("TFDS source %s[%s] is not usable: %s" % (
                pipeline.tfds_name, pipeline.tfds_split, (str(e).splitlines() or [type(e).__name__])[0])) from None
        if not count:
            raise TrainError("TFDS source %s[%s] holds no examples" % (pipeline.tfds_name, pipeline.tfds_split))
        return count
    try:
        files, _ = pipeline.list_files()
    except ValueError as e:
        raise TrainError("%s (--train_file_pattern)" % e) from None
    try:
        if need_count:
            count = _count_tfrecords(files)
        else:
            count = None if _first_record(files) else 0
    except tf.errors.OpError as e:
        raise TrainError("cannot read the training TFRecords %s: %s" % (
            pipeline.file_pattern, str(e.message).splitlines()[0])) from None
    if count == 0:
        raise TrainError("the training TFRecords hold no records: %s (%d file(s))" % (
            pipeline.file_pattern, len(files)))
    return count


def _resolve_config(config, batch_size, seed, deterministic, train_file_pattern, tfds_name):
    if not isinstance(config, Config):
        config = get_config(config)
    overrides = {}
    if batch_size:
        overrides["train.batch_size"] = int(batch_size)
    if deterministic:
        overrides["data.deterministic"] = True
    if seed is not None:
        overrides["data.seed"] = int(seed)
    if train_file_pattern:
        overrides["data.training_file_pattern"] = train_file_pattern
    if tfds_name:
        overrides["data.tfds_name"] = tfds_name
    return config.replace(overrides) if overrides else config


def _freeze_filter(model, pattern):
    """(trainable variables, frozen official names) for a regex over official names / Keras paths."""
    from efficientdet_tf.checkpoints.official import model_variables

    variables = model.trainable_variables
    if not pattern:
        return variables, []
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise TrainError("--freeze is not a valid regular expression (%s): %r" % (e, pattern)) from None
    names = {id(v): name for name, v in model_variables(model).items()}
    keep, frozen = [], []
    for v in variables:
        name = names.get(id(v), v.path)
        if regex.search(name) or regex.search(v.path):
            frozen.append(name)
        else:
            keep.append(v)
    if not frozen:
        raise TrainError("--freeze=%r matches no variable (names look like "
                         "'efficientnet-b0/stem/conv2d/kernel' or 'fpn_cells/cell_0/...')" % pattern)
    if not keep:
        raise TrainError("--freeze=%r freezes every variable: nothing left to train" % pattern)
    return keep, frozen


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


def _data_error(error):
    """The input pipeline's own message (e.g. which record is bad) out of a TF error."""
    text = str(getattr(error, "message", error))
    match = re.search(r"assertion failed: \[(.*?)\]", text)
    return match.group(1) if match else text.strip().splitlines()[0]


def _format_losses(values):
    return ", ".join("%s %.6g" % (k, values[k]) for k in LOSS_KEYS if k in values)


def build_train_step(strategy, model, optimizer, trainable, loss_fn, weight_decay, precision="float32",
                     use_xla=False):
    """The distributed training step: `step((images, labels)) -> {loss part: value summed over replicas}`.

    Each replica normalises its loss by the positives of the global batch (+1) and carries
    1/replicas of the weight decay, so the replicas' losses and gradients sum to those of the global
    batch on one device. Gradients are summed over replicas here, then clipped by global norm and
    applied by the optimizer (which must not reduce them again: `optimizer.DetectionSGD`).
    """
    replicas = strategy.num_replicas_in_sync
    float16 = precision == "float16"

    def replica_step(images, labels):
        context = tf.distribute.get_replica_context()
        positives = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(labels["num_positives"]))
        with tf.GradientTape() as tape:
            class_outputs, box_outputs = model(images, training=True)
            parts = loss_fn(list(class_outputs), list(box_outputs), labels, normalizer=positives + 1.0)
            reg = losses.l2_loss(trainable, weight_decay) / replicas if weight_decay else tf.constant(0.0)
            total = parts["det_loss"] + reg
            scaled = optimizer.scale_loss(total) if float16 else total
        grads = tape.gradient(scaled, trainable)
        # Clipping by global norm needs the global gradient: sum over replicas here, not in the optimizer.
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        optimizer.apply(grads, trainable)
        return dict(parts, reg_loss=reg, total_loss=total)

    step_fn = tf.function(replica_step, jit_compile=True) if use_xla else replica_step

    @tf.function
    def train_step(batch):
        images, labels = batch
        # Only the loss's inputs go in: XLA cannot take the string ids, and the rest is unused.
        labels = {k: v for k, v in labels.items() if k.startswith(("cls_targets_", "box_targets_", "num_positives"))}
        per_replica = strategy.run(step_fn, args=(images, labels))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return train_step


def train(config, model_dir, *, train_file_pattern=None, tfds_name=None, train_steps=None, num_epochs=None,
          batch_size=None, save_every=1000, keep_checkpoints=5, strategy=None, tpu=None, pretrained_ckpt=None,
          freeze=None, seed=None, deterministic=False, use_xla=False, eval_fn=None, eval_every=0,
          progress=True, summary_every=100):
    """Trains (or resumes training) an EfficientDet; returns a summary of the run.

    Rerunning with the same `model_dir` continues from its newest `ckpt-<step>`: same step,
    optimizer and EMA state, learning-rate position and data position.

    Args:
      config: a `Config`, a model name or a yaml path (the `train:` and `data:` sections apply).
      model_dir: where `ckpt-<step>` files, `config.yaml`, TensorBoard events (`train/`) and `best/` go.
      train_file_pattern: TFRecord glob(s), comma-separated (default: data.training_file_pattern).
      tfds_name: a TFDS source instead of TFRecords (e.g. 'coco/2017').
      train_steps: optimizer steps to reach in total (step = optimizer iterations); or
      num_epochs: epochs (default train.num_epochs) of train.steps_per_epoch steps (0: records // batch).
      batch_size: global batch size (default train.batch_size); learning rates scale with it / 64.
      save_every: steps between checkpoints (one more at the end); keep_checkpoints: how many stay.
      strategy: a tf.distribute.Strategy or '', 'one_device', 'mirrored', 'multi_worker' (TF_CONFIG;
        worker 0 is the chief and only it writes into model_dir), 'tpu' (with `tpu`: name/address).
      pretrained_ckpt: checkpoint to start from when model_dir has none: official TF1, backbone-only
        EfficientNet, one of ours (model dir or prefix) or a model name (downloaded). With another
        class count everything but the class predictor loads; the result lists what was skipped.
      freeze: regex over variable names (official, e.g. '^efficientnet-' for the backbone, or Keras
        paths); matching variables are not trained.
      seed: seeds weights initialisation and the input order/augmentation.
      deterministic: fixed input order and augmentation, deterministic ops; a killed and resumed
        run then ends with the weights of an uninterrupted one, up to the rounding differences
        TensorFlow's CPU kernels show between processes on some machines.
      use_xla: XLA-compile the per-replica step.
      eval_fn: optional callable `eval_fn(model_dir_or_model, step) -> dict` with at least 'AP';
        called every `eval_every` steps (chief only) after a checkpoint of that step is written,
        with `model_dir` (load it with `checkpoints.loading.load_weights`, which takes the EMA
        weights). The checkpoint with the best 'AP' is copied to `<model_dir>/best/` (+ metrics.json).
      eval_every: steps between evaluations (0: never).
      progress: show a progress bar (chief only).
      summary_every: steps between TensorBoard scalar summaries.

    Returns:
      dict: 'step' (final), 'losses' (last step's cls_loss, box_loss, det_loss, reg_loss,
      total_loss), 'learning_rate', 'pictures_per_second' (steady state, this run), 'checkpoint'
      (newest prefix), 'model_dir', 'resumed_from' (prefix or None), 'pretrained' (load report or
      None), 'frozen' (names), 'evaluations' ([(step, metrics)]), 'best' (dict or None),
      'history' ([(step, det_loss, total_loss)] of every step of this run).

    Raises:
      TrainError: bad input, found before any training step (one line); NonFiniteLossError when the
        loss turns NaN/Inf (step, loss parts, learning rate, last good checkpoint in the message).
    """
    from tensorflow.python.framework import config as tf_config

    # Op determinism is process-wide: switch it off again afterwards for API callers.
    was_deterministic = tf_config.is_op_determinism_enabled()
    if deterministic and not use_xla:
        tf.config.experimental.enable_op_determinism()
    try:
        return _train(config, model_dir, train_file_pattern=train_file_pattern, tfds_name=tfds_name,
                      train_steps=train_steps, num_epochs=num_epochs, batch_size=batch_size,
                      save_every=save_every, keep_checkpoints=keep_checkpoints, strategy=strategy, tpu=tpu,
                      pretrained_ckpt=pretrained_ckpt, freeze=freeze, seed=seed, deterministic=deterministic,
                      use_xla=use_xla, eval_fn=eval_fn, eval_every=eval_every, progress=progress,
                      summary_every=summary_every)
    finally:
        if deterministic and not was_deterministic:
            tf_config.disable_op_determinism()


def _train(config, model_dir, *, train_file_pattern=None, tfds_name=None, train_steps=None, num_epochs=None,
          batch_size=None, save_every=1000, keep_checkpoints=5, strategy=None, tpu=None, pretrained_ckpt=None,
          freeze=None, seed=None, deterministic=False, use_xla=False, eval_fn=None, eval_every=0,
          progress=True, summary_every=100):
    """The body of `train` (same arguments)."""
    # A multi-worker strategy must exist before TensorFlow runs anything else in the process.
    strategy = strategy_lib.get_strategy(strategy or "", tpu)
    try:
        config = _resolve_config(config, batch_size, seed, deterministic, train_file_pattern, tfds_name)
    except ConfigError as e:
        raise TrainError(str(e)) from None
    chief = strategy_lib.is_chief(strategy)
    tc = config.train
    precision = _precision(tc.mixed_precision)
    global_batch = int(tc.batch_size)
    replicas = strategy.num_replicas_in_sync
    if global_batch < 1 or global_batch % replicas:
        raise TrainError("the global batch size %d is not divisible by the %d replicas of the strategy"
                         % (global_batch, replicas))
    if train_steps is not None and train_steps < 1:
        raise TrainError("train_steps must be >= 1, got %d" % train_steps)
    if save_every < 1:
        raise TrainError("save_every must be >= 1, got %d" % save_every)
    if deterministic and use_xla:
        raise TrainError("--deterministic and --use_xla do not go together: XLA has no deterministic "
                         "max-pool gradient")
    if eval_every and eval_fn is None:
        raise TrainError("eval_every needs an eval_fn")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))

    from efficientdet_tf.data.pipeline import InputPipeline

    try:
        pipeline = InputPipeline(config.data.training_file_pattern or None, config, is_training=True,
                                 tfds_name=config.data.tfds_name or None, batch_size=global_batch)
    except ValueError as e:
        raise TrainError("%s: give --train_file_pattern or --tfds_name" % e) from None
    steps_per_epoch = int(tc.steps_per_epoch)
    num_examples = _input_size(pipeline, need_count=not steps_per_epoch)
    if not steps_per_epoch:
        steps_per_epoch = num_examples // global_batch
        if steps_per_epoch < 1:
            raise TrainError("the training set holds %d pictures, fewer than one global batch of %d"
                             % (num_examples, global_batch))
    total_steps = int(train_steps) if train_steps else int(round((num_epochs or tc.num_epochs) * steps_per_epoch))
    checkpointing.check_model_dir(model_dir, config)

    with strategy.scope():
        model = build_training_model(config, precision)
        trainable, frozen = _freeze_filter(model, freeze)
        pretrained = None
        if pretrained_ckpt and not tf.train.latest_checkpoint(model_dir):
            from efficientdet_tf.checkpoints.loading import load_pretrained

            # Before the optimizer exists, so that its EMA starts from the pretrained weights.
            try:
                pretrained = load_pretrained(model, pretrained_ckpt)
            except CheckpointError as e:
                raise TrainError("--pretrained_ckpt: %s" % e) from None
        schedule = schedules.build_schedule(tc, global_batch, steps_per_epoch, total_steps)
        optimizer = build_optimizer(tc, schedule, precision)
        optimizer.build(trainable)
        data_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="consumed_batches",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        ckpt = checkpointing.Checkpointer(model_dir, model, optimizer, data_position, keep_checkpoints,
                                          chief=chief, worker=strategy_lib.worker_id(strategy))
        resumed_from = ckpt.restore_latest()
    if chief:
        checkpointing.write_config(model_dir, config)
    if pretrained and chief:
        skipped = pretrained["skipped"]
        print("pretrained: loaded %d variables from %s; skipped %d%s" % (
            pretrained["loaded"], pretrained["prefix"], len(skipped),
            (": " + ", ".join(skipped)) if skipped and len(skipped) <= 8 else ""), flush=True)
    if resumed_from and chief:
        print("resuming from %s (step %d)" % (resumed_from, int(optimizer.iterations)), flush=True)

    loss_fn = factory.build_loss_fn(config)
    weight_decay = float(config.loss.weight_decay)
    consumed = int(data_position.numpy())

    def dataset_fn(input_context):
        dataset = pipeline(input_context)
        # Resume where the last checkpoint stopped reading: exact under --deterministic.
        # (Random order otherwise: skipping would only cost time.)
        skip = consumed * input_context.num_replicas_in_sync // input_context.num_input_pipelines
        return dataset.skip(skip) if skip and config.data.deterministic else dataset

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    iterator = iter(dataset)
    train_step = build_train_step(strategy, model, optimizer, trainable, loss_fn, weight_decay, precision,
                                  use_xla)

    step = int(optimizer.iterations.numpy())
    last_good = resumed_from
    writer = SummaryWriter(os.path.join(model_dir, "train"), config, enabled=chief)
    # Off a terminal (CI logs, nohup) the bar prints a line per update: every 15 s is enough there.
    bar = keras.utils.Progbar(total_steps, stateful_metrics=list(LOSS_KEYS) + ["lr", "pics/s"], unit_name="step",
                              interval=0.05 if sys.stdout.isatty() else 15.0) if progress and chief else None
    evaluations, best, history = [], None, []
    saved_step = step if resumed_from else None
    values, rate_window, steady_times = {}, [], []
    lr = float(optimizer.learning_rate.numpy())

    def save(at_step):
        nonlocal last_good, saved_step
        data_position.assign(consumed)
        path = ckpt.save(at_step)
        saved_step = at_step
        if chief:
            last_good = path
        return path

    first_step = True
    while step < total_steps:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            raise TrainError("the training input ended at step %d" % step) from None
        except tf.errors.InvalidArgumentError as e:
            raise TrainError("bad training data: %s" % _data_error(e)) from None
        out = train_step(batch)
        values = {k: float(v.numpy()) for k, v in out.items()}
        consumed += 1
        lr_used = lr
        step = int(optimizer.iterations.numpy())
        lr = float(optimizer.learning_rate.numpy())
        history.append((step, values["det_loss"], values["total_loss"]))
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLossError(
                "loss is not finite at step %d: %s, learning rate %.6g; last good checkpoint: %s "
                "(nothing after it was saved). Lower train.learning_rate, check the data with "
                "inspect_tfrecord, or keep train.clip_gradients_norm > 0." % (
                    step, _format_losses(values), lr_used, last_good or "none"))
        elapsed = time.perf_counter() - start
        if not first_step:  # the first step of a run traces the graph
            steady_times.append(elapsed)
            rate_window = (rate_window + [elapsed])[-20:]
        first_step = False
        pictures = global_batch * len(rate_window) / sum(rate_window) if rate_window else 0.0
        checkpointing.kill_point("step", step)
        if bar is not None:
            bar.update(step, values=[(k, values[k]) for k in ("cls_loss", "box_loss", "total_loss")]
                       + [("lr", lr_used), ("pics/s", pictures)])
        if chief and (step % summary_every == 0 or step == total_steps or step == 1):
            writer.scalars(step, dict(values, learning_rate=lr_used, pictures_per_second=pictures))
        if chief and step == 1 or (chief and step % (summary_every * 10) == 0):
            images, labels = batch
            local_images = strategy.experimental_local_results(images)[0]
            local_labels = {k: strategy.experimental_local_results(v)[0] for k, v in labels.items()
                            if k == "boxes"}
            writer.pictures(step, local_images.numpy(), {"boxes": local_labels["boxes"].numpy()})
        if step % save_every == 0 or step == total_steps:
            save(step)
        if eval_every and step % eval_every == 0:
            if saved_step != step:
                save(step)
            if chief:
                metrics = dict(eval_fn(model_dir, step))
                evaluations.append((step, metrics))
                if "AP" not in metrics:
                    raise TrainError("eval_fn returned no 'AP' (keys: %s)" % ", ".join(sorted(metrics)))
                writer.scalars(step, {"eval/" + k: v for k, v in metrics.items() if isinstance(v, (int, float))})
                if best is None or metrics["AP"] > best["AP"]:
                    path = ckpt.save_best(last_good, step, metrics)
                    best = {"step": step, "AP": float(metrics["AP"]), "checkpoint": path}
    if saved_step != step and step > 0:
        save(step)
    writer.flush()
    rate = global_batch * len(steady_times) / sum(steady_times) if steady_times else float("nan")
    return {"step": step, "losses": values, "learning_rate": lr, "pictures_per_second": rate,
            "checkpoint": last_good, "model_dir": model_dir, "resumed_from": resumed_from,
            "pretrained": pretrained, "frozen": frozen, "evaluations": evaluations, "best": best,
            "history": history}
