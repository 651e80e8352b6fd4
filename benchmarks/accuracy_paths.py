"""COCO AP of every serving path of one trained model: Keras fp32, SavedModel, TFLite fp32/fp16/int8/full_int8,
ONNX fp32/int8.

    python -m benchmarks.accuracy_paths --model_dir demo_out/model \
        --val_file_pattern 'demo_out/shapes/val-*' --calibration_file_pattern 'demo_out/shapes/train-*' \
        [--paths keras,savedmodel,tflite_fp32,tflite_fp16,tflite_int8,tflite_full_int8,onnx_fp32,onnx_int8]
        [--num_calibration_images 100] [--hparams eval.nms_preset=config]

Exports the model dir's EMA weights each way (batch norms folded for the SavedModel and TFLite
files), evaluates each with `efficientdet_tf.eval.evaluate` on the same validation records and
prints AP, AP50 and AP75 with the difference to the Keras model in AP points. The Keras model runs
the evaluation input pipeline; the SavedModel gets the decoded pictures; the TFLite files get them
letterboxed to their fixed input by `TFLiteDetector`; the ONNX files run in ONNX Runtime. Every
exported file runs the NMS inside it (the `nms` section); the Keras model runs the evaluation's
(`eval.nms_preset`), so pass --hparams eval.nms_preset=config to compare like with like. One JSON
line per path goes to --json.
"""

import argparse
import json
import os
import sys
import tempfile
import time

PATHS = ("keras", "savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "tflite_full_int8", "onnx_fp32",
         "onnx_int8")


def export_path(path, folded, config, root, calibration, num_calibration_images):
    """Exports the folded network for `path` under `root`; returns what `evaluate` takes."""
    from efficientdet_tf.export.saved_model import export_saved_model
    from efficientdet_tf.export.tflite import export_tflite

    if path == "savedmodel":
        return export_saved_model(folded, config, os.path.join(root, "saved"), 1)
    if path.startswith("onnx"):
        from efficientdet_tf.export.onnx import export_onnx

        fp32 = os.path.join(root, "model.onnx")
        if not os.path.exists(fp32):
            export_onnx(folded, config, fp32)
        if path == "onnx_fp32":
            return fp32
        return quantize_onnx(fp32, os.path.join(root, "model_int8.onnx"), calibration, num_calibration_images)
    quantization = path[len("tflite_"):]
    target = os.path.join(root, "%s.tflite" % quantization)
    return export_tflite(folded, config, target, quantization, calibration_file_pattern=calibration,
                         num_calibration_images=num_calibration_images)


def calibration_pictures(file_pattern, count):
    """uint8 [1, H, W, 3] pictures decoded from the `image/encoded` of TFRecords, at their own sizes
    (the end-to-end file resizes them itself)."""
    import tensorflow as tf

    from efficientdet_tf.data import schema
    from efficientdet_tf.ops.image_decoding import decode_image

    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ValueError("no TFRecord file matches --calibration_file_pattern=%r" % file_pattern)
    for record in tf.data.TFRecordDataset(sorted(files)).take(count):
        encoded = tf.io.parse_single_example(
            record, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})[schema.ENCODED]
        yield decode_image(encoded).numpy()[None]


def quantize_onnx(fp32_path, int8_path, calibration_file_pattern, num_calibration_images=100):
    """Writes an int8 copy of an end-to-end ONNX file with ONNX Runtime's static quantisation: the
    network's convolutions quantised (weights per channel, activations calibrated on the pictures),
    preprocessing, decoding and NMS float; QDQ format. Measured here, not shipped: on the demo
    model it loses 38 AP points (BENCHMARKS.md)."""
    try:
        from onnxruntime import quantization
    except ImportError:
        raise ImportError("int8 ONNX needs onnxruntime: pip install 'efficientdet_tf[onnx]'") from None

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.pictures = calibration_pictures(calibration_file_pattern, num_calibration_images)

        def get_next(self):
            picture = next(self.pictures, None)
            return None if picture is None else {"images": picture}

    quantization.quantize_static(
        fp32_path, int8_path, Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        op_types_to_quantize=["Conv"], activation_type=quantization.QuantType.QInt8,
        weight_type=quantization.QuantType.QInt8, calibrate_method=quantization.CalibrationMethod.MinMax)
    return int8_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="trainer model dir (config.yaml + ckpt-N)")
    parser.add_argument("--val_file_pattern", required=True)
    parser.add_argument("--calibration_file_pattern", default="", help="TFRecords for int8 calibration")
    parser.add_argument("--num_calibration_images", type=int, default=100)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--json", default="", help="append one JSON line per path to this file")
    parser.add_argument("--hparams", default="", help="evaluation overrides, e.g. eval.nms_preset=config")
    args = parser.parse_args()
    paths = args.paths.split(",")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        sys.exit("--paths takes %s, got %s" % (",".join(PATHS), ",".join(unknown)))
    if {"tflite_int8", "tflite_full_int8", "onnx_int8"} & set(paths) and not args.calibration_file_pattern:
        sys.exit("tflite_int8, tflite_full_int8 and onnx_int8 need --calibration_file_pattern")

    from efficientdet_tf.checkpoints.loading import saved_config_path
    from efficientdet_tf.config import get_config
    from efficientdet_tf.eval.evaluator import evaluate

    # The model dir's config.yaml names the model (and its class count) for the TFLite files too.
    config_file = saved_config_path(args.model_dir)
    model_name = get_config(config_file).name
    folded = config = None
    if set(paths) - {"keras"}:  # one folding serves every export
        from efficientdet_tf.export.saved_model import fold_and_check
        from efficientdet_tf.checkpoints.opening import open_model

        model, config = open_model(args.model_dir)
        folded = fold_and_check(model, config)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for path in paths:
            start = time.time()
            target = args.model_dir if path == "keras" else export_path(
                path, folded, config, root, args.calibration_file_pattern, args.num_calibration_images)
            metrics = evaluate(target, val_file_pattern=args.val_file_pattern, model_name=config_file,
                               hparams=args.hparams or None, progress=False).metrics
            results[path] = metrics
            print("%-12s AP %.4f  AP50 %.4f  AP75 %.4f  (%.0f s)" % (
                path, metrics["AP"], metrics["AP50"], metrics["AP75"], time.time() - start), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"model_dir": args.model_dir, "path": path,
                                        **{k: metrics[k] for k in ("AP", "AP50", "AP75")}}) + "\n")
    base = results.get("keras")
    print("\n%s on %s" % (model_name, args.val_file_pattern))
    print("| path | AP | AP50 | AP75 | ΔAP vs Keras (points) |\n|---|---|---|---|---|")
    for path, m in results.items():
        delta = "%+.2f" % (100 * (m["AP"] - base["AP"])) if base else "–"
        print("| %s | %.4f | %.4f | %.4f | %s |" % (path, m["AP"], m["AP50"], m["AP75"], delta))


if __name__ == "__main__":
    main()
