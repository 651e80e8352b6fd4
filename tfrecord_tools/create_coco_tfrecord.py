"""Converts a COCO-format dataset (instances JSON + picture folder) to TFRecord shards."""

import json

from absl import app, flags

from tfrecord_tools import convert

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when run as a program, so tests can import the module)."""
    flags.DEFINE_string("image_dir", None, "Folder of the pictures (file_name is relative to it).")
    flags.DEFINE_string("object_annotations_file", None, "COCO instances JSON.")
    flags.DEFINE_string("gt_json_file", "", "Optional: also write the cleaned ground truth (only "
                        "what went into the records) as COCO JSON here.")
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # list the shared flags in --helpshort too
    flags.mark_flags_as_required(["image_dir", "object_annotations_file"])


def create_coco_tfrecord(image_dir, annotations_file, output_prefix, num_shards=1, num_workers=1,
                         gt_json_file=""):
    """Converts one COCO JSON; returns (shard paths, ConversionReport). Labels are COCO ids."""
    with open(annotations_file) as f:
        dataset = json.load(f)
    paths, report, cleaned = convert.convert_dataset(
        dataset, image_dir, output_prefix, num_shards=num_shards, num_workers=num_workers)
    if gt_json_file:
        convert.write_json(gt_json_file, cleaned)
    return paths, report


def main(argv):
    """absl entry point."""
    del argv
    paths, report = create_coco_tfrecord(FLAGS.image_dir, FLAGS.object_annotations_file,
                                         FLAGS.output_file_prefix, FLAGS.num_shards,
                                         FLAGS.num_workers, FLAGS.gt_json_file)
    return convert.finish(paths, report, FLAGS.strict)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
