"""efficientdet-infer: detect objects in pictures with any model file or checkpoint; draw and write JSON."""

import glob
import json
import os
import sys

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "", "What to run: a SavedModel dir, a .tflite or .onnx file, a trainer model dir, "
                    "a .keras file, or a bare checkpoint (official dir, .weights.h5: needs --model_name).")
flags.DEFINE_alias("saved_model_dir", "checkpoint")
flags.DEFINE_string("model_name", "", "Model of a bare checkpoint or a .tflite file, e.g. efficientdet-d0.")
flags.DEFINE_string("hparams", "", "Overrides for a checkpoint, e.g. 'nms.mode=per_class'.")
flags.DEFINE_list("input", [], "Picture files or globs (JPEG, PNG, ...), comma separated.")
flags.DEFINE_string("output_dir", None, "Where the drawn pictures, detections.json and skipped.json go.")
flags.DEFINE_string("label_map", "", "Optional YAML/JSON {id: name} for the drawn labels.")
flags.DEFINE_float("min_score", 0.3, "Draw detections at or above this score (the JSON keeps all).")
flags.DEFINE_bool("strict", False, "Exit with status 1 when a file could not be read (it is skipped either way).")


def _inputs(patterns):
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise common.UsageError("--input %r matches no file" % pattern)
        files += matches
    return files


def _read(path):
    """(uint8 picture, None) or (None, why it cannot be read)."""
    from efficientdet_tf.data.pictures import load_rgb

    try:
        return load_rgb(path), None
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file; each is one skipped file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, "%s: %s" % (type(e).__name__, reason)


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.output_dir or not FLAGS.input:
        raise common.UsageError("--input and --output_dir are required")
    if not FLAGS.checkpoint:
        raise common.UsageError("--checkpoint is required (a SavedModel dir, a .tflite or .onnx file, a checkpoint)")
    files = _inputs(FLAGS.input)
    import numpy as np

    from efficientdet_tf.eval.coco_format import coco_results
    from efficientdet_tf.runtime import LoadError, load_detector
    from efficientdet_tf.visualize import draw_detections
    label_map = {}
    if FLAGS.label_map:
        from efficientdet_tf.data.label_map import load_label_map
        label_map = load_label_map(FLAGS.label_map)
    try:
        detect = load_detector(FLAGS.checkpoint, model_name=FLAGS.model_name or None, hparams=FLAGS.hparams or None)
    except LoadError as e:
        raise common.UsageError(str(e)) from None
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    results, skipped = [], []
    for path in files:
        image, reason = _read(path)
        if image is None:
            skipped.append({"file": path, "reason": reason})
            print("%s: skipped (%s)" % (path, reason), file=sys.stderr)
            continue
        detections = detect(image)
        stem = os.path.splitext(os.path.basename(path))[0]
        results += coco_results(int(stem) if stem.isdigit() else stem, detections)
        drawn = draw_detections(image, detections, label_map, FLAGS.min_score)
        drawn.save(os.path.join(FLAGS.output_dir, stem + ".jpg"), quality=92)
        print("%s: %d detections (%d >= %.2f)" % (path, int(detections["num_detections"]),
              int(np.sum(detections["detection_scores"] >= FLAGS.min_score)), FLAGS.min_score))
    with open(os.path.join(FLAGS.output_dir, "detections.json"), "w") as f:
        json.dump(results, f)
    with open(os.path.join(FLAGS.output_dir, "skipped.json"), "w") as f:
        json.dump(skipped, f, indent=1)
    print("wrote %d pictures and %s" % (len(files) - len(skipped), os.path.join(FLAGS.output_dir, "detections.json")))
    if skipped:
        print("skipped %d unreadable file(s), listed in %s" % (len(skipped), os.path.join(FLAGS.output_dir, "skipped.json")),
              file=sys.stderr)
        if FLAGS.strict:
            sys.exit(1)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
