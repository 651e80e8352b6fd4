"""Where OpenVINO spends D0's end-to-end time per op kind, and what the ONNX file's loop NMS costs per window choice.

    python -m benchmarks.profile_runtimes --checkpoint DIR [--runs 12] [--work_dir DIR]

Exports D0 (batch norms folded) as a SavedModel, our OpenVINO file and our ONNX file, and also
converts the SavedModel's `serving_default` as OpenVINO reads a SavedModel by itself
(`openvino.convert_model(dir)`: each anchor's best class taken channels-last, as the SavedModel
does). All get `check_picture(512)`, 2 threads, OpenVINO at float32 inference precision (as
`OpenVINODetector` compiles). Prints:
  1. end-to-end medians of the three files, timed interleaved;
  2. one profiled run of each OpenVINO file: its per-node counters (PERF_COUNT) summed per op kind,
     the largest first (ONNX Runtime's profiler is left out: it logs every op inside the NMS
     `Loop`, thousands per run, and inflated the loop tenfold);
  3. the ONNX loop NMS alone (`ops.loop_nms` through tf2onnx and ONNX Runtime) on the same
     picture's 49,104 candidates, for several `windows`, each checked against TensorFlow's kernel.
Needs the openvino and onnx extras. Shares are what to read; absolute times move with the load.
"""

import argparse
import collections
import os
import tempfile

WINDOW_CHOICES = ((1024,), (512, 4096), (512, 2048, 8192), (256, 1024, 4096, 16384))


def export_files(checkpoint, work):
    """{label: path} of the SavedModel, our OpenVINO and ONNX files and OpenVINO's own conversion."""
    import openvino

    from efficientdet_tf.export.onnx import export_onnx
    from efficientdet_tf.export.openvino import export_openvino
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.runtime import Detector

    detector = Detector("efficientdet-d0", checkpoint)
    folded = fold_and_check(detector.model, detector.config)
    saved = export_saved_model(folded, detector.config, os.path.join(work, "saved"))
    own = os.path.join(work, "openvino_as_saved_model.xml")
    openvino.save_model(openvino.convert_model(saved), own, compress_to_fp16=False)
    return detector, {"openvino, converted as the SavedModel": own,
                      "openvino, our export": export_openvino(saved, detector.config, os.path.join(work, "ours.xml")),
                      "onnx, our export": export_onnx(folded, detector.config, os.path.join(work, "ours.onnx"))}


def openvino_request(path, profile=False):
    import openvino
    properties = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2, "PERF_COUNT": profile}
    return openvino.Core().compile_model(path, "CPU", properties).create_infer_request()


def onnx_session(path_or_bytes):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def op_kinds_openvino(path, picture, runs):
    """{node type: ms per run} from one compiled model's counters after `runs` warm runs."""
    request = openvino_request(path, profile=True)
    for _ in range(runs):
        request.infer({0: picture})
    kinds = collections.Counter()
    for node in request.profiling_info:  # the last run's counters
        kinds[node.node_type] += node.real_time.total_seconds() * 1e3
    return kinds


def loop_nms_times(detector, picture, runs):
    """{windows: (median ms, same as the kernel)} for the loop NMS alone on the picture's candidates."""
    import logging

    import numpy as np
    import tensorflow as tf
    import tf2onnx

    from benchmarks.timing import interleaved_medians
    from efficientdet_tf import factory
    from efficientdet_tf.ops import box_coder, postprocess
    from efficientdet_tf.ops.loop_nms import loop_nms

    config = detector.config
    inputs, _ = factory.build_preprocessor(config)(picture)
    class_outputs, box_outputs = detector.model(inputs, training=False)
    logits, classes = postprocess.best_class(list(class_outputs), config.num_classes)
    deltas = tf.concat([tf.reshape(b, [1, -1, 4]) for b in box_outputs], axis=1)
    anchors = tf.constant(factory.build_anchors(config), tf.float32)[None]
    feed = {"boxes": box_coder.decode(deltas, anchors).numpy(), "scores": tf.sigmoid(logits).numpy(),
            "classes": classes.numpy()}
    params = postprocess.nms_parameters(**{k: v for k, v in config.nms.as_dict().items()
                                           if k in ("method", "iou_threshold", "score_threshold", "sigma")})
    want = tf.image.non_max_suppression_with_scores(feed["boxes"][0], feed["scores"][0], 100, *params)[1].numpy()
    signature = [tf.TensorSpec([None, None, 4], tf.float32, name="boxes"),
                 tf.TensorSpec([None, None], tf.float32, name="scores"),
                 tf.TensorSpec([None, None], tf.int32, name="classes")]
    fns, same = {}, {}
    for windows in WINDOW_CHOICES:
        fn = tf.function(lambda b, s, c, w=windows: loop_nms(b, s, c, 100, params, windows=w),
                         input_signature=signature)
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=17)
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        session = onnx_session(proto.SerializeToString())
        same[windows] = bool(np.allclose(session.run(None, feed)[1][0][:len(want)], want, rtol=1e-5))
        fns[windows] = lambda session=session: session.run(None, feed)
    medians = interleaved_medians(fns, runs, warmup=2)
    return {windows: (medians[windows], same[windows]) for windows in WINDOW_CHOICES}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="D0 checkpoint folder (the reference weights)")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--work_dir", default=None)
    args = parser.parse_args()

    from benchmarks.timing import interleaved_medians
    from efficientdet_tf.export.saved_model import check_picture

    work = args.work_dir or tempfile.mkdtemp(prefix="profile_runtimes_")
    detector, files = export_files(args.checkpoint, work)
    picture = check_picture(512)[None]
    fns = {}
    for label, path in files.items():
        if label.startswith("openvino"):
            fns[label] = lambda request=openvino_request(path): request.infer({0: picture})
        else:
            fns[label] = lambda session=onnx_session(path): session.run(None, {"images": picture})
    print("| file (end to end, check_picture 512x512, 2 threads) | median ms |\n|---|---|")
    for label, ms in interleaved_medians(fns, args.runs, warmup=3).items():
        print("| %s | %.1f |" % (label, ms))
    for label, path in files.items():
        if not label.startswith("openvino"):
            continue
        kinds = op_kinds_openvino(path, picture, args.runs)
        print("\n%s: %.1f ms profiled per run; largest op kinds:" % (label, sum(kinds.values())))
        print("| op kind | ms per run |\n|---|---|")
        for kind, ms in kinds.most_common(8):
            print("| %s | %.2f |" % (kind, ms))
    print("\n| loop NMS windows (ONNX Runtime, NMS alone) | median ms | same as TensorFlow's kernel |\n|---|---|---|")
    for windows, (ms, same) in loop_nms_times(detector, picture, args.runs).items():
        print("| %s | %.1f | %s |" % (", ".join(map(str, windows)), ms, same))


if __name__ == "__main__":
    main()
