"""The training loop: one custom tf.distribute loop for every strategy (no keras fit)."""

import dataclasses
import math
import os
import re
import sys
import time

import keras
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.checkpoints.errors import CheckpointError
from efficientdet_tf.config import Config, ConfigError, get_config
from efficientdet_tf.train import actions as actions_lib, checkpointing, schedules, strategy as strategy_lib
from efficientdet_tf.train.errors import NonFiniteLossError, TrainError
from efficientdet_tf.train.optimizer import build_optimizer
from efficientdet_tf.train.preemption import PreemptionWatch
from efficientdet_tf.train.summaries import SummaryWriter
from efficientdet_tf.train.train_step import LOSS_KEYS, build_train_loop, build_train_step, build_training_model


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


def _check_recompute(model, trainable, freeze):
    """train.recompute must have a segment to recompute: one whose gradients the step needs."""
    from efficientdet_tf.train.recompute import RecomputedForward

    try:
        segments = RecomputedForward(model, trainable).segments
    except ValueError as e:
        raise TrainError(str(e)) from None
    if not segments:
        raise TrainError("train.recompute=true has nothing to recompute: --freeze=%r leaves no backbone block or "
                         "BiFPN cell that needs gradients (frozen parts keep no activations anyway); drop "
                         "train.recompute" % freeze)


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


def _batch_norm_statistics(model):
    """The moving means and variances of every batch norm of the model."""
    return [v for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            for v in (layer.moving_mean, layer.moving_variance)]


def _data_error(error):
    """The input pipeline's own message (e.g. which record is bad) out of a TF error."""
    text = str(getattr(error, "message", error))
    match = re.search(r"assertion failed: \[(.*?)\]", text)
    return match.group(1) if match else text.strip().splitlines()[0]


def _is_data_error(error):
    """Whether an InvalidArgumentError came from the input (a record the pipeline refused)."""
    text = str(getattr(error, "message", error))
    return "assertion failed" in text or "IteratorGetNext" in text or "DecodeImage" in text


def _format_losses(values):
    return ", ".join("%s %.6g" % (k, values[k]) for k in LOSS_KEYS if k in values)


