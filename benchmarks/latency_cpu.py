"""CPU latency of D0 at batch 1 and throughput at batch 8: Keras, SavedModel, TFLite, ONNX, OpenVINO and `effdet`.

    python -m benchmarks.latency_cpu [--runs 20] [--warmup 3] [--repeat 3] [--checkpoint DIR] [--no_peer] [--no_onnx] [--no_openvino] [--xla]
                                     [--quantized] [--batch8] [--memory] [--processes N]
    python -m benchmarks.latency_cpu --official_dir $TMPDIR/automl --official_python $TMPDIR/automl_venv/bin/python
                                     [--processes 3] [--runs 10] [--repeat 2] [--batch8] [--memory] [--work_dir DIR]
                                     [--model_name efficientdet-lite0 --checkpoint random]

With --official_dir (a google/automl checkout; nothing of it enters the project) the official
SavedModel, exported by its own driver from the same checkpoint, is timed beside our SavedModel,
TFLite fp32/int8/full_int8 and ONNX files, OpenVINO fp32/int8 files, MediaPipe's ObjectDetector on our TFLite
files and `effdet`, in one process of the official environment
(`--official_python`, tf-keras under TF_USE_LEGACY_KERAS=1), interleaved, in --processes fresh
processes; ratios to the official, raw-output parity with it and (--memory) serving memory of both
are printed. See beside_official.py.

Network only and end to end (preprocessing + network + decoding + soft-NMS from a uint8 picture) for
each, medians in ms over repeated runs in one process, and ratios to the PyTorch `effdet`
tf_efficientdet_d0 (random weights, pretrained_backbone=False; bench_task='' for the network,
'predict' for decoding + NMS). The peer is skipped with a message when torch/effdet do not import.
The reference checkpoint is loaded when present so NMS sees realistic scores. --quantized adds the
fp16 TFLite file, with --int8 also the int8 and full_int8 files (calibrated on synthetic shapes
pictures), --batch8 the throughput at batch 8 (pictures/s) of the SavedModel and the peer,
--memory the resident memory of a fresh process that loads the SavedModel and serves 20 pictures,
stage by stage.

--processes N repeats the whole measurement in N fresh processes, one after the other, and adds a
summary of each candidate's ratio to the peer (lowest, median, highest): the peer's speed differs
from process to process far more than within one (docs/benchmark_history.md), so one process's ratio is one
draw.
"""

import argparse
import functools
import os
import re
import statistics
import subprocess
import sys
import tempfile

from benchmarks.peers import peer_fns
from benchmarks.shapes import shapes_records
from benchmarks.timing import interleaved_medians
from efficientdet_tf.litert import make_interpreter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                  "reference", "efficientdet-d0")


def tensorflow_fns(args, root):
    """{label: fn} for the Keras model, the SavedModel with and without XLA, and TFLite."""
    import numpy as np
    import tensorflow as tf

    from efficientdet_tf.export.saved_model import check_picture, export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import export_tflite
    from efficientdet_tf.runtime import Detector

    checkpoint = args.checkpoint if os.path.isdir(args.checkpoint or "") else None
    detector = Detector("efficientdet-d0", checkpoint)
    picture = check_picture(512)[None]  # on uniform noise the reference D0's boxes are infinite
    net_input = np.random.default_rng(1).normal(size=(1, 512, 512, 3)).astype(np.float32)
    network = tf.function(lambda x: detector.model(x, training=False))
    fns = {
        "keras network": lambda: tf.nest.map_structure(lambda t: t.numpy(), network(net_input)),
        "keras end to end": lambda: detector(picture),
    }
    folded = fold_and_check(detector.model, detector.config)
    for jit in (False, True) if args.xla else (False,):
        path = export_saved_model(folded, detector.config, root, version=int(jit) + 1, jit_compile=jit)
        signatures = tf.saved_model.load(path).signatures
        name = "savedmodel%s" % (" xla" if jit else "")
        fns[name + " network"] = functools.partial(
            lambda raw: [t.numpy() for t in raw(normalized_images=tf.constant(net_input)).values()],
            signatures["predict_raw"])
        fns[name + " end to end"] = functools.partial(
            lambda serve: [t.numpy() for t in serve(images=tf.constant(picture)).values()],
            signatures["serving_default"])
    # TFLite files run with XNNPACK, one thread per core.
    files = [(True, "fp32", "tflite network", {"normalized_images": net_input}),
             (False, "fp32", "tflite end to end", {"images": picture})]
    calibration = None
    if args.quantized:
        calibration = shapes_records(root)
        files += [(False, "fp16", "tflite fp16 end to end", {"images": picture})]
        if args.int8:
            files += [(False, "int8", "tflite int8 end to end", {"images": picture}),
                      (False, "full_int8", "tflite full_int8 end to end", {"images": picture})]
    for raw, quantization, label, feed in files:
        path = export_tflite(folded, detector.config, os.path.join(root, "%s_%s.tflite" % (raw, quantization)),
                             quantization, raw_outputs=raw, calibration_file_pattern=calibration,
                             num_calibration_images=32)
        runner = make_interpreter(path, num_threads=os.cpu_count()).get_signature_runner()
        fns[label] = functools.partial(lambda run, feed: run(**feed), runner, feed)
    if not args.no_onnx:
        fns.update(onnx_fns(folded, detector.config, root, picture, net_input))
    if not args.no_openvino:
        fns.update(openvino_fns(detector.config, root, picture))
    if args.batch8:
        batch = np.random.default_rng(2).integers(0, 256, (8, 512, 512, 3), dtype=np.uint8)
        fns["savedmodel end to end batch8"] = functools.partial(
            lambda serve: [t.numpy() for t in serve(images=tf.constant(batch)).values()],
            tf.saved_model.load(os.path.join(root, "1")).signatures["serving_default"])
    return fns


