"""Converts a YOLO-format dataset (pictures + one txt of normalised boxes each) to TFRecord shards."""

import math
import os

import yaml
from absl import app, flags

from tfrecord_tools import cleaning, convert
from tfrecord_tools.report import ConversionReport

FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def define_flags():
    """Defines this tool's flags (only when run as a program, so tests can import the module)."""
    flags.DEFINE_string("image_dir", None, "Folder of pictures (searched recursively).")
    flags.DEFINE_string("label_dir", "", "Folder of <picture path without extension>.txt label "
                        "files, mirroring image_dir; empty: the label files sit beside the pictures.")
    flags.DEFINE_string("class_names_file", None, "Class names: a txt file with one name per line "
                        "(line k is class k-1 -> id k), or a YAML with `names` (list or {index: name}).")
    flags.DEFINE_string("gt_json_file", "", "COCO ground-truth JSON to write; empty writes "
                        "<output_file_prefix>_gt.json.")
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # list the shared flags in --helpshort too
    flags.mark_flags_as_required(["image_dir", "class_names_file"])


def read_class_names(path):
    """Returns the class names in YOLO index order from a txt or YAML (`names`) file."""
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        names = yaml.safe_load(text)["names"]
        if isinstance(names, dict):  # {0: name, 1: name, ...}
            names = [names[k] for k in sorted(names, key=int)]
        return [str(n) for n in names]
    return [line.strip() for line in text.rstrip("\n").split("\n")]


def _parse_line(line):
    """'class cx cy w h' -> (class index, cx, cy, w, h), or None when malformed."""
    parts = line.split()
    if len(parts) != 5:
        return None
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return None
    if not values[0].is_integer() or not all(math.isfinite(v) for v in values):
        return None
    return (int(values[0]),) + tuple(values[1:])


def read_yolo(image_dir, label_dir, class_names, report=None):
    """Reads a YOLO dataset into a COCO-format dict (image ids 1..N in sorted path order).

    YOLO class k becomes category id k+1. Boxes are turned into pixels with the size read from
    each picture's header; a picture whose header cannot be read is passed on without boxes (the
    shared conversion reports it as unreadable) and its label lines are counted as dropped.
    """
    report = report if report is not None else ConversionReport()
    label_dir = label_dir or image_dir
    files = sorted(os.path.relpath(os.path.join(root, name), image_dir)
                   for root, _, names in os.walk(image_dir) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    images, annotations = [], []
    for image_id, file_name in enumerate(files, start=1):
        images.append({"id": image_id, "file_name": file_name})
        label_path = os.path.join(label_dir, os.path.splitext(file_name)[0] + ".txt")
        if not os.path.isfile(label_path):
            continue  # YOLO's convention: no label file means a picture without objects
        with open(label_path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        size = cleaning.read_image_size(os.path.join(image_dir, file_name))
        if size is None:
            report.add("boxes_of_skipped_images", file_name, count=len(lines))
            continue
        width, height = size
        images[-1].update(width=width, height=height)
        for line_number, line in enumerate(lines, start=1):
            parsed = _parse_line(line)
            if parsed is None:
                report.add("label_line_malformed_skipped", "%s line %d: %r" % (label_path, line_number, line))
                continue
            k, cx, cy, w, h = parsed
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": k + 1,
                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height],
                "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def create_yolo_tfrecord(image_dir, class_names_file, output_prefix, label_dir="", num_shards=1,
                         num_workers=1, gt_json_file=""):
    """Converts one YOLO dataset; returns (shard paths, ConversionReport). Writes the COCO ground
    truth of what went into the records to `gt_json_file` (default <prefix>_gt.json)."""
    report = ConversionReport()
    dataset = read_yolo(image_dir, label_dir, read_class_names(class_names_file), report)
    paths, report, cleaned = convert.convert_dataset(
        dataset, image_dir, output_prefix, num_shards, num_workers, report)
    convert.write_json(gt_json_file or convert.gt_json_path(output_prefix), cleaned)
    return paths, report


def main(argv):
    """absl entry point."""
    del argv
    paths, report = create_yolo_tfrecord(FLAGS.image_dir, FLAGS.class_names_file,
                                         FLAGS.output_file_prefix, FLAGS.label_dir,
                                         FLAGS.num_shards, FLAGS.num_workers, FLAGS.gt_json_file)
    return convert.finish(paths, report, FLAGS.strict)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
