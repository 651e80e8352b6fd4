"""efficientdet-demo: the main job; trains a detector from scratch on the built-in shapes dataset.

shapes dataset -> TFRecords -> inspection -> training (progress bar) -> COCO evaluation -> TF Serving
SavedModel -> detections drawn on validation pictures. Needs no checkpoint, no network and nothing
outside the package. `--quick` runs the same path with a few steps (CI).
"""

import json
import os
import time

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_out", "Where every artefact of the run goes.")
flags.DEFINE_bool("quick", False, "A few training steps on a few pictures: checks the whole path (CI), "
                  "the detector learns nothing useful.")
flags.DEFINE_integer("num_train", None, "Shapes training pictures to generate (default 1000; 32 with --quick).")
flags.DEFINE_integer("num_val", None, "Held-out shapes validation pictures (default 100; 8 with --quick).")
flags.DEFINE_integer("train_steps", None, "Training steps (default 3600; 6 with --quick).")
flags.DEFINE_integer("seed", 0, "Seed of the shapes dataset and of the training run.")
flags.DEFINE_string("hparams", "", "Overrides of the demo model's hparams, e.g. 'train.learning_rate=0.3'.")

# The demo detector: Lite0's design at 128 px, slimmed (half-width, half-depth backbone, 32-channel
# BiFPN of 2 cells, 2-layer heads) so that two CPU cores train it from scratch in minutes; the
# pictures are drawn at 128-160 px so every shape keeps at least ~14 px, which anchors of scale 2
# (16 px at stride 8) cover. Measurements behind these choices: docs/benchmark_history.md, "Main job".
MODEL = "efficientdet-lite0"
PICTURE_SIZES = (128, 160)
DEMO_HPARAMS = {
    "image_size": 128,
    "backbone_width": 0.5,
    "backbone_depth": 0.5,
    "fpn_num_filters": 32,
    "fpn_cell_repeats": 2,
    "box_class_repeats": 2,
    "anchors.anchor_scale": 2.0,
    "data.jitter_min": 0.6,             # milder scale jitter than the COCO recipe (0.1-2.0): short run
    "data.jitter_max": 1.5,
    "train.batch_size": 16,
    "train.learning_rate": 0.96,        # per 64 pictures: 0.24 at batch 16 (3x the COCO rate: short run)
    "train.lr_warmup_epoch": 1.0,
    "train.moving_average_decay": 0.999,
    "nms.score_threshold": 0.001,
    "eval.batch_size": 16,
    "eval.num_pictures_drawn": 16,
}
TRAIN_STEPS = 3600
NUM_TRAIN, NUM_VAL = 1000, 100
QUICK = {"num_train": 32, "num_val": 8, "train_steps": 6, "batch_size": 8}


def step(title):
    print("\n== %s" % title, flush=True)


