"""What fitted anchors give: AP of a short training run with the default anchor grid and with the suggested one.

    python -m benchmarks.anchor_fit [--train_steps 600] [--size_range 256,320] [--num_train 400]

Generates shapes pictures larger than the demo's (so that, shrunk to its 128 px input, most shapes are
8-35 px: the default anchors of scale 4, 32 px and up, miss most of them), writes TFRecords, asks
`anchor_coverage.suggest` for a grid, then trains the demo's model from scratch on the same records
with the default grid and with the suggested one (same seed, same steps) and evaluates both on the
held-out pictures. Prints each run's coverage and COCO AP as JSON lines.
"""

import argparse
import json
import os
import tempfile

from efficientdet_tf.train.host_memory import keep_freed_memory

keep_freed_memory()  # before TensorFlow starts, as the command-line tools do


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--size_range", default="256,320", help="picture sides (pixels) of the shapes")
    parser.add_argument("--num_train", type=int, default=400)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="", help="default: a temporary folder")
    args = parser.parse_args()

    from efficientdet_tf.cli.demo import demo_config
    from efficientdet_tf.data.label_map import label_map_path
    from efficientdet_tf.data.records import read_boxes
    from efficientdet_tf.eval.evaluator import Evaluator
    from efficientdet_tf.ops import anchor_coverage
    from efficientdet_tf.train.trainer import train
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    work = args.work_dir or tempfile.mkdtemp(prefix="anchor_fit_")
    low, high = (int(v) for v in args.size_range.split(","))
    jsons = make_shapes_dataset(work, args.num_train, args.num_val, args.seed, size_range=(low, high))
    records = {}
    for split, json_path in jsons.items():
        paths, _ = create_coco_tfrecord.create_coco_tfrecord(os.path.join(work, split), json_path,
                                                             os.path.join(work, split), num_shards=1)
        records[split] = paths
    label_file = label_map_path(os.path.join(work, "train"))
    # The demo's model with Lite0's own anchors (scale 4): the grid a user starts from.
    base = demo_config(5, label_file, overrides="anchors.anchor_scale=4.0")
    boxes = anchor_coverage.input_boxes(read_boxes(records["train"])[0], int(base.image_size))
    suggested = anchor_coverage.suggest(boxes, base)
    runs = {"default": (base, anchor_coverage.coverage(boxes, base)),
            "suggested": (base.replace(suggested.override()), suggested)}
    for name, (config, covered) in runs.items():
        model_dir = os.path.join(work, "model_" + name)
        train(config, model_dir, train_file_pattern=",".join(records["train"]), train_steps=args.train_steps,
              save_every=args.train_steps, keep_checkpoints=1, seed=args.seed, progress=False)
        metrics = Evaluator(config, val_file_pattern=",".join(records["val"])).evaluate(model_dir).metrics
        print(json.dumps({"run": name, "anchors": covered.override(), "coverage": round(covered.share, 4),
                          "AP": round(metrics["AP"], 4), "AP50": round(metrics["AP50"], 4),
                          "APs": round(metrics["APs"], 4), "train_steps": args.train_steps,
                          "pictures": "%d-%d px" % (low, high)}), flush=True)


if __name__ == "__main__":
    main()
