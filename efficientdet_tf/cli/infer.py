"""efficientdet-infer: detect objects in pictures with a SavedModel or a checkpoint; draw and write JSON."""

import glob
import json
import os

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model_dir", "", "An exported SavedModel version folder (has saved_model.pb).")
flags.DEFINE_string("model_name", "efficientdet-d0", "Model name, used with --checkpoint.")
flags.DEFINE_string("checkpoint", "", "Official checkpoint, .keras / .weights.h5 or tf.train.Checkpoint.")
flags.DEFINE_string("hparams", "", "Overrides for --checkpoint, e.g. 'nms.mode=per_class'.")
flags.DEFINE_list("input", [], "Picture files or globs (JPEG, PNG, ...), comma separated.")
flags.DEFINE_string("output_dir", None, "Where the drawn pictures and detections.json go.")
flags.DEFINE_string("label_map", "", "Optional YAML/JSON {id: name} for the drawn labels.")
flags.DEFINE_float("min_score", 0.3, "Draw detections at or above this score (the JSON keeps all).")


def _inputs(patterns):
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise common.UsageError("--input %r matches no file" % pattern)
        files += matches
    return files


def _saved_model_detector(path):
    """A function uint8 [H, W, 3] -> detection dict, running the SavedModel's serving_default."""
    import tensorflow as tf
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise common.UsageError("%s holds no saved_model.pb (point at the version folder)" % path)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    return lambda image: {k: v.numpy()[0] for k, v in signature(images=tf.constant(image[None])).items()}


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.output_dir or not FLAGS.input:
        raise common.UsageError("--input and --output_dir are required")
    if bool(FLAGS.saved_model_dir) == bool(FLAGS.checkpoint):
        raise common.UsageError("give exactly one of --saved_model_dir and --checkpoint")
    files = _inputs(FLAGS.input)
    import numpy as np

    from efficientdet_tf.data.pictures import load_rgb
    from efficientdet_tf.eval.coco_format import coco_results
    from efficientdet_tf.visualize import draw_detections
    label_map = {}
    if FLAGS.label_map:
        from efficientdet_tf.data.label_map import load_label_map
        label_map = load_label_map(FLAGS.label_map)
    if FLAGS.saved_model_dir:
        detect = _saved_model_detector(FLAGS.saved_model_dir)
    else:
        from efficientdet_tf.checkpoints.loading import saved_config_path
        from efficientdet_tf.config import get_config
        from efficientdet_tf.inference import Detector
        saved = saved_config_path(FLAGS.checkpoint) if FLAGS.checkpoint else None
        detect = Detector(get_config(saved or FLAGS.model_name, FLAGS.hparams or None), FLAGS.checkpoint)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    results = []
    for path in files:
        image = load_rgb(path)
        detections = detect(image)
        stem = os.path.splitext(os.path.basename(path))[0]
        results += coco_results(int(stem) if stem.isdigit() else stem, detections)
        drawn = draw_detections(image, detections, label_map, FLAGS.min_score)
        drawn.save(os.path.join(FLAGS.output_dir, stem + ".jpg"), quality=92)
        print("%s: %d detections (%d >= %.2f)" % (path, int(detections["num_detections"]),
              int(np.sum(detections["detection_scores"] >= FLAGS.min_score)), FLAGS.min_score))
    with open(os.path.join(FLAGS.output_dir, "detections.json"), "w") as f:
        json.dump(results, f)
    print("wrote %d pictures and %s" % (len(files), os.path.join(FLAGS.output_dir, "detections.json")))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
