"""COCO AP under the official evaluation's post-processing beside the serving default.

    python -m benchmarks.eval_settings --checkpoint demo_out/model \
        --val_file_pattern 'demo_out/data/val-*.tfrecord' [--reference_dir <folder holding the D0 reference_outputs.npz>]

Evaluates one model twice with the project's evaluator: `eval.nms_preset=official` (per-class
Gaussian soft-NMS over the 5000 best (anchor, class) pairs, as google/automl's tf2/eval.py) and
`eval.nms_preset=config` (the `nms` section: global class-agnostic soft-NMS over every anchor, what
the exports serve). With `--reference_dir` (a D0 reference holding `model.index` and
`reference_outputs.npz`) it also runs both settings on the reference picture with the reference
weights and compares their detections with each other and with the reference's own.

Each result is printed as one JSON line (also appended to $OUT/eval_settings.jsonl when OUT is set).
"""

import argparse
import os
import time

import numpy as np

from benchmarks.timing import recorder

say = recorder("eval_settings.jsonl")
PRESETS = ("official", "config")


def shapes_ap(args):
    from efficientdet_tf.eval.evaluator import evaluate

    for preset in PRESETS:
        start = time.perf_counter()
        report = evaluate(args.checkpoint, val_file_pattern=args.val_file_pattern, model_name=args.model_name,
                          hparams={"eval.nms_preset": preset}, progress=False)
        seconds = time.perf_counter() - start
        say(what="shapes AP", preset=preset, checkpoint=args.checkpoint, pictures=report.num_pictures,
            seconds=round(seconds, 1), **{k: round(float(report.metrics[k]), 4) for k in ("AP", "AP50", "AP75", "ARmax100")})


def _matched(a, b, iou=0.5):
    """How many detections of `a` have a detection of `b` with the same class at IoU >= iou."""
    from efficientdet_tf.ops.target_assigner import pairwise_iou

    if not len(a) or not len(b):
        return 0
    overlap = pairwise_iou(a["boxes"], b["boxes"]).numpy()
    same = a["classes"][:, None] == b["classes"][None, :]
    return int(np.sum(np.any((overlap >= iou) & same, axis=1)))


def reference_picture(args):
    from efficientdet_tf import factory
    from efficientdet_tf.config import get_config
    from efficientdet_tf.runtime import Detector

    ref = np.load(os.path.join(args.reference_dir, "reference_outputs.npz"))
    picture = ref["image_uint8"]
    detections = {}
    for preset in PRESETS:
        config = factory.evaluation_config(get_config("efficientdet-d0"), preset)
        out = Detector(config, os.path.join(args.reference_dir, "model"))(picture)
        n = int(out["num_detections"])
        detections[preset] = {"boxes": out["detection_boxes"][:n].astype(np.float32),
                              "scores": out["detection_scores"][:n], "classes": out["detection_classes"][:n]}
    for name in ("global", "per_class"):
        valid = int(ref[name + "_valid"][0])
        detections["reference " + name] = {"boxes": ref[name + "_boxes"][0, :valid].astype(np.float32),
                                           "scores": ref[name + "_scores"][0, :valid],
                                           "classes": ref[name + "_classes"][0, :valid]}
    official, config = detections["official"], detections["config"]
    say(what="D0 reference picture", official_detections=len(official["scores"]),
        config_detections=len(config["scores"]),
        official_classes=len(set(official["classes"].tolist())), config_classes=len(set(config["classes"].tolist())),
        official_top_score=round(float(official["scores"].max()), 4), config_top_score=round(float(config["scores"].max()), 4),
        official_matched_in_config=_matched(official, config),
        config_matched_reference_global=_matched(config, detections["reference global"]),
        official_matched_reference_per_class=_matched(official, detections["reference per_class"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model dir, checkpoint or SavedModel")
    parser.add_argument("--val_file_pattern", required=True)
    parser.add_argument("--model_name", default=None, help="for a bare checkpoint")
    parser.add_argument("--reference_dir", default="", help="a D0 reference dir (model.index, reference_outputs.npz)")
    args = parser.parse_args()
    shapes_ap(args)
    if args.reference_dir:
        reference_picture(args)


if __name__ == "__main__":
    main()