def demo_config(num_classes, label_map_file, quick=False, overrides=""):
    """The Config of the demo detector for a dataset of `num_classes` classes."""
    from efficientdet_tf.config import get_config

    values = dict(DEMO_HPARAMS, num_classes=num_classes)
    values["eval.label_map"] = label_map_file
    if quick:
        values["train.batch_size"] = QUICK["batch_size"]
        values["eval.batch_size"] = QUICK["batch_size"]
    config = get_config(MODEL, values)
    return config.replace(overrides) if overrides else config


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    started = time.time()
    quick = FLAGS.quick
    num_train = FLAGS.num_train if FLAGS.num_train is not None else (QUICK["num_train"] if quick else NUM_TRAIN)
    num_val = FLAGS.num_val if FLAGS.num_val is not None else (QUICK["num_val"] if quick else NUM_VAL)
    train_steps = FLAGS.train_steps or (QUICK["train_steps"] if quick else TRAIN_STEPS)
    if num_train < 1 or num_val < 1:
        raise common.UsageError("--num_train and --num_val must be at least 1")

    import numpy as np

    from efficientdet_tf.data.pictures import load_rgb
    from efficientdet_tf.checkpoints.opening import open_model
    from efficientdet_tf.data.label_map import label_map_path, load_label_map
    from efficientdet_tf.metrics import coco_metrics
    from efficientdet_tf.eval.evaluator import Evaluator
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.train.trainer import train
    from efficientdet_tf.visualize import draw_detections
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.inspect_tfrecord import format_inspection, inspect_records
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    out = FLAGS.output_dir
    data_dir = os.path.join(out, "shapes")
    model_dir = os.path.join(out, "model")
    if os.path.exists(os.path.join(model_dir, "config.yaml")):
        raise common.UsageError("%s already holds a trained model: remove %s (or pick another --output_dir) "
                                "to run the demo again" % (model_dir, out))
    outputs = {}
    timings = {}

    step("1. shapes dataset: %d training + %d held-out validation pictures -> %s" % (num_train, num_val, data_dir))
    t = time.time()
    jsons = make_shapes_dataset(data_dir, num_train, num_val, FLAGS.seed, size_range=PICTURE_SIZES)
    records = {}
    for split, json_path in jsons.items():
        paths, report = create_coco_tfrecord.create_coco_tfrecord(
            os.path.join(data_dir, split), json_path, os.path.join(data_dir, split), num_shards=1, num_workers=2)
        if report.has_issues():
            raise common.UsageError("the generated %s split did not convert cleanly:\n%s" % (split, report.summary()))
        records[split] = paths
        print("%s: %s" % (split, ", ".join(paths)))
    label_file = label_map_path(os.path.join(data_dir, "train"))
    label_map = load_label_map(label_file)
    outputs["TFRecords"] = os.path.join(data_dir, "{train,val}-*.tfrecord")
    timings["data"] = time.time() - t

    step("2. inspect the training records")
    inspection = inspect_records(records["train"], label_map, render=4, output_dir=os.path.join(out, "inspect"))
    print(format_inspection(inspection, label_map))
    if inspection.invalid:
        raise common.UsageError("invalid training records (listed above)")
    outputs["inspection pictures"] = os.path.join(out, "inspect")

    config = demo_config(max(label_map), label_file, quick, FLAGS.hparams)
    step("3. train %s (%d px, %d classes) from scratch for %d steps of %d pictures -> %s" % (
        MODEL, config.image_size, config.num_classes, train_steps, config.train.batch_size, model_dir))
    t = time.time()
    summary = train(config, model_dir, train_file_pattern=",".join(records["train"]), train_steps=train_steps,
                    save_every=max(train_steps, 1), keep_checkpoints=1, seed=FLAGS.seed, progress=True)
    timings["train"] = time.time() - t
    print("trained %d steps in %.0f s (%.1f pictures/s); losses: %s" % (
        summary["step"], timings["train"], summary["pictures_per_second"],
        ", ".join("%s %.4f" % (k, v) for k, v in sorted(summary["losses"].items()))))
    outputs["model dir (checkpoint, config.yaml, TensorBoard)"] = model_dir

    step("4. COCO evaluation on the held-out pictures (EMA weights)")
    t = time.time()
    evaluator = Evaluator(config, val_file_pattern=",".join(records["val"]))
    report = evaluator.evaluate(model_dir, output_dir=os.path.join(out, "eval"), progress=True)
    metrics = report.metrics
    print(coco_metrics.format_metrics(metrics))
    print()
    print(coco_metrics.format_per_class(metrics["per_class"]))
    metrics_path = os.path.join(out, "metrics.json")
    with open(metrics_path, "w") as f:
        json.dump(metrics, f, indent=1)
    timings["eval"] = time.time() - t
    outputs["metrics"] = metrics_path
    outputs["evaluation (tables, PR curve, picture grid)"] = os.path.join(out, "eval")

    step("5. export a TF Serving SavedModel (batch norms folded)")
    t = time.time()
    model, config = open_model(model_dir)
    saved_model = export_saved_model(fold_and_check(model, config), config, os.path.join(out, "export"), version=1)
    print("SavedModel: %s" % saved_model)
    outputs["SavedModel"] = saved_model

    step("6. detect with the SavedModel on the validation pictures and draw")
    import tensorflow as tf

    serving = tf.saved_model.load(saved_model).signatures["serving_default"]
    det_dir = os.path.join(out, "detections")
    os.makedirs(det_dir, exist_ok=True)
    val_dir = os.path.join(data_dir, "val")
    pictures = sorted(f for f in os.listdir(val_dir) if f.endswith(".jpg"))
    min_score = float(config.eval.min_score_drawn)
    found = 0
    for name in pictures[:16]:
        image = load_rgb(os.path.join(val_dir, name))
        got = {k: v.numpy()[0] for k, v in serving(images=tf.constant(image[None])).items()}
        found += int(np.sum(got["detection_scores"][: int(got["num_detections"])] >= min_score))
        draw_detections(image, got, label_map, min_score=min_score).save(os.path.join(det_dir, name), quality=92)
    timings["export_and_draw"] = time.time() - t
    print("%d pictures drawn into %s (%d detections with score >= %.2f)" % (
        min(len(pictures), 16), det_dir, found, min_score))
    outputs["drawn detections"] = det_dir

    total = time.time() - started
    run = {"metrics": {k: metrics[k] for k in coco_metrics.METRIC_KEYS}, "train_steps": summary["step"],
           "pictures_per_second": summary["pictures_per_second"], "seconds": dict(timings, total=total),
           "quick": quick, "outputs": outputs}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(run, f, indent=1)
    step("done in %.0f s: AP %.3f, AP50 %.3f on %d held-out pictures" % (
        total, metrics["AP"], metrics["AP50"], metrics["num_pictures"]))
    for what, path in outputs.items():
        print("  %-48s %s" % (what, path))
    print("  %-48s %s" % ("run summary", os.path.join(out, "summary.json")))


def run():
    # Training steps on the CPU need the malloc padding, set before TensorFlow starts (BENCHMARKS.md).
    common.run(main, pad_malloc=True)


if __name__ == "__main__":
    run()
