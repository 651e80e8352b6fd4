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
flags.DEFINE_integer("tile", 0, "Detect on overlapping tiles of this many pixels (at least the model's input "
                     "size), for pictures much larger than the input; 0: the whole picture at once.")
flags.DEFINE_float("tile_overlap", 0.2, "With --tile: the share of a tile that neighbouring tiles overlap.")
flags.DEFINE_enum("tile_merge", "nms", ["nms", "wbf"], "With --tile: how duplicates across tiles merge "
                  "(non-maximum suppression, or weighted box fusion).")
flags.DEFINE_bool("strict", False, "Exit with status 1 when a file could not be read (it is skipped either way).")


def _inputs(patterns):
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise common.UsageError("--input %r matches no file" % pattern)
        files += [match for match in matches if match not in files]  # overlapping globs: each file once
    return files


def output_names(files):
    """{file: (image_id, drawing path relative to the output dir)}, distinct for every file.

    The file name's stem is the id (an int when it is all digits, as COCO ids are) and the drawing
    is `<stem>.jpg`; files whose stems collide (the same name in two folders, or 7.png beside
    7.jpg) get their path below the inputs' common folder instead, as id and as drawing path."""
    stems = {}
    for path in files:
        stems.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    absolute = [os.path.abspath(path) for path in files]
    root = os.path.commonpath([os.path.dirname(path) for path in absolute]) if files else ""
    names = {}
    for path, full in zip(files, absolute):
        stem = os.path.splitext(os.path.basename(path))[0]
        if len(stems[stem]) == 1:
            names[path] = (int(stem) if stem.isdigit() else stem, stem + ".jpg")
        else:
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            names[path] = (relative, relative + ".jpg")
    return names


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.output_dir or not FLAGS.input:
        raise common.UsageError("--input and --output_dir are required")
    if not FLAGS.checkpoint:
        raise common.UsageError("--checkpoint is required (a SavedModel dir, a .tflite or .onnx file, a checkpoint)")
    files = _inputs(FLAGS.input)
    import numpy as np

    from efficientdet_tf.data.pictures import read_picture
    from efficientdet_tf.metrics.coco_format import coco_results
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
    if FLAGS.tile:
        from efficientdet_tf.runtime import TiledDetector
        try:
            detect = TiledDetector(detect, FLAGS.tile, overlap=FLAGS.tile_overlap, merge=FLAGS.tile_merge)
        except ValueError as e:
            raise common.UsageError("--tile=%d: %s" % (FLAGS.tile, e)) from None
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    results, skipped = [], []
    names = output_names(files)
    for path in files:
        image, reason = read_picture(path)
        if image is None:
            skipped.append({"file": path, "reason": reason})
            print("%s: skipped (%s)" % (path, reason), file=sys.stderr)
            continue
        detections = detect(image)
        image_id, drawing = names[path]
        results += [dict(r, file_name=path) for r in coco_results(image_id, detections)]
        drawn = draw_detections(image, detections, label_map, FLAGS.min_score)
        drawing = os.path.join(FLAGS.output_dir, drawing)
        os.makedirs(os.path.dirname(drawing), exist_ok=True)
        drawn.save(drawing, quality=92)
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