def onnx_fns(network, config, root, picture, net_input):
    """{label: fn} for the ONNX files (end to end and network only) in ONNX Runtime, or {} with a message."""
    try:
        from efficientdet_tf.export.onnx import export_onnx
        from efficientdet_tf.runtime.onnx import import_onnxruntime, session_options
        ort = import_onnxruntime()
        export_onnx(network, config, os.path.join(root, "d0.onnx"))
        export_onnx(network, config, os.path.join(root, "d0_network.onnx"), network_only=True)
    except (ImportError, ValueError) as e:
        print("ONNX skipped: %s" % e)
        return {}
    fns = {}
    for name, label, feed in (("d0.onnx", "onnx end to end", {"images": picture}),
                              ("d0_network.onnx", "onnx network", {"normalized_images": net_input})):
        session = ort.InferenceSession(os.path.join(root, name), session_options())
        fns[label] = functools.partial(lambda run, feed: run(None, feed), session.run, feed)
    return fns


def openvino_fns(config, root, picture):
    """{label: fn} for the OpenVINO file converted from the SavedModel in `root`/1 (float32
    inference, as `OpenVINODetector` compiles it), or {} with a message."""
    try:
        from efficientdet_tf.export.openvino import export_openvino
        from efficientdet_tf.runtime.openvino import OpenVINODetector

        path = export_openvino(os.path.join(root, "1"), config, os.path.join(root, "d0.xml"))
    except ImportError as e:
        print("OpenVINO skipped: %s" % e)
        return {}
    request = OpenVINODetector(path).request
    return {"openvino end to end": functools.partial(lambda infer: infer({"images": picture}), request.infer)}


