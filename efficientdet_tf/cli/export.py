"""efficientdet-export: SavedModel for TF Serving (four signatures) and optional TFLite and ONNX files."""

import os

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_name", "efficientdet-d0", "Model name, e.g. efficientdet-d0 or efficientdet-lite0.")
flags.DEFINE_string("checkpoint", "", "Official checkpoint (dir or prefix), .keras / .weights.h5, or a "
                    "tf.train.Checkpoint(model=...) prefix. Empty: random weights.")
flags.DEFINE_string("hparams", "", "Overrides 'a=1,nms.mode=per_class' or a yaml file.")
flags.DEFINE_string("export_dir", None, "Model base folder; the SavedModel goes to <export_dir>/<version>/.")
flags.DEFINE_integer("version", 1, "Version sub-folder (TF Serving serves the highest).")
flags.DEFINE_list("tflite", [], "TFLite files to write: any of fp32,fp16,int8,full_int8 (full_int8: uint8 in, "
                  "integer kernels up to the NMS, for integer-only accelerators).")
flags.DEFINE_string("calibration_file_pattern", "", "TFRecords (image/encoded) to calibrate int8 and full_int8 on.")
flags.DEFINE_integer("num_calibration_images", 100, "Pictures read for int8 calibration.")
flags.DEFINE_string("tflite_input_size", "", "HxW of the TFLite files' fixed input (default: image_size square). "
                    "MediaPipe stretches pictures to it: give your camera's aspect ratio, e.g. 384x512 for 4:3.")
flags.DEFINE_string("label_map", "", "YAML/JSON {id: name}: the class names of the TFLite files' metadata "
                    "(default: the config's eval.label_map; without one, class_<id>).")
flags.DEFINE_bool("fold_batch_norms", True, "Fold batch norms into the convolutions.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the network inside the SavedModel.")
flags.DEFINE_bool("openvino", False, "Also write <export_dir>/<model_name>.xml + .bin: the SavedModel's "
                  "serving_default (pictures of any size, soft-NMS inside) as an OpenVINO model (openvino extra).")
flags.DEFINE_bool("openvino_int8", False, "With --openvino: also write <model_name>_int8.xml, quantized by NNCF "
                  "on --calibration_file_pattern's pictures (convolutions int8, the rest float).")
flags.DEFINE_bool("onnx", False, "Also write <export_dir>/<model_name>.onnx: uint8 pictures of any size in, "
                  "detections out, NMS inside (needs the onnx extra).")