def train(config, model_dir, **options):
    """Trains (or resumes training) an EfficientDet; returns a summary of the run.

    Rerunning with the same `model_dir` continues from its newest `ckpt-<step>`: same step,
    optimizer and EMA state, learning-rate position and data position.

    Args:
      config: a `Config`, a model name or a yaml path (the `train:` and `data:` sections apply).
      model_dir: where `ckpt-<step>` files, `config.yaml`, TensorBoard events (`train/`) and `best/` go.
      **options: the run settings, the fields of `RunOptions` (train_steps, save_every, strategy,
        seed, deterministic, eval_fn ...; each documented there).

    Returns:
      dict: 'step' (final), 'losses' (last step's cls_loss, box_loss, det_loss, reg_loss,
      total_loss), 'learning_rate', 'pictures_per_second' (steady state, this run), 'checkpoint'
      (newest prefix), 'model_dir', 'resumed_from' (prefix or None), 'pretrained' (load report or
      None), 'frozen' (names), 'evaluations' ([(step, metrics)]), 'best' (dict or None),
      'history' ([(step, det_loss, total_loss)] of every step of this run), 'preempted' (True when
      a SIGTERM stopped the run: every worker saved the checkpoint of that step; rerun to resume).

    On the CPU, start the process with `MALLOC_TOP_PAD_=268435456` in the environment, or call
    `train.host_memory.keep_freed_memory()` before importing TensorFlow (the command-line tools
    do): the demo's steps ran 2.5x faster on 2 cores. Set later, it does not help.

    Raises:
      TrainError: bad input, found before any training step (one line); NonFiniteLossError when the
        loss turns NaN/Inf (step, loss parts, learning rate, last good checkpoint in the message).
      TypeError: an option `RunOptions` does not have.
    """
    from tensorflow.python.framework import config as tf_config

    known = {field.name for field in dataclasses.fields(RunOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError("train() got unexpected option(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(known))))
    # Op determinism is process-wide: switch it off again afterwards for API callers.
    was_deterministic = tf_config.is_op_determinism_enabled()
    run = None
    try:
        run = TrainingRun(config, model_dir, RunOptions(**options))
        run.set_up()
        run.restore()
        run.run_steps()
        return run.finish()
    finally:
        if run is not None and run.preemption is not None:
            run.preemption.close()
        if not was_deterministic and tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()


@dataclasses.dataclass
class RunOptions:
    """The settings of one training run besides the config and model_dir (the options of `train`).

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
      deterministic: sets `data.deterministic` (the one switch: fixed input order and augmentation,
        each worker its own, and deterministic ops);
        a killed and resumed run then ends with the weights of an uninterrupted one, up to the
        rounding differences TensorFlow's CPU kernels show between processes on some machines.
        Without it (even with `seed`) each restart draws a fresh input order.
      use_xla: XLA-compile the per-replica step.
      eval_fn: optional callable `eval_fn(model_dir_or_model, step) -> dict` with at least 'AP';
        called every `eval_every` steps (chief only) after a checkpoint of that step is written,
        with `model_dir` (load it with `checkpoints.loading.load_weights`, which takes the EMA
        weights). The checkpoint with the best 'AP' is copied to `<model_dir>/best/` (+ metrics.json).
      eval_every: steps between evaluations (0: never).
      progress: show a progress bar (chief only).
      summary_every: steps between TensorBoard scalar summaries.
      steps_per_loop: optimizer steps per inner loop (one compiled call; the losses come back to the
        host once per loop, the progress bar and the stop request are updated once per loop). The
        actions (save, evaluate, summaries, your own) still run at exactly their steps: an inner
        loop ends early to reach them.
      actions: extra `train.actions.Action` objects, run after the built-in ones (progress,
        summaries, save, evaluate, preemption) at the steps they ask for.
      collective_timeout: seconds a worker of a multi-worker run may stop answering (heartbeats of
        TensorFlow's coordination service; 0: its default) before the others stop with a
        TrainError that names it and the checkpoint to resume from.
    """

    train_file_pattern: str = None
    tfds_name: str = None
    train_steps: int = None
    num_epochs: float = None
    batch_size: int = None
    save_every: int = 1000
    keep_checkpoints: int = 5
    strategy: object = None
    tpu: str = None
    collective_timeout: float = strategy_lib.DEFAULT_COLLECTIVE_TIMEOUT
    pretrained_ckpt: str = None
    freeze: str = None
    seed: int = None
    deterministic: bool = False
    use_xla: bool = False
    eval_fn: object = None
    eval_every: int = 0
    progress: bool = True
    summary_every: int = 100
    steps_per_loop: int = 1
    actions: tuple = ()


class TrainingRun:
    """One training run, phase by phase: `set_up`, `restore`, `run_steps` (inner loops of steps,
    and between them the `actions`, which call `save`, `evaluate`, `stop_for_preemption`), `finish`.

    The state that a checkpoint holds, and so that a resumed run continues from, is what
    `set_up` builds into `self.checkpointer`: the model's variables (weights, batch-norm
    statistics and the drop-connect seed generators' states), the optimizer (momentum, EMA, loss
    scale, iterations = step, hence the learning-rate position) and the data position (batches
    consumed). Under `deterministic` the input is a fixed function of the seed and the position,
    so a resumed run repeats the uninterrupted one; without it, each restart draws a fresh input
    order. The best evaluation so far is read back from `<model_dir>/best/metrics.json`.
    """

    def __init__(self, config, model_dir, options):
        self.config = config
        self.model_dir = model_dir
        self.options = options
        self.evaluations = []
        self.history = []
        self.values = {}
        self.best = None
        self.resumed_from = None
        self.last_good = None
        self.saved_step = None
        self.steady = []  # (steps, seconds) of every inner loop after the first
        self.traced = False
        self.stop_requests = 0.0
        self.pictures_per_second = 0.0
        self.learning_rate = self.learning_rate_used = float("nan")
        self.last_batch = None
        self.preempted = False
        self.preemption = None

    # ---- set up --------------------------------------------------------------------------------

    def set_up(self):
        """Strategy, config, input, model, optimizer and checkpointer; every check before a step."""
        opts = self.options
        # A multi-worker strategy must exist before TensorFlow runs anything else in the process.
        self.strategy = strategy_lib.get_strategy(opts.strategy or "", opts.tpu, opts.collective_timeout)
        try:
            self.config = _resolve_config(self.config, opts.batch_size, opts.seed, opts.deterministic,
                                          opts.train_file_pattern, opts.tfds_name)
        except ConfigError as e:
            raise TrainError(str(e)) from None
        self.chief = strategy_lib.is_chief(self.strategy)
        tc = self.config.train
        self.precision = tc.mixed_precision or "float32"
        self.global_batch = int(tc.batch_size)
        replicas = self.strategy.num_replicas_in_sync
        if self.global_batch < 1 or self.global_batch % replicas:
            raise TrainError("the global batch size %d is not divisible by the %d replicas of the strategy"
                             % (self.global_batch, replicas))
        accumulation = int(tc.accumulation_steps)
        if accumulation < 1:
            raise TrainError("train.accumulation_steps must be >= 1, got %d" % accumulation)
        if (self.global_batch // replicas) % accumulation:
            raise TrainError("train.accumulation_steps=%d does not divide the batch of %d pictures per replica "
                             "(train.batch_size %d over %d replicas) into equal micro-batches"
                             % (accumulation, self.global_batch // replicas, self.global_batch, replicas))
        if opts.train_steps is not None and opts.train_steps < 1:
            raise TrainError("train_steps must be >= 1, got %d" % opts.train_steps)
        if opts.save_every < 1:
            raise TrainError("save_every must be >= 1, got %d" % opts.save_every)
        if opts.steps_per_loop < 1:
            raise TrainError("steps_per_loop must be >= 1, got %d" % opts.steps_per_loop)
        if self.config.data.deterministic and opts.use_xla:
            raise TrainError("--deterministic and --use_xla do not go together: XLA has no deterministic "
                             "max-pool gradient")
        if self.config.data.deterministic:
            # One meaning, wherever it is set (option or data.deterministic): fixed input and ops.
            tf.config.experimental.enable_op_determinism()
        if opts.eval_every and opts.eval_fn is None:
            raise TrainError("eval_every needs an eval_fn")
        if opts.seed is not None:
            keras.utils.set_random_seed(int(opts.seed))
        self._set_up_input()
        # A model_dir of another network says more than the label check would.
        checkpointing.check_model_dir(self.model_dir, self.config)
        self._check_labels()
        if self.chief:
            self._check_anchor_coverage()
        checkpointing.check_writable(self.model_dir)
        self._set_up_model()
        checkpointing.check_free_space(self.model_dir, self.model, opts.keep_checkpoints)

    def _check_labels(self):
        """Refuses records whose label map (written beside them by the converters) has ids above
        num_classes; without one, the input pipeline stops at the first such record, naming it."""
        from efficientdet_tf.data.records import records_label_map

        if self.pipeline.tfds_name:
            return
        found = records_label_map(self.pipeline.list_files()[0])
        if found and max(found[1]) > self.config.num_classes:
            raise TrainError("the training records' label map %s has ids up to %d but num_classes is %d: "
                             "set --hparams=num_classes=%d" % (found[0], max(found[1]), self.config.num_classes,
                                                               max(found[1])))

    def _check_anchor_coverage(self, records=500):
        """Warns when fewer than 90% of the boxes in the first `records` training records would get a
        positive anchor at the model's input size, with the grid that covers more."""
        from efficientdet_tf.data.records import read_boxes
        from efficientdet_tf.ops import anchor_coverage

        if self.pipeline.tfds_name:
            return
        pictures, _ = read_boxes(self.pipeline.list_files()[0], limit=records)
        boxes = anchor_coverage.input_boxes(pictures, int(self.config.image_size))
        if not len(boxes):
            return
        now = anchor_coverage.coverage(boxes, self.config)
        if now.share >= anchor_coverage.COVERAGE_WARNING:
            return
        best = anchor_coverage.suggest(boxes, self.config)
        advice = ("--hparams='%s' covers %.0f%%" % (best.override(now), 100 * best.share) if best.share > now.share
                  else "no anchor grid searched covers more; a larger image_size may")
        print("warning: only %.0f%% of the boxes in the first %d training pictures get a positive anchor "
              "(best IoU >= %.2f) at %d px; %s (details: inspect_tfrecord --anchors)"
              % (100 * now.share, len(pictures), now.threshold, int(self.config.image_size), advice), flush=True)

    def _set_up_input(self):
        from efficientdet_tf.data.pipeline import InputPipeline

        opts, tc = self.options, self.config.train
        try:
            self.pipeline = InputPipeline(self.config.data.training_file_pattern or None, self.config,
                                          is_training=True, tfds_name=self.config.data.tfds_name or None,
                                          batch_size=self.global_batch)
        except ValueError as e:
            raise TrainError("%s: give --train_file_pattern or --tfds_name" % e) from None
        steps_per_epoch = int(tc.steps_per_epoch)
        try:
            num_examples = self.pipeline.num_examples(need_count=not steps_per_epoch)
        except ValueError as e:
            raise TrainError(str(e)) from None
        if not steps_per_epoch:
            steps_per_epoch = num_examples // self.global_batch
            if steps_per_epoch < 1:
                raise TrainError("the training set holds %d pictures, fewer than one global batch of %d"
                                 % (num_examples, self.global_batch))
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = (int(opts.train_steps) if opts.train_steps
                            else int(round((opts.num_epochs or tc.num_epochs) * steps_per_epoch)))

    def _set_up_model(self):
        opts, tc = self.options, self.config.train
        with self.strategy.scope():
            self.model = build_training_model(self.config, self.precision)
            self.trainable, self.frozen = _freeze_filter(self.model, opts.freeze)
            if tc.recompute:
                _check_recompute(self.model, self.trainable, opts.freeze)
            self.pretrained = None
            if opts.pretrained_ckpt and not tf.train.latest_checkpoint(self.model_dir):
                from efficientdet_tf.checkpoints.loading import load_pretrained

                # Before the optimizer exists, so that its EMA starts from the pretrained weights.
                try:
                    self.pretrained = load_pretrained(self.model, opts.pretrained_ckpt)
                except CheckpointError as e:
                    raise TrainError("--pretrained_ckpt: %s" % e) from None
            schedule = schedules.build_schedule(tc, self.global_batch, self.steps_per_epoch, self.total_steps)
            self.optimizer = build_optimizer(tc, schedule, self.precision, _batch_norm_statistics(self.model))
            self.optimizer.build(self.trainable)
            self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="consumed_batches",
                                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.checkpointer = checkpointing.Checkpointer(
                self.model_dir, self.model, self.optimizer, self.data_position, opts.keep_checkpoints,
                chief=self.chief, worker=strategy_lib.worker_id(self.strategy))

    # ---- restore -------------------------------------------------------------------------------

    def restore(self):
        """Continues from the newest checkpoint of model_dir, if any; builds the input and the step."""
        with self.strategy.scope():
            self.resumed_from = self.checkpointer.restore_latest()
        self.last_good = self.resumed_from
        self.step = int(self.optimizer.iterations.numpy())
        self.saved_step = self.step if self.resumed_from else None
        self.consumed = int(self.data_position.numpy())
        if self.chief:
            checkpointing.write_config(self.model_dir, self.config)
            self.best = checkpointing.read_best(self.model_dir) if self.resumed_from else None
        if self.pretrained and self.chief:
            skipped = self.pretrained["skipped"]
            print("pretrained: loaded %d variables from %s; skipped %d%s" % (
                self.pretrained["loaded"], self.pretrained["prefix"], len(skipped),
                (": " + ", ".join(skipped)) if skipped and len(skipped) <= 8 else ""), flush=True)
        if self.resumed_from and self.chief:
            print("resuming from %s (step %d)" % (self.resumed_from, self.step), flush=True)
        self._build_input()
        self.preemption = PreemptionWatch()
        train_step = build_train_step(
            self.strategy, self.model, self.optimizer, self.trainable, factory.build_loss_fn(self.config),
            float(self.config.loss.weight_decay), float(self.config.train.clip_gradients_norm),
            self.precision, self.options.use_xla, clip_scope=self.config.train.clip_gradients_scope,
            accumulation_steps=int(self.config.train.accumulation_steps), recompute=self.config.train.recompute)
        self.train_loop = build_train_loop(self.strategy, train_step, self.optimizer)

    def _build_input(self):
        pipeline, consumed = self.pipeline, self.consumed
        reseed = consumed and not self.config.data.deterministic and self.options.seed is not None
        if reseed:
            # The global seed fixes tf.data's random ops: without a new one each restart would
            # replay the start of the same input order. It is given back once the input is built.
            from tensorflow.python.eager import context

            previous_seed = context.global_seed()
            tf.random.set_seed(int(self.options.seed) * 1000003 + consumed)

        def dataset_fn(input_context):
            dataset = pipeline(input_context)
            # Deterministic input is a fixed sequence: resume exactly where the checkpoint stopped
            # reading. (A random order needs no skipping: it would only cost time.)
            skip = consumed * input_context.num_replicas_in_sync // input_context.num_input_pipelines
            return dataset.skip(skip) if skip and self.config.data.deterministic else dataset

        self.iterator = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
        if reseed:
            tf.random.set_seed(previous_seed)

    # ---- run -----------------------------------------------------------------------------------

    def actions(self):
        """The periodic actions of this run, in the order they run after an inner loop: progress,
        summaries, save, evaluate, preemption (chief-only ones on the chief), then `options.actions`."""
        opts = self.options
        built_in = []
        if self.chief and opts.progress:
            built_in.append(actions_lib.ProgressBar(self.total_steps, sys.stdout.isatty()))
        if self.chief:
            built_in.append(actions_lib.WriteSummaries(self.writer, opts.summary_every, self.total_steps))
        built_in.append(actions_lib.SaveCheckpoint(opts.save_every, self.total_steps))
        if opts.eval_every:
            built_in.append(actions_lib.EvaluateAndKeepBest(opts.eval_every))
        built_in.append(actions_lib.StopOnPreemption())
        return built_in + list(opts.actions or ())

    def run_steps(self):
        """Trains up to total_steps in inner loops of up to `steps_per_loop` steps; the actions run
        between two of them, at exactly the steps they ask for."""
        self.writer = SummaryWriter(os.path.join(self.model_dir, "train"), self.config, enabled=self.chief)
        actions = self.actions()
        self.learning_rate = float(self.optimizer.learning_rate.numpy())
        while self.step < self.total_steps and not self.preempted:
            boundaries = [b for b in (a.next_step(self.step) for a in actions) if b is not None]
            num_steps = min([self.options.steps_per_loop] + [b - self.step for b in boundaries + [self.total_steps]])
            previous = self.step
            self._run_loop(num_steps)
            for action in actions:
                if (self.step != previous or action.after_skipped_steps) and action.due(self):
                    action(self)
                if self.preempted:
                    break
        if self.saved_step != self.step and self.step > 0:
            self.save()
        self.writer.flush()

    def _run_loop(self, num_steps):
        """One inner loop of `num_steps` batches; reads back every step's losses at its end."""
        start = time.perf_counter()
        try:  # the distributed iterator and the steps all wait on the other workers
            steps, records, self.last_batch = self.train_loop(
                self.iterator, tf.constant(num_steps, tf.int32), self.preemption.flag())
            steps, records = steps.numpy(), records.numpy()
        except (StopIteration, tf.errors.OutOfRangeError):
            raise TrainError("the training input ended after step %d" % self.step) from None
        except tf.errors.InvalidArgumentError as e:
            if not _is_data_error(e):
                raise
            raise TrainError("bad training data: %s" % _data_error(e)) from None
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.CancelledError, tf.errors.InternalError) as e:
            if not strategy_lib.is_multi_worker(self.strategy):
                raise
            raise TrainError(self._lost_worker_message(e)) from None
        elapsed = time.perf_counter() - start
        self.consumed += num_steps
        previous = self.step
        for step, record in zip(steps.tolist(), records.tolist()):
            values = dict(zip(LOSS_KEYS, record[1:-1]))
            if not all(math.isfinite(v) for v in values.values()):
                self.values = values
                self._raise_not_finite(step if step != previous else previous + 1, record[0])
            if step != previous:  # float16: the loss scaler skipped batches that overflowed
                self.history.append((step, values["det_loss"], values["total_loss"]))
                previous = step
            self.values, self.learning_rate_used = values, record[0]
        self.stop_requests = records[-1][-1]
        self.step = int(steps[-1])
        self.learning_rate = float(self.optimizer.learning_rate.numpy())
        if self.traced:  # the first loop of a run traces the graph
            self.steady.append((num_steps, elapsed))
        self.traced = True
        window = self.steady[-20:]
        self.pictures_per_second = (self.global_batch * sum(n for n, _ in window) / sum(t for _, t in window)
                                    if window else 0.0)

    def stop_for_preemption(self):
        """Every worker saw the stop request at this step: all save it, and the run ends."""
        if self.saved_step != self.step and self.step > 0:
            self.save()
        self.preempted = True
        reason = self.preemption.reason or "another worker was asked to stop"
        print("\npreempted (%s): saved %s at step %d; rerun the same command to resume"
              % (reason, self.last_good or "the checkpoint", self.step), flush=True)

    def _lost_worker_message(self, error):
        """One line for a multi-worker step that failed because a peer stopped answering."""
        message = getattr(error, "message", None) or str(error)
        tasks = sorted(set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", message)))
        mine = strategy_lib.worker_id(self.strategy).rsplit("_", 1)
        lost = [t for t in tasks if [t[0], t[1]] != mine]
        who = ", ".join("%s %s" % t for t in lost) if lost else "another worker"
        return ("lost contact with %s of the cluster after step %d (%s: %s); the last checkpoint is %s: "
                "rerun every worker to resume from it" % (
                    who, self.step, type(error).__name__, message.strip().splitlines()[0][:200],
                    tf.train.latest_checkpoint(self.model_dir) or "none (the run starts over)"))

    def _raise_not_finite(self, step, learning_rate):
        raise NonFiniteLossError(
            "loss is not finite at step %d: %s, learning rate %.6g; last good checkpoint: %s "
            "(nothing after it was saved). Lower train.learning_rate, check the data with "
            "inspect_tfrecord, or keep train.clip_gradients_norm > 0." % (
                step, _format_losses(self.values), learning_rate, self.last_good or "none"))

    def save(self):
        """Writes ckpt-<step> (every worker takes part; the chief's lands in model_dir)."""
        self.data_position.assign(self.consumed)
        path = self.checkpointer.save(self.step)
        self.saved_step = self.step
        if self.chief:
            self.last_good = path
        return path

    def evaluate(self):
        """Runs eval_fn on the checkpoint of this step (chief); keeps the best one in best/."""
        if self.saved_step != self.step:
            self.save()
        if not self.chief:
            return
        metrics = dict(self.options.eval_fn(self.model_dir, self.step))
        self.evaluations.append((self.step, metrics))
        if "AP" not in metrics:
            raise TrainError("eval_fn returned no 'AP' (keys: %s)" % ", ".join(sorted(metrics)))
        self.writer.scalars(self.step, {"eval/" + k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.best is None or metrics["AP"] > self.best["AP"]:
            path = self.checkpointer.save_best(self.last_good, self.step, metrics)
            self.best = {"step": self.step, "AP": float(metrics["AP"]), "checkpoint": path}

    # ---- finish --------------------------------------------------------------------------------

    def finish(self):
        """The summary dict that `train` returns."""
        steps, seconds = sum(n for n, _ in self.steady), sum(t for _, t in self.steady)
        rate = self.global_batch * steps / seconds if seconds else float("nan")
        if self.preemption is not None:
            self.preemption.close()
        return {"step": self.step, "preempted": self.preempted, "losses": self.values, "learning_rate": self.learning_rate,
                "pictures_per_second": rate,
                "checkpoint": self.last_good, "model_dir": self.model_dir, "resumed_from": self.resumed_from,
                "pretrained": self.pretrained, "frozen": self.frozen, "evaluations": self.evaluations,
                "best": self.best, "history": self.history}
