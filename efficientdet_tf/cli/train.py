"""efficientdet-train: train or fine-tune an EfficientDet with tf.distribute; rerun to resume."""

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_name", "efficientdet-d0", "Model name, e.g. efficientdet-d0 or efficientdet-lite0.")
flags.DEFINE_string("model_dir", None, "Checkpoints (ckpt-<step>), config.yaml and TensorBoard events. "
                    "Rerunning with the same model_dir resumes.")
flags.DEFINE_string("train_file_pattern", "", "Training TFRecords (glob, comma-separated).")
flags.DEFINE_string("tfds_name", "", "A TFDS source instead of TFRecords, e.g. coco/2017.")
flags.DEFINE_string("hparams", "", "Overrides 'num_classes=5,learning_rate=0.01' or a yaml file.")
flags.DEFINE_integer("batch_size", 0, "Global batch size (all replicas); 0: train.batch_size.")
flags.DEFINE_integer("train_steps", 0, "Total optimizer steps to reach; 0: --num_epochs.")
flags.DEFINE_float("num_epochs", 0, "Epochs to train when --train_steps is 0; 0: train.num_epochs.")
flags.DEFINE_integer("save_every", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept in model_dir.")
flags.DEFINE_enum("strategy", "", ["", "one_device", "mirrored", "multi_worker", "tpu"],
                  "'' picks one device (or mirrored over several GPUs); multi_worker reads TF_CONFIG "
                  "(worker 0 is the chief; run the same command on every worker).")
flags.DEFINE_string("tpu", "", "TPU name or grpc address for --strategy=tpu.")
flags.DEFINE_float("collective_timeout", 60.0, "--strategy=multi_worker: seconds a worker may stop answering; "
                   "then the others stop, naming it and the checkpoint to resume from (0: TensorFlow's default).")
flags.DEFINE_enum("mixed_precision", None, ["float32", "float16", "bfloat16"],
                  "Compute precision (default: train.mixed_precision).")
flags.DEFINE_string("pretrained_ckpt", "", "Start from: an official checkpoint, a backbone-only EfficientNet "
                    "checkpoint, one of ours, or a model name (downloaded). Another class count loads all "
                    "but the class predictor.")
flags.DEFINE_string("freeze", "", "Regex over variable names not to train, e.g. '^efficientnet-' (backbone).")
flags.DEFINE_integer("seed", None, "Random seed (weights initialisation, input order).")
flags.DEFINE_bool("deterministic", False, "Fixed input order and augmentation, deterministic ops: a resumed "
                  "run ends with the weights of an uninterrupted one.")
flags.DEFINE_bool("use_xla", False, "XLA-compile the training step.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_integer("steps_per_loop", 1, "Optimizer steps per compiled inner loop (losses read back once per "
                     "loop); saves, evaluations and summaries still happen at exactly their steps.")
flags.DEFINE_enum("mode", "train", ["train", "traineval"], "traineval also evaluates the EMA weights on "
                  "--val_file_pattern every --eval_every steps (COCO metrics to TensorBoard; the best "
                  "checkpoint by AP is kept in <model_dir>/best/).")
flags.DEFINE_string("val_file_pattern", "", "Validation TFRecords for --mode=traineval.")
flags.DEFINE_string("val_json_file", "", "COCO ground-truth JSON of the validation set (default: built from the records).")
flags.DEFINE_integer("eval_every", 1000, "Steps between evaluations with --mode=traineval.")


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.model_dir:
        raise common.UsageError("--model_dir is required")
    if FLAGS.train_file_pattern and FLAGS.tfds_name:
        raise common.UsageError("give --train_file_pattern or --tfds_name, not both")
    if FLAGS.mode == "traineval" and not FLAGS.val_file_pattern:
        raise common.UsageError("--mode=traineval needs --val_file_pattern")
    if FLAGS.mode == "traineval" and FLAGS.eval_every < 1:
        raise common.UsageError("--eval_every must be >= 1 with --mode=traineval")
    # The strategy comes first: a multi-worker strategy must exist before TensorFlow runs anything.
    from efficientdet_tf.train import strategy as strategy_lib
    from efficientdet_tf.train.errors import TrainError
    try:
        strategy = strategy_lib.get_strategy(FLAGS.strategy, FLAGS.tpu or None, FLAGS.collective_timeout)
    except TrainError as e:
        raise common.UsageError(str(e)) from None

    from efficientdet_tf.config import get_config
    from efficientdet_tf.train.trainer import train

    config = get_config(FLAGS.model_name, FLAGS.hparams or None)
    if FLAGS.mixed_precision is not None:
        config = config.replace({"train.mixed_precision": "" if FLAGS.mixed_precision == "float32"
                                 else FLAGS.mixed_precision})
    eval_fn = None
    if FLAGS.mode == "traineval":
        import os

        from efficientdet_tf.eval.evaluator import make_eval_fn
        eval_fn = make_eval_fn(config, val_file_pattern=FLAGS.val_file_pattern,
                               val_json_file=FLAGS.val_json_file or None,
                               output_dir=os.path.join(FLAGS.model_dir, "eval"))
    try:
        result = train(config, FLAGS.model_dir, train_file_pattern=FLAGS.train_file_pattern or None,
                       tfds_name=FLAGS.tfds_name or None, train_steps=FLAGS.train_steps or None,
                       num_epochs=FLAGS.num_epochs or None, batch_size=FLAGS.batch_size or None,
                       save_every=FLAGS.save_every, keep_checkpoints=FLAGS.keep_checkpoints, strategy=strategy,
                       pretrained_ckpt=FLAGS.pretrained_ckpt or None, freeze=FLAGS.freeze or None,
                       seed=FLAGS.seed, deterministic=FLAGS.deterministic, use_xla=FLAGS.use_xla,
                       eval_fn=eval_fn, eval_every=FLAGS.eval_every if eval_fn else 0,
                       progress=FLAGS.progress, steps_per_loop=FLAGS.steps_per_loop)
    except TrainError as e:
        raise common.UsageError(str(e)) from None
    losses = result["losses"]
    print("\nstep %d: %s; %.1f pictures/s; checkpoint %s" % (
        result["step"], ", ".join("%s %.5f" % (k, v) for k, v in losses.items()),
        result["pictures_per_second"], result["checkpoint"]), flush=True)
    if result.get("best"):
        print("best checkpoint by AP: %s (AP %.4f at step %d)" % (
            result["best"]["checkpoint"], result["best"]["AP"], result["best"]["step"]), flush=True)


def run():
    # Training steps on the CPU need the malloc padding, set before TensorFlow starts (BENCHMARKS.md).
    common.run(main, pad_malloc=True)


if __name__ == "__main__":
    run()