flags.DEFINE_bool("onnx_network_only", False, "Also write <export_dir>/<model_name>_network.onnx: normalised "
                  "input, raw head outputs (bring your own decoding and NMS, e.g. TensorRT EfficientNMS).")


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if not FLAGS.export_dir:
        raise common.UsageError("--export_dir is required")
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import QUANTIZATIONS, export_tflite
    bad = [q for q in FLAGS.tflite if q not in QUANTIZATIONS]
    if bad:
        raise common.UsageError("--tflite takes %s, got %s" % (",".join(QUANTIZATIONS), ",".join(bad)))
    integer = [q for q in FLAGS.tflite if q in ("int8", "full_int8")]
    if integer and not FLAGS.calibration_file_pattern:
        raise common.UsageError("--tflite=%s needs --calibration_file_pattern" % integer[0])
    if FLAGS.openvino_int8 and not (FLAGS.openvino and FLAGS.calibration_file_pattern):
        raise common.UsageError("--openvino_int8 needs --openvino and --calibration_file_pattern")
    if FLAGS.onnx or FLAGS.onnx_network_only:
        from efficientdet_tf.export.onnx import import_converter
        try:
            import_converter()
        except ImportError as e:
            raise common.UsageError(str(e)) from None
    from efficientdet_tf.checkpoints.loading import saved_config_path
    from efficientdet_tf.checkpoints.opening import open_model
    # A trainer model_dir says which network it holds (its config.yaml); --model_name is for the rest.
    saved = saved_config_path(FLAGS.checkpoint) if FLAGS.checkpoint else None
    model, config = open_model(None if saved else FLAGS.model_name, FLAGS.checkpoint or None, FLAGS.hparams or None)
    if FLAGS.onnx and config.nms.mode == "combined":
        raise common.UsageError("--onnx runs NMS as ONNX ops, which covers nms.mode=global and per_class, "
                                "not combined")
    if FLAGS.openvino:
        from efficientdet_tf.export.openvino import import_nncf, import_openvino
        try:
            import_openvino()
            if FLAGS.openvino_int8:
                import_nncf()
        except ImportError as e:
            raise common.UsageError(str(e)) from None
    label_map = _label_map(config) if FLAGS.tflite else None  # checked before anything is written
    network = fold_and_check(model, config) if FLAGS.fold_batch_norms else model
    path = export_saved_model(network, config, FLAGS.export_dir, FLAGS.version, jit_compile=FLAGS.jit_compile)
    print("SavedModel: %s" % path)
    if FLAGS.openvino:
        from efficientdet_tf.export.openvino import ConversionError, export_openvino

        try:
            target = export_openvino(path, config, os.path.join(FLAGS.export_dir, config.name + ".xml"))
        except ConversionError as e:
            raise common.UsageError(str(e)) from None
        print("OpenVINO: %s (+ .bin; NMS: %s, as in the SavedModel)" % (target, config.nms.method))
        if FLAGS.openvino_int8:
            from efficientdet_tf.export.openvino import calibration_pictures, quantize_openvino

            try:
                pictures = calibration_pictures(FLAGS.calibration_file_pattern, FLAGS.num_calibration_images)
                quantized = quantize_openvino(target, pictures, target[:-len(".xml")] + "_int8.xml")
            except (ImportError, ValueError) as e:
                raise common.UsageError(str(e).splitlines()[0]) from None
            print("OpenVINO int8: %s (NNCF, %d calibration pictures)" % (quantized, len(pictures)))
    input_size = None
    if FLAGS.tflite_input_size:
        try:
            input_size = tuple(int(v) for v in FLAGS.tflite_input_size.lower().split("x"))
            if len(input_size) != 2 or min(input_size) < 1:
                raise ValueError
        except ValueError:
            raise common.UsageError("--tflite_input_size must be HxW, e.g. 384x512, got %r"
                                    % FLAGS.tflite_input_size) from None
    if FLAGS.tflite:
        from efficientdet_tf.export import mediapipe_metadata

        if not mediapipe_metadata.available():
            print("TFLite files are written without metadata (MediaPipe Tasks needs it): %s"
                  % mediapipe_metadata.INSTALL_HINT)
    for quantization in FLAGS.tflite:
        # Beside the version folders: TF Serving only looks at numeric sub-folders.
        target = os.path.join(FLAGS.export_dir, "%s_%s.tflite" % (config.name, quantization))
        export_tflite(network, config, target, quantization, calibration_file_pattern=FLAGS.calibration_file_pattern,
                      num_calibration_images=FLAGS.num_calibration_images, label_map=label_map,
                      input_size=input_size)
        print("TFLite %s: %s" % (quantization, target))
        if quantization == "full_int8":
            from efficientdet_tf.export.tflite_graph import float_ops

            with open(target, "rb") as f:
                ops = float_ops(f.read())
            print("  ops left in float (run on the CPU beside an integer-only accelerator): %s"
                  % ", ".join("%s x%d" % item for item in sorted(ops.items())))
    if FLAGS.onnx or FLAGS.onnx_network_only:
        from efficientdet_tf.export.onnx import export_onnx
    for wanted, suffix, network_only in ((FLAGS.onnx, "", False), (FLAGS.onnx_network_only, "_network", True)):
        if wanted:
            target = export_onnx(network, config, os.path.join(FLAGS.export_dir, config.name + suffix + ".onnx"),
                                 network_only=network_only)
            print("ONNX%s: %s" % (" network only" if network_only else "", target))


def _label_map(config):
    """The class names for the TFLite metadata: --label_map, else eval.label_map; ids must be 1..num_classes."""
    from efficientdet_tf.data.label_map import load_label_map

    label_file = FLAGS.label_map or config.eval.label_map
    try:
        label_map = load_label_map(label_file) if label_file else None
    except (OSError, ValueError) as e:
        raise common.UsageError("--label_map: %s" % e) from None
    outside = sorted(i for i in (label_map or {}) if not 1 <= int(i) <= config.num_classes)
    if outside:
        raise common.UsageError("the label map %s names class id %d but the model predicts ids 1..%d "
                                "(num_classes=%d): give the label map of the data it was trained on"
                                % (label_file, outside[-1], config.num_classes, config.num_classes))
    return label_map


def run():
    common.run(main)


if __name__ == "__main__":
    run()
