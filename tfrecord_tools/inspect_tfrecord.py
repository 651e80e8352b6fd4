"""Checks TFRecord files record by record, prints statistics, and renders pictures with boxes."""

import collections
import dataclasses
import glob
import math
import os
import re

import numpy as np
import tensorflow as tf
from absl import app, flags
from google.protobuf.message import DecodeError
from PIL import Image, ImageDraw

from efficientdet_tf.data import label_map as label_maps
from efficientdet_tf.data import schema

FLAGS = flags.FLAGS

SIZE_BINS = (0, 8, 16, 32, 64, 128, 256, 512)  # sqrt(box area) in pixels


def define_flags():
    """Defines this tool's flags (only when run as a program, so tests can import the module)."""
    flags.DEFINE_string("input_pattern", None, "Comma-separated TFRecord files or glob patterns.")
    flags.DEFINE_string("label_map", "", "YAML/JSON {id: name}; empty uses <prefix>_label_map.yaml "
                        "beside the shards when there is one.")
    flags.DEFINE_integer("num_classes", 0, "When > 0 and no label map: labels must be 1..num_classes.")
    flags.DEFINE_integer("render", 0, "Draw the boxes of the first N records into output_dir.")
    flags.DEFINE_string("output_dir", "", "Where rendered pictures go.")
    flags.DEFINE_bool("anchors", False, "Report the share of boxes that get a positive anchor at the input size of "
                      "--model_name (+ --hparams), by box size, and search anchor_scale / aspect_ratios "
                      "(and min_level) for a grid that covers more.")
    flags.DEFINE_string("model_name", "efficientdet-d0", "With --anchors: the model whose input and anchors count.")
    flags.DEFINE_string("hparams", "", "With --anchors: overrides of the model, e.g. 'image_size=640'.")
    flags.mark_flag_as_required("input_pattern")


@dataclasses.dataclass
class Inspection:
    """What `inspect_records` found."""
    num_records: int = 0
    num_negatives: int = 0
    images_per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    boxes_per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    size_histogram: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    invalid: list = dataclasses.field(default_factory=list)  # (file, index, reason)


@dataclasses.dataclass
class Record:
    """One decoded record: RGB pixels, boxes [ymin, xmin, ymax, xmax] normalised, labels, texts."""
    image: np.ndarray
    boxes: np.ndarray
    labels: list
    texts: list
    source_id: str


def expand_patterns(patterns):
    """Sorted unique files matching comma-separated globs; a pattern matching nothing is an error."""
    files = []
    for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise FileNotFoundError("no file matches %s" % pattern)
        files.extend(matched)
    return sorted(set(files))


def default_label_map(path):
    """The label map a converter wrote beside shard `path`, or None when there is none."""
    prefix = re.sub(r"-\d{5}-of-\d{5}\.tfrecord$", "", path)
    candidate = label_maps.label_map_path(prefix)
    return candidate if prefix != path and os.path.isfile(candidate) else None


def _values(feature_map, key, kind):
    feature = feature_map.get(key)
    return list(getattr(feature, kind).value) if feature is not None else []


def check_record(serialized, label_map=None, num_classes=0):
    """Parses and validates one serialized tf.Example.

    Returns (Record or None when the picture cannot be decoded, list of problem strings).
    """
    try:
        example = tf.train.Example.FromString(serialized)
    except DecodeError as error:
        return None, ["not a tf.train.Example (%s)" % error]
    fmap = example.features.feature
    problems = []
    encoded = _values(fmap, schema.ENCODED, "bytes_list")
    height = _values(fmap, schema.HEIGHT, "int64_list")
    width = _values(fmap, schema.WIDTH, "int64_list")
    source_id = _values(fmap, schema.SOURCE_ID, "bytes_list")
    if not source_id or not source_id[0]:
        problems.append("missing image/source_id")
    image = None
    if not encoded:
        problems.append("missing image/encoded")
    else:
        try:
            image = tf.io.decode_image(encoded[0], channels=3, expand_animations=False).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            problems.append("undecodable image (%s)" % str(error).splitlines()[0][:120])
    if image is not None and (height[:1], width[:1]) != ([image.shape[0]], [image.shape[1]]):
        problems.append("image/height,width %s,%s but the picture is %dx%d" % (
            height[:1], width[:1], image.shape[1], image.shape[0]))
    coords = [_values(fmap, key, "float_list") for key in schema.BBOX_KEYS]
    labels = _values(fmap, schema.CLASS_LABEL, "int64_list")
    texts = [t.decode("utf-8", "replace") for t in _values(fmap, schema.CLASS_TEXT, "bytes_list")]
    optional = [texts, _values(fmap, schema.AREA, "float_list"),
                _values(fmap, schema.IS_CROWD, "int64_list")]
    # Optional per-box lists may be absent, but when present they must have one value per box.
    lengths = {len(c) for c in coords} | {len(labels)} | {len(v) for v in optional if v}
    if len(lengths) != 1:
        problems.append("box/label lists of different lengths %s" % sorted(lengths))
        return None, problems
    boxes = np.array(coords, np.float64).T.reshape(-1, 4)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        if not np.all(np.isfinite(boxes[i])) or min(ymin, xmin) < 0 or max(ymax, xmax) > 1:
            problems.append("box %d %s outside [0, 1]" % (i, boxes[i].round(4).tolist()))
        elif ymin >= ymax or xmin >= xmax:
            problems.append("box %d %s has no area" % (i, boxes[i].round(4).tolist()))
    for i, label in enumerate(labels):
        if label < 1 or (label_map and label not in label_map) or (
                not label_map and num_classes and label > num_classes):
            problems.append("box %d label %d out of range" % (i, label))
    if image is None:
        return None, problems
    sid = source_id[0].decode("utf-8", "replace") if source_id else ""
    return Record(image, boxes, labels, texts, sid), problems


