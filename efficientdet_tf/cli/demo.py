"""efficientdet-demo: the main job on the embedded shapes dataset, as far as the project goes today.

Steps: generate the shapes dataset -> TFRecords -> inspect them -> one batch of the training input
pipeline (anchor targets) -> load a D0 checkpoint -> detect on the validation pictures, draw, write
COCO results -> export a TF Serving SavedModel -> reload it and check it agrees with the Detector.
Training and evaluation are not built yet; when they are, they slot in after the pipeline step.
"""

import json
import os

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_out", "Where every artefact of the run goes.")
flags.DEFINE_string("checkpoint", "", "A D0 checkpoint (official or the project's). Empty: the "
                    "reference checkpoint in ../shared/reference when present, else the official "
                    "COCO checkpoint, downloaded.")
flags.DEFINE_integer("num_train", 32, "Shapes training pictures to generate.")
flags.DEFINE_integer("num_val", 8, "Shapes validation pictures to generate.")
flags.DEFINE_integer("seed", 0, "Seed of the shapes dataset.")

MODEL = "efficientdet-d0"


def _reference_checkpoint():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(os.path.dirname(root), "shared", "reference", MODEL)
    return path if os.path.isfile(os.path.join(path, "model.index")) else None


def find_checkpoint(flag_value):
    """The checkpoint to use: the flag, the local reference checkpoint, or the official download."""
    if flag_value:
        return flag_value, "given"
    reference = _reference_checkpoint()
    if reference:
        return reference, "reference (random but non-trivial weights: detections are not meaningful)"
    import keras

    from efficientdet_tf.checkpoints.official import OFFICIAL_URLS
    folder = keras.utils.get_file(origin=OFFICIAL_URLS[MODEL], extract=True)
    return os.path.join(folder, MODEL), "official COCO"


def step(title):
    print("\n== %s" % title, flush=True)


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from efficientdet_tf.eval.coco_format import coco_results
    from efficientdet_tf.config import get_config
    from efficientdet_tf.data.pipeline import InputPipeline
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.inference import Detector
    from efficientdet_tf.visualize import draw_detections
    from tfrecord_tools import create_coco_tfrecord
    from efficientdet_tf.data.label_map import label_map_path, load_label_map
    from tfrecord_tools.inspect_tfrecord import format_inspection, inspect_records
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    out = FLAGS.output_dir
    data_dir = os.path.join(out, "shapes")
    summary = {}

    step("1. shapes dataset -> %s" % data_dir)
    jsons = make_shapes_dataset(data_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.seed)
    records = {}
    for split, json_path in jsons.items():
        paths, report = create_coco_tfrecord.create_coco_tfrecord(
            os.path.join(data_dir, split), json_path, os.path.join(data_dir, split), num_shards=1, num_workers=2)
        if report.has_issues():
            raise common.UsageError("the generated %s split did not convert cleanly:\n%s" % (split, report.summary()))
        records[split] = paths
        print("%s: %s" % (split, ", ".join(paths)))
    label_map = load_label_map(label_map_path(os.path.join(data_dir, "train")))

    step("2. inspect the training records")
    inspection = inspect_records(records["train"], label_map, render=4, output_dir=os.path.join(out, "inspect"))
    print(format_inspection(inspection, label_map))
    if inspection.invalid:
        raise common.UsageError("invalid training records (listed above)")
    summary["train_records"] = inspection.num_records

    step("3. training input pipeline: one batch with anchor targets")
    config = get_config(MODEL, {"num_classes": max(label_map), "train.batch_size": 4})
    images, labels = next(iter(InputPipeline(",".join(records["train"]), config, is_training=True)()))
    positives = labels["num_positives"].numpy()
    print("images %s, positive anchors per picture %s" % (tuple(images.shape), positives.tolist()))
    if not np.all(positives > 0):
        raise common.UsageError("a training picture got no positive anchor: the targets are wrong")
    summary["positives_per_picture"] = positives.tolist()

    step("4. load a D0 checkpoint and detect on the validation pictures")
    checkpoint, kind = find_checkpoint(FLAGS.checkpoint)
    print("checkpoint: %s (%s)" % (checkpoint, kind))
    detector = Detector(MODEL, checkpoint)
    det_dir = os.path.join(out, "detections")
    os.makedirs(det_dir, exist_ok=True)
    val_dir = os.path.join(data_dir, "val")
    pictures = sorted(f for f in os.listdir(val_dir) if f.endswith(".jpg"))
    results, per_picture = [], {}
    for index, name in enumerate(pictures, start=1):
        image = np.asarray(Image.open(os.path.join(val_dir, name)).convert("RGB"))
        detections = detector(image)
        per_picture[name] = (image, detections)
        results += coco_results(index, detections)
        draw_detections(image, detections, min_score=0.2).save(os.path.join(det_dir, name), quality=92)
    with open(os.path.join(det_dir, "detections.json"), "w") as f:
        json.dump(results, f)
    print("%d pictures drawn into %s, %d detections in detections.json" % (len(pictures), det_dir, len(results)))

    step("5. export a TF Serving SavedModel (batch norms folded) and check it")
    path = export_saved_model(fold_and_check(detector.model, detector.config), detector.config,
                              os.path.join(out, "export"), version=1)
    serving = tf.saved_model.load(path).signatures["serving_default"]
    worst = 0.0
    for image, expected in per_picture.values():
        got = serving(images=tf.constant(image[None]))
        n = int(expected["num_detections"])
        if int(got["num_detections"][0]) != n:
            raise common.UsageError("the SavedModel found %d detections, the Detector %d"
                                    % (int(got["num_detections"][0]), n))
        top = min(n, 10)  # the strongest detections; the soft-NMS tail may reorder near-equal scores
        worst = max(worst, float(np.abs(got["detection_scores"][0, :top] - expected["detection_scores"][:top]).max()))
    print("SavedModel %s: same detection counts, top-10 scores within %.1e of the Detector" % (path, worst))
    summary.update(saved_model=path, max_score_difference=worst, checkpoint=checkpoint)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("\ndone: %s" % os.path.join(out, "summary.json"))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
