"""Converts a Pascal VOC-layout dataset (XML annotations) to TFRecord shards and COCO ground truth."""

import os
import xml.etree.ElementTree as ET

from absl import app, flags

from efficientdet_tf.data import label_map as label_maps
from tfrecord_tools import convert
from tfrecord_tools.report import ConversionReport

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when run as a program, so tests can import the module)."""
    flags.DEFINE_string("data_dir", None, "VOC folder holding Annotations/, JPEGImages/ and "
                        "ImageSets/Main/.")
    flags.DEFINE_string("set", "trainval", "Image set: reads ImageSets/Main/<set>.txt.")
    flags.DEFINE_string("label_map", "", "YAML/JSON {id: name}; empty derives ids 1..N from the "
                        "sorted class names found in the set.")
    flags.DEFINE_bool("ignore_difficult", False, "Leave out objects marked difficult.")
    flags.DEFINE_string("gt_json_file", "", "COCO ground-truth JSON to write; empty writes "
                        "<output_file_prefix>_gt.json.")
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # list the shared flags in --helpshort too
    flags.mark_flag_as_required("data_dir")


def _text(node, path, default=None):
    found = node.find(path)
    return found.text.strip() if found is not None and found.text else default


def _positive_int(text):
    try:
        value = int(float(text))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _voc_box(obj):
    """VOC box (1-based inclusive pixel indices) -> COCO [x, y, w, h] in pixel edges, or None."""
    try:
        xmin, ymin, xmax, ymax = (float(_text(obj, "bndbox/" + k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        return None  # missing or non-numeric: the shared cleaning counts it as invalid
    return [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]


def _image_file(data_dir, stem, xml_filename):
    """The picture of `stem`: JPEGImages/<stem>.jpg, else the file the XML names."""
    default = stem + ".jpg"
    if not os.path.isfile(os.path.join(data_dir, "JPEGImages", default)) and xml_filename:
        return xml_filename
    return default


def read_voc(data_dir, set_name, label_map=None, ignore_difficult=False, report=None):
    """Reads a VOC set into a COCO-format dict (image ids 1..N in set-file order).

    `label_map` ({id: name}) fixes the ids; when None, the sorted class names of the set get ids
    1..N. Objects of names outside a given label map keep their name as category id so that the
    shared conversion counts and reports them as unknown.
    """
    report = report if report is not None else ConversionReport()
    with open(os.path.join(data_dir, "ImageSets", "Main", set_name + ".txt")) as f:
        stems = [line.split()[0] for line in f if line.strip()]
    parsed = []
    for stem in stems:
        xml_path = os.path.join(data_dir, "Annotations", stem + ".xml")
        try:
            root = ET.parse(xml_path).getroot()
        except (OSError, ET.ParseError) as error:
            report.add("annotation_missing_skipped", "%s (%s)" % (xml_path, error))
            continue
        parsed.append((stem, root))
    if label_map is None:
        names = sorted({_text(obj, "name", "") for _, root in parsed for obj in root.iter("object")})
        label_map = {i + 1: name for i, name in enumerate(names)}
    ids = {name: i for i, name in label_map.items()}
    images, annotations = [], []
    for image_id, (stem, root) in enumerate(parsed, start=1):
        file_name = _image_file(data_dir, stem, _text(root, "filename"))
        image = {"id": image_id, "file_name": file_name}
        size = [_positive_int(_text(root, "size/" + k)) for k in ("width", "height")]
        if all(size):  # a missing size is fine: the real one is read from the picture
            image.update(width=size[0], height=size[1])
        images.append(image)
        for obj in root.iter("object"):
            name = _text(obj, "name", "")
            if ignore_difficult and _text(obj, "difficult", "0") == "1":
                report.add("difficult_skipped", "%s %s" % (stem, name))
                continue
            box = _voc_box(obj)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": ids.get(name, name), "bbox": box, "iscrowd": 0})
    categories = [{"id": i, "name": n} for i, n in sorted(label_map.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def create_voc_tfrecord(data_dir, set_name, output_prefix, label_map_file="", ignore_difficult=False,
                        num_shards=1, num_workers=1, gt_json_file=""):
    """Converts one VOC set; returns (shard paths, ConversionReport). Writes the COCO ground truth
    of what went into the records to `gt_json_file` (default <prefix>_gt.json)."""
    report = ConversionReport()
    label_map = label_maps.load_label_map(label_map_file) if label_map_file else None
    dataset = read_voc(data_dir, set_name, label_map, ignore_difficult, report)
    paths, report, cleaned = convert.convert_dataset(
        dataset, os.path.join(data_dir, "JPEGImages"), output_prefix, num_shards, num_workers, report)
    convert.write_json(gt_json_file or convert.gt_json_path(output_prefix), cleaned)
    return paths, report


def main(argv):
    """absl entry point."""
    del argv
    paths, report = create_voc_tfrecord(FLAGS.data_dir, FLAGS.set, FLAGS.output_file_prefix,
                                        FLAGS.label_map, FLAGS.ignore_difficult, FLAGS.num_shards,
                                        FLAGS.num_workers, FLAGS.gt_json_file)
    return convert.finish(paths, report, FLAGS.strict)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