def serving_peak_memory(root):
    """Resident memory (MiB) of a fresh process at each stage of serving the SavedModel: after
    importing TensorFlow, after loading, after the first picture, and the peak over 20 pictures."""
    import subprocess
    code = ("import numpy as np\n"
            "def rss(key):\n"
            "    line = [l for l in open('/proc/self/status') if l.startswith(key)][0]\n"
            "    return int(line.split()[1]) / 1024.0\n"
            "import tensorflow as tf\n"
            "print('import', rss('VmRSS'))\n"
            "serve = tf.saved_model.load(%r).signatures['serving_default']\n"
            "print('load', rss('VmRSS'))\n"
            "picture = tf.constant(np.zeros((1, 480, 640, 3), np.uint8))\n"
            "serve(images=picture)\n"
            "print('first', rss('VmRSS'))\n"
            "for _ in range(19): serve(images=picture)\n"
            "print('peak', rss('VmHWM'))\n" % os.path.join(root, "1"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stages = [line.split() for line in out.stdout.splitlines()]
    return {words[0]: float(words[1]) for words in stages
            if len(words) == 2 and words[0] in ("import", "load", "first", "peak")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="calls per candidate and round; the first "
                        "of each round is not counted (cache refill after the previous candidate)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the D0 reference checkpoint; with "
                        "--official_dir also any official checkpoint of --model_name, or 'random' (seeded random "
                        "weights written as an official checkpoint that both sides load)")
    parser.add_argument("--model_name", default="efficientdet-d0", help="with --official_dir: the model timed")
    parser.add_argument("--no_peer", action="store_true")
    parser.add_argument("--no_onnx", action="store_true", help="skip the ONNX files (needs the onnx extra)")
    parser.add_argument("--no_openvino", action="store_true", help="skip the OpenVINO file (needs the openvino extra)")
    parser.add_argument("--xla", action="store_true", help="also time the XLA-compiled SavedModel "
                        "(about 10x slower on CPU)")
    parser.add_argument("--quantized", action="store_true", help="also time fp16 and int8 TFLite files")
    parser.add_argument("--int8", action="store_true", help="with --quantized, also the int8 and full_int8 TFLite files")
    parser.add_argument("--batch8", action="store_true", help="also time batch 8 (throughput)")
    parser.add_argument("--memory", action="store_true", help="report the serving process's peak memory")
    parser.add_argument("--processes", type=int, default=1, help="repeat in this many fresh processes and "
                        "summarise the ratios to the peer")
    parser.add_argument("--official_dir", default="", help="google/automl checkout: time the official "
                        "SavedModel beside ours (beside_official.py)")
    parser.add_argument("--official_python", default=sys.executable, help="with --official_dir: a Python "
                        "with tensorflow 2.21 and tf-keras 2.21 (and onnxruntime, openvino, mediapipe, torch + effdet "
                        "to time those)")
    parser.add_argument("--reference_outputs", default="", help="with --official_dir, when no full reference "
                        "lies beside --checkpoint: a reference_outputs.npz (tests/data/efficientdet-d0/ has one)")
    parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(), "efficientdet_beside_official"),
                        help="with --official_dir: where the exported files go (reused when present)")
    args = parser.parse_args()
    if args.official_dir:
        from benchmarks import beside_official
        return beside_official.run(args, shapes_records)
    if args.processes > 1:
        return repeat_in_processes(args.processes)
    fns = {} if args.no_peer else peer_fns(args.batch8)
    with tempfile.TemporaryDirectory() as root:
        fns.update(tensorflow_fns(args, root))
        timings = interleaved_medians(fns, args.runs, args.warmup, args.repeat)
        memory = serving_peak_memory(root) if args.memory else None
    print("\nD0, 512x512, CPU (%d cores), medians of %d interleaved rounds x %d counted calls"
          % (os.cpu_count(), args.runs, max(args.repeat - 1, 1)))
    for label, ms in timings.items():
        kind = "network" if label.endswith("network") else "end to end"
        kind += " batch8" if label.endswith("batch8") else ""
        peer = timings.get("effdet " + kind)
        ratio = "  %.2fx faster than effdet" % (peer / ms) if peer and not label.startswith("effdet") else ""
        rate = "  (%.1f pictures/s)" % (8000.0 / ms) if label.endswith("batch8") else ""
        print("%-32s %8.1f ms%s%s" % (label, ms, rate, ratio))
    if memory:
        print("SavedModel serving process resident memory (MiB): after importing TensorFlow %.0f, "
              "after loading %.0f, after the first picture %.0f, peak over 20 pictures %.0f"
              % (memory["import"], memory["load"], memory["first"], memory["peak"]))


def repeat_in_processes(count):
    """Runs this script `count` times (same flags, one process each) and summarises the ratios."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if not skip and not arg.startswith("--processes"):
            argv.append(arg)
        skip = arg == "--processes"  # its value follows
    ratios = {}
    for run in range(count):
        out = subprocess.run([sys.executable, "-m", "benchmarks.latency_cpu"] + argv, capture_output=True,
                             text=True, check=True).stdout
        report = out[out.index("\nD0, 512x512"):]
        print("\nprocess %d of %d:%s" % (run + 1, count, report.rstrip()))
        for line in report.splitlines():
            match = re.match(r"(.+?)\s+[\d.]+ ms.*?([\d.]+)x faster than effdet", line)
            if match:
                ratios.setdefault(match.group(1), []).append(float(match.group(2)))
    print("\nratio to effdet over %d processes: lowest / median / highest" % count)
    for label, values in ratios.items():
        print("%-32s %5.2fx / %5.2fx / %5.2fx" % (label, min(values), statistics.median(values), max(values)))


if __name__ == "__main__":
    main()
