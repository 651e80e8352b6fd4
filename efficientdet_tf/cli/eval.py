"""efficientdet-eval: COCO metrics of a checkpoint, model dir, SavedModel, TFLite or ONNX file on validation data.

Example:
  efficientdet-eval --checkpoint=demo_out/model --val_file_pattern='demo_out/shapes/val-*.tfrecord' \
      --output_dir=eval_out
Writes <output_dir>/metrics.json (AP AP50 AP75 APs APm APl ARmax1 ARmax10 ARmax100 ARs ARm ARl,
per_class), per_class_ap.txt, pr_curve.png, confusion_matrix.csv/.png (IoU 0.5, with background),
detections_grid.jpg and detections.json.
"""

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "What to evaluate: a trainer model dir (with config.yaml), a "
                    "SavedModel dir (or its base dir of numeric versions), a detection .tflite file (its "
                    "model's --model_name sets the letterbox colour), an .onnx file, a .keras file, or a "
                    "bare checkpoint (official TF1 dir, ckpt-N prefix, .weights.h5: needs --model_name).")
flags.DEFINE_string("val_file_pattern", "", "Validation TFRecords (glob, comma-separated).")
flags.DEFINE_string("tfds_name", "", "A TFDS source instead of TFRecords, e.g. coco/2017 "
                    "(needs the tfds extra).")
flags.DEFINE_string("tfds_split", "validation", "TFDS split with --tfds_name.")
flags.DEFINE_string("val_json_file", "", "COCO ground-truth JSON; default: built from the records.")
flags.DEFINE_string("hparams", "", "Overrides ('a=1,nms.score_threshold=0.01,eval.batch_size=4') or a yaml file.")
flags.DEFINE_string("model_name", "", "Model of a bare checkpoint or a .tflite file, e.g. efficientdet-d0.")
flags.DEFINE_string("output_dir", "eval_out", "Where metrics.json, the tables and pictures go.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.checkpoint:
        raise common.UsageError("--checkpoint is required (a checkpoint, a model dir or a SavedModel dir)")
    if bool(FLAGS.val_file_pattern) == bool(FLAGS.tfds_name):
        raise common.UsageError("give exactly one of --val_file_pattern and --tfds_name")
    from efficientdet_tf.metrics import coco_metrics
    from efficientdet_tf.eval.evaluator import EvalError, evaluate

    try:
        report = evaluate(FLAGS.checkpoint, val_file_pattern=FLAGS.val_file_pattern or None,
                          tfds_name=FLAGS.tfds_name or None, tfds_split=FLAGS.tfds_split,
                          val_json_file=FLAGS.val_json_file or None, hparams=FLAGS.hparams or None,
                          model_name=FLAGS.model_name or None, output_dir=FLAGS.output_dir,
                          progress=FLAGS.progress)
    except (EvalError, ImportError, ValueError) as e:
        raise common.UsageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    print("\nCOCO evaluation of %s on %d pictures" % (FLAGS.checkpoint, report.num_pictures))
    print(coco_metrics.format_metrics(report.metrics))
    print()
    print(coco_metrics.format_per_class(report.metrics["per_class"]))
    print()
    confused = report.confusion.most_confused()
    if confused:
        print("most confused (true -> predicted, IoU 0.5, score >= %.2f): %s" % (
            report.confusion.min_score, ", ".join("%s -> %s %d" % c for c in confused)))
        print()
    for what, path in report.paths.items():
        print("%-11s %s" % (what, path))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
