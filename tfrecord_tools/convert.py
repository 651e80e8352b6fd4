"""Shared conversion core: a COCO-style dict of images and boxes -> cleaned TFRecord shards."""

import collections
import json
import os

from absl import flags

from efficientdet_tf.data.label_map import label_map_path, write_label_map
from tfrecord_tools import cleaning, example_writer
from tfrecord_tools.report import ConversionReport


def define_common_flags():
    """Defines the flags every converter shares (called by each tool's `run()`, not at import)."""
    flags.DEFINE_string("output_file_prefix", None, "Output path prefix: shards are "
                        "<prefix>-00000-of-0000N.tfrecord, plus <prefix>_label_map.yaml.")
    flags.DEFINE_integer("num_shards", 1, "Number of TFRecord shards.", lower_bound=1)
    flags.DEFINE_integer("num_workers", 4, "Threads that read and encode pictures; the output "
                         "does not depend on this number.", lower_bound=1)
    flags.DEFINE_bool("strict", False, "Exit with status 1 when anything was skipped or changed "
                      "(the records are still written, for inspection).")
    flags.mark_flag_as_required("output_file_prefix")


def gt_json_path(output_prefix):
    """Where VOC/YOLO converters write the COCO ground truth for `output_prefix`."""
    return output_prefix + "_gt.json"


def write_json(path, data):
    """Writes `data` as JSON, creating the parent folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def _convert_image(image, annotations, categories, image_dir):
    """Loads and cleans one picture.

    Returns (serialized example or None, image entry with the real size, kept annotations, report).
    """
    report = ConversionReport()
    file_name = image["file_name"]
    annotated = (image["width"], image["height"]) if image.get("width") and image.get("height") else None
    loaded = cleaning.load_image_as_jpeg(os.path.join(image_dir, file_name), report, annotated)
    if loaded is None:
        report.add("boxes_of_skipped_images", file_name, count=len(annotations))
        return None, None, [], report
    jpeg, width, height = loaded
    if annotated and annotated != (width, height):
        report.add("image_size_mismatch", "%s: annotated %sx%s, real %dx%d" % (
            file_name, image["width"], image["height"], width, height))
    kept = []
    for ann in annotations:
        where = "%s annotation %s" % (file_name, ann.get("id"))
        if ann.get("category_id") not in categories:
            report.add("unknown_category_skipped", "%s category %r" % (where, ann.get("category_id")))
            continue
        box = cleaning.clean_box(ann.get("bbox"), width, height, report, where)
        if box is None:
            continue
        # COCO's area is the object's (segment) area, which clipping its box does not change; the
        # official converter keeps it too. Only a missing area is computed, from the kept box.
        area = float(ann["area"]) if ann.get("area") is not None else box[2] * box[3]
        kept.append(dict(ann, bbox=box, area=area, iscrowd=int(ann.get("iscrowd", 0))))
    if not kept:
        report.add("negative_image", file_name)
    example = example_writer.build_example(
        jpeg, width, height, image["id"], file_name,
        boxes=[a["bbox"] for a in kept], labels=[a["category_id"] for a in kept],
        texts=[categories[a["category_id"]] for a in kept], areas=[a["area"] for a in kept],
        is_crowd=[a["iscrowd"] for a in kept])
    return example.SerializeToString(), dict(image, width=width, height=height), kept, report


def _shift_zero_category(dataset, report):
    """A dataset whose category ids include 0 (exported datasets often do) with every id + 1.

    Id 0 is padding in the records and evaluation refuses it, so the records, the label map and
    the cleaned ground truth (`--gt_json_file`, evaluate with that one) all carry the shifted ids.
    """
    categories = dataset.get("categories", [])
    if not any(c.get("id") == 0 for c in categories):
        return dataset
    shifted = [dict(c, id=c["id"] + 1) if isinstance(c.get("id"), int) else c for c in categories]
    annotations = [dict(a, category_id=a["category_id"] + 1) if isinstance(a.get("category_id"), int) else a
                   for a in dataset.get("annotations", [])]
    names = ", ".join("%s: %d -> %d" % (c.get("name"), c["id"], c["id"] + 1) for c in categories[:3])
    report.add("category_id_zero", "%d categories (%s%s)" % (len(categories), names, ", ..." if len(categories) > 3 else ""))
    return dict(dataset, categories=shifted, annotations=annotations)


def convert_dataset(dataset, image_dir, output_prefix, num_shards=1, num_workers=1, report=None):
    """Converts a COCO-format dict to TFRecord shards and writes the label map beside them.

    Args:
      dataset: {'images': [{'id', 'file_name', 'width'?, 'height'?}], 'annotations': [{'id',
        'image_id', 'category_id', 'bbox': [x, y, w, h] pixels, 'area'?, 'iscrowd'?}],
        'categories': [{'id', 'name'}]}. Category ids are kept as labels (all shifted by +1 when
        one of them is 0, which is padding; the report says so).
      image_dir: folder that `file_name` is relative to.
      output_prefix: shard path prefix.
      num_shards, num_workers: see `example_writer`.
      report: a ConversionReport to add to (a new one when None).

    Returns:
      (shard paths, report, cleaned COCO dict holding only what was written, with real picture
      sizes and clipped boxes: the ground truth that matches the records).
    """
    report = report if report is not None else ConversionReport()
    dataset = _shift_zero_category(dataset, report)
    categories = {c["id"]: c["name"] for c in dataset.get("categories", [])}
    tasks, seen = [], set()
    for index, image in enumerate(dataset["images"]):
        if image["id"] in seen:
            report.add("duplicate_image_skipped", "id %s (%s)" % (image["id"], image.get("file_name")))
            continue
        seen.add(image["id"])
        tasks.append((index, image))
    by_image = collections.defaultdict(list)
    for ann in dataset.get("annotations", []):
        if ann.get("image_id") not in seen:
            report.add("unknown_image_skipped", "annotation %s image_id %r" % (ann.get("id"), ann.get("image_id")))
            continue
        by_image[ann["image_id"]].append(ann)

    def work(task):
        index, image = task
        return (index,) + _convert_image(image, by_image[image["id"]], categories, image_dir)

    kept_images, kept_annotations = [], []

    def examples():
        for index, serialized, image, kept, image_report in example_writer.ordered_parallel_map(
                work, tasks, num_workers):
            report.merge(image_report)
            if serialized is None:
                continue
            kept_images.append(image)
            kept_annotations.extend(kept)
            yield index, serialized

    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    paths = example_writer.write_sharded(examples(), output_prefix, num_shards)
    write_label_map(label_map_path(output_prefix), dataset.get("categories", []))
    cleaned = {"images": kept_images, "annotations": kept_annotations,
               "categories": dataset.get("categories", [])}
    return paths, report, cleaned


def finish(paths, report, strict):
    """Prints what was written and the report summary; returns the process exit status."""
    print("wrote %d shard(s): %s" % (len(paths), ", ".join(paths)))
    print(report.summary())
    if strict and report.has_issues():
        print("--strict: failing because input was skipped or changed (see above)")
        return 1
    return 0
