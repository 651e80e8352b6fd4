"""OpenVINO fp32 and NNCF int8 beside our SavedModel: COCO AP on validation records and end-to-end latency.

    python -m benchmarks.openvino_paths --checkpoint MODEL [--model_name NAME] --calibration 'train-*.tfrecord'
        [--val 'val-*.tfrecord'] [--picture 480x640] [--runs 30] [--threads 2]

Exports the model (`efficientdet-export`'s functions: SavedModel, `--openvino`, `--openvino_int8` on
100 calibration pictures) into a temporary folder, then for each file: COCO AP through
`efficientdet-eval`'s serving path when `--val` is given, and the median latency of one picture of
`--picture` pixels end to end (each runtime's own preprocessing and NMS), the runtimes timed in
interleaved rounds in this process.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model_name", default=None)
    parser.add_argument("--calibration", required=True, help="TFRecords whose pictures calibrate int8")
    parser.add_argument("--val", default="", help="validation TFRecords for AP (skipped when empty)")
    parser.add_argument("--picture", default="480x640")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from efficientdet_tf.checkpoints.opening import open_model
    from efficientdet_tf.eval.evaluator import evaluate
    from efficientdet_tf.export.openvino import calibration_pictures, export_openvino, quantize_openvino
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.runtime import load_detector

    root = tempfile.mkdtemp(prefix="openvino_paths_")
    network, config = open_model(args.model_name, args.checkpoint, None)
    saved = export_saved_model(fold_and_check(network, config), config, os.path.join(root, "export"))
    xml = export_openvino(saved, config, os.path.join(root, "model.xml"))
    int8 = quantize_openvino(xml, calibration_pictures(args.calibration, 100), os.path.join(root, "model_int8.xml"))
    paths = {"SavedModel": saved, "OpenVINO fp32": xml, "OpenVINO int8 (NNCF)": int8}
    detectors = {name: load_detector(path, num_threads=args.threads) if name != "SavedModel" else load_detector(path)
                 for name, path in paths.items()}
    height, width = (int(v) for v in args.picture.split("x"))
    picture = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    times = {name: [] for name in detectors}
    for detector in detectors.values():
        detector(picture)
    for _ in range(args.runs):
        for name, detector in detectors.items():
            start = time.perf_counter()
            detector(picture)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["SavedModel"])
    for name, path in paths.items():
        row = {"path": name, "model": config.name, "image_size": int(config.image_size), "picture": args.picture,
               "median_ms": round(1000 * statistics.median(times[name]), 2),
               "x_saved_model": round(base / statistics.median(times[name]), 2)}
        if args.val:
            metrics = evaluate(path, val_file_pattern=args.val, progress=False).metrics
            row.update({k: round(metrics[k], 4) for k in ("AP", "AP50", "APs")})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