def iterate_records(files):
    """Yields (file, index, serialized bytes or a DataLossError) for every record of every file."""
    for path in files:
        index = 0
        iterator = iter(tf.data.TFRecordDataset(path))
        while True:
            try:
                serialized = next(iterator).numpy()
            except StopIteration:
                break
            except tf.errors.DataLossError as error:  # a broken file: nothing after it can be read
                yield path, index, error
                break
            yield path, index, serialized
            index += 1


def inspect_records(files, label_map=None, num_classes=0, render=0, output_dir=""):
    """Checks every record of `files`; renders the first `render` decodable ones into output_dir.

    Returns an Inspection (counts, histogram, and every invalid record as (file, index, reason)).
    """
    result = Inspection()
    rendered = 0
    for path, index, serialized in iterate_records(files):
        if isinstance(serialized, Exception):
            result.invalid.append((path, index, "corrupt TFRecord data, rest of file unreadable "
                                   "(%s)" % str(serialized).splitlines()[0][:120]))
            continue
        result.num_records += 1
        record, problems = check_record(serialized, label_map, num_classes)
        if problems:
            result.invalid.append((path, index, "; ".join(problems)))
        if record is None:
            continue
        height, width = record.image.shape[:2]
        if not record.labels:
            result.num_negatives += 1
        result.images_per_class.update(set(record.labels))
        result.boxes_per_class.update(record.labels)
        for ymin, xmin, ymax, xmax in record.boxes:
            side = math.sqrt(max(ymax - ymin, 0) * height * max(xmax - xmin, 0) * width)
            result.size_histogram[max(b for b in SIZE_BINS if side >= b)] += 1
        if rendered < render:
            name = "%s_%05d.jpg" % (os.path.basename(path).replace(".tfrecord", ""), index)
            render_record(record, label_map, os.path.join(output_dir, name))
            rendered += 1
    return result


def render_record(record, label_map, path):
    """Saves the picture with each box and its class name drawn on it."""
    image = Image.fromarray(record.image)
    draw = ImageDraw.Draw(image)
    height, width = record.image.shape[:2]
    for i, ((ymin, xmin, ymax, xmax), label) in enumerate(zip(record.boxes, record.labels)):
        name = (label_map or {}).get(label) or (record.texts[i] if record.texts else str(label))
        # A colour per class, fixed so that the same class looks the same in every picture.
        colour = tuple(int(c) for c in np.random.default_rng(label).integers(64, 256, size=3))
        draw.rectangle([xmin * width, ymin * height, xmax * width - 1, ymax * height - 1],
                       outline=colour, width=2)
        draw.text((xmin * width + 2, ymin * height + 1), name, fill=colour)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path, quality=90)


def format_inspection(result, label_map=None):
    """The text report: counts, per-class table, box size histogram, invalid records."""
    lines = ["records: %d (without boxes: %d)" % (result.num_records, result.num_negatives),
             "boxes: %d" % sum(result.boxes_per_class.values()), "",
             "%6s  %-20s %8s %8s" % ("id", "class", "images", "boxes")]
    for label in sorted(result.boxes_per_class):
        lines.append("%6d  %-20s %8d %8d" % (label, (label_map or {}).get(label, "?"),
                                             result.images_per_class[label], result.boxes_per_class[label]))
    lines += ["", "box size (sqrt of area, pixels):"]
    most = max(result.size_histogram.values(), default=0)
    for low, high in zip(SIZE_BINS, SIZE_BINS[1:] + (None,)):
        count = result.size_histogram[low]
        span = "%4d-%-4s" % (low, high if high else "")
        lines.append("  %s %8d %s" % (span, count, "#" * (round(40 * count / most) if most else 0)))
    lines += ["", "invalid records: %d" % len(result.invalid)]
    lines += ["  %s [%d]: %s" % item for item in result.invalid]
    return "\n".join(lines)


def main(argv):
    """absl entry point: exits 1 when any record is invalid."""
    del argv
    files = expand_patterns(FLAGS.input_pattern)
    label_map_file = FLAGS.label_map or default_label_map(files[0])
    label_map = label_maps.load_label_map(label_map_file) if label_map_file else None
    if label_map_file:
        print("label map: %s" % label_map_file)
    if FLAGS.render and not FLAGS.output_dir:
        raise app.UsageError("--render needs --output_dir")
    result = inspect_records(files, label_map, FLAGS.num_classes, FLAGS.render, FLAGS.output_dir)
    print(format_inspection(result, label_map))
    if FLAGS.anchors:
        print()
        print(anchor_report(files, FLAGS.model_name, FLAGS.hparams))
    return 1 if result.invalid else 0


def anchor_report(files, model_name, hparams=""):
    """The anchor coverage of the records' boxes for a model, and the best grid searched (text)."""
    from efficientdet_tf.config import ConfigError, get_config
    from efficientdet_tf.data.records import read_boxes
    from efficientdet_tf.ops import anchor_coverage

    try:
        config = get_config(model_name, hparams or None)
    except ConfigError as e:
        raise app.UsageError("--model_name/--hparams: %s" % e) from None
    pictures, _ = read_boxes(files)
    boxes = anchor_coverage.input_boxes(pictures, int(config.image_size))
    if not len(boxes):
        return "anchor coverage: the records hold no boxes"
    now = anchor_coverage.coverage(boxes, config)
    best = anchor_coverage.suggest(boxes, config)
    what = "%d boxes at %s's input of %d px" % (len(boxes), config.name, int(config.image_size))
    return anchor_coverage.format_coverage(now, best, what)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
