"""The official google/automl SavedModel timed beside every path we ship, in one process (`latency_cpu.py --official_dir`).

Three stages, each its own process:
1. ours (this project's environment): the model (`--model_name`, D0 by default) with the checkpoint's
   weights exported as we ship it: SavedModel, TFLite fp32, int8 and full_int8 (with MediaPipe's
   metadata), ONNX (end to end and network only), OpenVINO fp32 and int8 (NNCF), into a work folder.
   `--checkpoint random` (for models whose checkpoint is not at hand: no download here) first writes
   seeded random weights of our model as an official TF1 checkpoint (official variable names, each
   with its `/ExponentialMovingAverage` copy), which both sides then load;
2. the official environment (tf-keras, TF_USE_LEGACY_KERAS=1): its `tf2/infer_lib.KerasDriver`
   restores the same checkpoint and exports its own SavedModel (batch 1, and batch 8 for throughput);
3. the official environment again, once per --processes: `python beside_official.py --worker WORK`
   loads the official SavedModel, our files (they need only TensorFlow, TFLite and ONNX Runtime;
   OpenVINO and MediaPipe's ObjectDetector where `openvino` and `mediapipe` import there) and, when
   torch and effdet import there, `effdet`'s tf_efficientdet_d0; times them interleaved;
   compares every network's raw outputs with the official `predict` signature's; prints one JSON line.
Nothing of the official checkout is copied: its folder goes on sys.path of stages 2 and 3 only.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import textwrap

from benchmarks.timing import interleaved_medians, recorder
from efficientdet_tf.litert import make_interpreter

say = recorder("latency_official.jsonl")

# Stage 2, in the official environment: its own driver restores the reference checkpoint (EMA
# weights, as its inference does) and writes its SavedModel the way `model_inspect --runmode
# saved_model` does.
OFFICIAL_EXPORT = textwrap.dedent(r"""
    import os, sys, types
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.modules["neural_structured_learning"] = types.ModuleType("neural_structured_learning")
    official_dir, checkpoint, target, batch, model_name = sys.argv[1:6]
    sys.path.insert(0, official_dir)
    from tf2 import infer_lib
    driver = infer_lib.KerasDriver(checkpoint, False, model_name, batch_size=int(batch))
    driver.export(target)
""")

PARITY_TOLERANCE = 1e-4  # the tests' bound on raw outputs (tests/test_model.py, test_export.py)
# Its net_input is the parity tests' input; a full reference copy beside the checkpoint also holds
# the official raw outputs for it (the project's compact copy stores the class outputs compressed).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def official_folder(path):
    """The `efficientdet/` folder of a google/automl checkout given the checkout or that folder."""
    for candidate in (path, os.path.join(path, "efficientdet")):
        if os.path.isfile(os.path.join(candidate, "tf2", "infer_lib.py")):
            return os.path.abspath(candidate)
    sys.exit("--official_dir=%s holds no efficientdet/tf2/infer_lib.py (a google/automl checkout)" % path)


def check_official_python(python):
    """Exits with one line unless `python` imports tensorflow and tf_keras (the official's needs)."""
    probe = subprocess.run([python, "-c", "import tensorflow, tf_keras"], capture_output=True, text=True)
    if probe.returncode:
        sys.exit("--official_python=%s cannot import tensorflow and tf_keras (%s): make a venv with "
                 "tensorflow==2.21.* tf-keras==2.21.* pyyaml pillow absl-py matplotlib six tensorflow-hub "
                 "(and openvino, mediapipe, onnxruntime to time those runtimes)"
                 % (python, probe.stderr.strip().splitlines()[-1:] or "no output"))


def write_random_checkpoint(model_name, prefix, seed=0):
    """Seeded random weights of our `model_name` as an official TF1 name-based checkpoint at `prefix`
    (every variable under its official name and its `/ExponentialMovingAverage` name); returns prefix."""
    import keras
    import tensorflow as tf

    from efficientdet_tf.checkpoints.official import EMA_SUFFIX, model_variables
    from efficientdet_tf.model.efficientdet import build_model
    from efficientdet_tf.config import get_config

    keras.utils.set_random_seed(seed)
    model = build_model(get_config(model_name))
    names, tensors = [], []
    for name, variable in model_variables(model).items():
        value = tf.constant(keras.ops.convert_to_numpy(variable))
        names += [name, name + EMA_SUFFIX]
        tensors += [value, value]
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    with open(os.path.join(os.path.dirname(prefix), "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "%s"\n' % os.path.basename(prefix))
    return prefix


def export_ours(checkpoint, work, calibration, model_name="efficientdet-d0"):
    """Stage 1: writes our files under `work`; returns {label: [path, input name]} (the manifest)."""
    from efficientdet_tf.export.onnx import export_onnx
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import export_tflite
    from efficientdet_tf.runtime import Detector

    detector = Detector(model_name, checkpoint)
    folded = fold_and_check(detector.model, detector.config)
    config = detector.config
    files = {"savedmodel": [export_saved_model(folded, config, os.path.join(work, "ours"), 1), "images"]}
    for label, quantization, raw in (("tflite fp32", "fp32", False), ("tflite int8", "int8", False),
                                     ("tflite full_int8", "full_int8", False), ("tflite fp32 network", "fp32", True)):
        path = os.path.join(work, label.replace(" ", "_") + ".tflite")
        export_tflite(folded, config, path, quantization, raw_outputs=raw, num_calibration_images=32,
                      calibration_file_pattern=None if quantization == "fp32" else calibration)
        files[label] = [path, "normalized_images" if raw else "images"]
    for label, network_only in (("onnx", False), ("onnx network", True)):
        path = os.path.join(work, label.replace(" ", "_") + ".onnx")
        export_onnx(folded, config, path, network_only=network_only)
        files[label] = [path, "normalized_images" if network_only else "images"]
    try:
        from efficientdet_tf.export.openvino import (ConversionError, calibration_pictures, export_openvino,
                                                     quantize_openvino)
    except ImportError as e:
        print("OpenVINO skipped: %s" % e, file=sys.stderr)
        return files
    try:
        xml = export_openvino(files["savedmodel"][0], config, os.path.join(work, "openvino_fp32.xml"))
        files["openvino fp32"] = [xml, "images"]
        files["openvino int8"] = [quantize_openvino(xml, calibration_pictures(calibration, 32),
                                                    os.path.join(work, "openvino_int8.xml")), "images"]
    except (ImportError, ConversionError) as e:
        print("OpenVINO skipped: %s" % e, file=sys.stderr)
    return files


def export_official(python, official_dir, checkpoint, work, batches, model_name="efficientdet-d0"):
    """Stage 2: the official SavedModel for each batch size; returns {batch: folder}."""
    folders = {}
    for batch in batches:
        folders[batch] = os.path.join(work, "official_batch%d" % batch)
        if not os.path.exists(os.path.join(folders[batch], "saved_model.pb")):
            subprocess.run([python, "-c", OFFICIAL_EXPORT, official_dir, checkpoint, folders[batch], str(batch),
                            model_name],
                           check=True, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    return folders


# ---- stage 3: runs in the official environment; imports nothing of efficientdet_tf -------------

def worker_candidates(manifest, runs_batch8):
    """{label: fn} for every candidate; the raw outputs of each network path for the parity check."""
    peers = effdet_candidates(runs_batch8)  # torch before TensorFlow: the other order crashes in triton
    import numpy as np
    import tensorflow as tf

    picture = np.load(manifest["picture"])[None]
    if manifest["reference"]:
        net_input = np.load(manifest["reference"])["net_input"]  # a normalised picture, as the parity tests use
    else:
        size = manifest["image_size"]
        net_input = np.random.default_rng(1).normal(size=(1, size, size, 3)).astype(np.float32)
    batch = np.repeat(picture, 8, axis=0)
    # A TFLite file takes pictures of its fixed input (the network's size; its runtime letterboxes
    # outside the file): for D0 the same 512x512 picture, for smaller models its top-left corner.
    size = net_input.shape[1]
    tflite_picture = np.ascontiguousarray(picture[:, :size, :size])
    fns, raw = {}, {}

    official = tf.saved_model.load(manifest["official"]["1"])
    serve = official.signatures["serving_default"]
    predict = official.signatures["predict"]
    fns["official end to end"] = lambda: [t.numpy() for t in serve(images=tf.constant(picture)).values()]
    fns["official network"] = lambda: [t.numpy() for t in predict(images=tf.constant(net_input)).values()]
    outputs = predict(images=tf.constant(net_input))
    # `predict` returns the flattened (class outputs p3..p7, box outputs p3..p7) as output_0..output_9.
    ordered = [outputs["output_%d" % i].numpy() for i in range(len(outputs))]
    names = ["%s_outputs_p%d" % (kind, level) for kind in ("class", "box") for level in range(3, 8)]
    raw["official"] = dict(zip(names, ordered))

    ours = tf.saved_model.load(manifest["ours"]["savedmodel"][0]).signatures
    fns["savedmodel end to end"] = lambda: [t.numpy() for t in ours["serving_default"](
        images=tf.constant(picture)).values()]
    fns["savedmodel network"] = lambda: [t.numpy() for t in ours["predict_raw"](
        normalized_images=tf.constant(net_input)).values()]
    raw["savedmodel network"] = {k: v.numpy() for k, v in ours["predict_raw"](
        normalized_images=tf.constant(net_input)).items()}

    for label in ("tflite fp32", "tflite int8", "tflite full_int8", "tflite fp32 network"):
        path, input_name = manifest["ours"][label]
        runner = make_interpreter(path, num_threads=os.cpu_count()).get_signature_runner()
        feed = {input_name: net_input if input_name == "normalized_images" else tflite_picture}
        fns[label if label.endswith("network") else label + " end to end"] = functools.partial(
            lambda run, feed: run(**feed), runner, feed)
        if label.endswith("network"):
            raw[label] = runner(**feed)

    try:
        import onnxruntime as ort
    except ImportError as e:
        print("ONNX skipped: onnxruntime does not import here (%s)" % e, file=sys.stderr)
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for label in ("onnx", "onnx network"):
            path, input_name = manifest["ours"][label]
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {input_name: net_input if input_name == "normalized_images" else picture}
            fns[label if label.endswith("network") else label + " end to end"] = functools.partial(
                lambda run, feed: run(None, feed), session.run, feed)
            if label.endswith("network"):
                names_out = [o.name for o in session.get_outputs()]
                raw[label] = dict(zip(names_out, session.run(None, feed)))
            if label == "onnx" and runs_batch8:
                fns["onnx batch8"] = functools.partial(lambda run: run(None, {"images": batch}), session.run)

    fns.update(edge_candidates(manifest["ours"], picture))
    if runs_batch8:
        serve8 = tf.saved_model.load(manifest["official"]["8"]).signatures["serving_default"]
        fns["official batch8"] = lambda: [t.numpy() for t in serve8(images=tf.constant(batch)).values()]
        fns["savedmodel batch8"] = lambda: [t.numpy() for t in ours["serving_default"](
            images=tf.constant(batch)).values()]
        # TFLite files take one picture: eight calls in a row is their batch-8 throughput.
        runner = make_interpreter(manifest["ours"]["tflite int8"][0],
                                     num_threads=os.cpu_count()).get_signature_runner()
        fns["tflite int8 batch8"] = lambda: [runner(images=np.ascontiguousarray(batch[i:i + 1, :size, :size]))
                                          for i in range(8)]
    fns.update(peers)
    return fns, raw


def edge_candidates(ours, picture):
    """OpenVINO (fp32, int8 files) and MediaPipe's ObjectDetector (our TFLite fp32, int8 and full_int8
    files, as they are), end to end on `picture`, where those runtimes import in this environment."""
    fns = {}
    try:
        import openvino
    except ImportError as e:
        print("OpenVINO skipped: openvino does not import here (%s)" % e, file=sys.stderr)
    else:
        core = openvino.Core()
        for label in ("openvino fp32", "openvino int8"):
            if label in ours:
                # As OpenVINODetector compiles it: float32, not the bfloat16 OpenVINO picks on AVX-512 BF16.
                request = core.compile_model(ours[label][0], "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
                                             ).create_infer_request()
                fns[label + " end to end"] = functools.partial(lambda run: run({0: picture}), request.infer)
    try:
        import mediapipe
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as e:
        print("MediaPipe skipped: mediapipe does not import here (%s)" % e, file=sys.stderr)
    else:
        image = mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=picture[0])
        for precision in ("fp32", "int8", "full_int8"):
            options = vision.ObjectDetectorOptions(
                base_options=BaseOptions(model_asset_path=ours["tflite " + precision][0]), max_results=100)
            detector = vision.ObjectDetector.create_from_options(options)
            fns["mediapipe %s end to end" % precision] = functools.partial(lambda run: run(image), detector.detect)
    return fns


def effdet_candidates(batch8):
    """`latency_cpu.peer_fns` (effdet's tf_efficientdet_d0), its batch-8 candidate named as ours."""
    from benchmarks.peers import peer_fns
    fns = peer_fns(batch8)
    if "effdet end to end batch8" in fns:
        fns["effdet batch8"] = fns.pop("effdet end to end batch8")
    return fns


def parity(raw, reference):
    """{path: largest |ours - official| over all raw outputs}; 'official' compares the official
    SavedModel with the stored reference outputs the official implementation gave."""
    import numpy as np
    official = raw.pop("official")
    stored = np.load(reference) if reference else None
    errors = {}
    if stored is not None and all(name in stored.files for name in official):
        errors["official"] = max(float(np.max(np.abs(value - stored[name]))) for name, value in official.items())
    for label, outputs in raw.items():
        errors[label] = max(float(np.max(np.abs(np.reshape(outputs[name], ref.shape) - ref)))
                            for name, ref in official.items())
    return errors


def worker(work, runs, warmup, repeat, batch8):
    """Stage 3: times every candidate in this process and prints one JSON line of medians (ms)."""
    with open(os.path.join(work, "manifest.json")) as f:
        manifest = json.load(f)
    fns, raw = worker_candidates(manifest, batch8)
    errors = parity(raw, manifest["reference"])
    timings = interleaved_medians(fns, runs, warmup, repeat)
    print("RESULT " + json.dumps({"ms": timings, "parity": errors}), flush=True)


def serving_memory(python, saved_model, pictures=20):
    """Peak resident memory (MiB) of a fresh `python` process that loads `saved_model` and serves
    `pictures` pictures of 480x640 through serving_default."""
    code = textwrap.dedent("""
        import sys, numpy as np, tensorflow as tf
        serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        picture = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 480, 640, 3), dtype=np.uint8))
        for _ in range(int(sys.argv[2])):
            serve(images=picture)
        print(int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) // 1024)
    """)
    out = subprocess.run([python, "-c", code, saved_model, str(pictures)], capture_output=True, text=True,
                         check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return int(out.stdout.split()[-1])


def run(args, shapes_records):
    """`latency_cpu.py --official_dir`: the three stages, then the ratios to the official."""
    official_dir = official_folder(args.official_dir)
    python = args.official_python
    check_official_python(python)
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    random_weights = args.checkpoint == "random"
    checkpoint = os.path.join(work, "random_checkpoint", "model") if random_weights else os.path.abspath(args.checkpoint)
    if not random_weights and not os.path.exists(checkpoint + ".index") and not os.path.isdir(checkpoint):
        sys.exit("--checkpoint=%s is not a checkpoint: the official driver needs the same weights as ours"
                 % checkpoint)
    manifest_path = os.path.join(work, "manifest.json")
    if not os.path.exists(manifest_path):
        reference = None
        if random_weights:
            write_random_checkpoint(args.model_name, checkpoint)
        else:
            full = os.path.join(os.path.dirname(checkpoint) if os.path.isfile(checkpoint + ".index")
                                else checkpoint, "reference_outputs.npz")
            reference = full if os.path.exists(full) else args.reference_outputs
            if not reference:
                sys.exit("no reference_outputs.npz beside --checkpoint: give --reference_outputs (the repository "
                         "keeps one in tests/data/efficientdet-d0/)")
        from efficientdet_tf.config import get_config

        import numpy as np

        from efficientdet_tf.export.saved_model import check_picture

        ours = export_ours(checkpoint, work, shapes_records(work), args.model_name)
        # The picture every path gets: drawn shapes and gradients. On uniform noise the reference D0
        # answers with logits up to 1,500 and infinite boxes, and no NMS works as on real pictures.
        picture_path = os.path.join(work, "picture.npy")
        np.save(picture_path, check_picture(512))
        official = export_official(python, official_dir, checkpoint, work, (1, 8), args.model_name)
        with open(manifest_path, "w") as f:
            json.dump({"reference": reference, "model_name": args.model_name, "picture": picture_path,
                       "image_size": get_config(args.model_name).image_size, "ours": ours,
                       "official": {str(k): v for k, v in official.items()}}, f, indent=1)
    results = []
    for index in range(args.processes):
        command = [python, "-m", "benchmarks.beside_official", "--worker", work, "--runs", str(args.runs),
                   "--warmup", str(args.warmup), "--repeat", str(args.repeat)] + (["--batch8"] * args.batch8)
        out = subprocess.run(command, capture_output=True, text=True,
                             env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                                      PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not lines:
            sys.exit("worker process %d failed:\n%s" % (index + 1, out.stderr[-3000:]))
        result = json.loads(lines[-1][len("RESULT "):])
        results.append(result)
        say(process=index + 1, **result)
    memory = None
    if args.memory:
        # Alternating fresh processes, two each: the same Python, TensorFlow and pictures for both.
        memory = {"official": [], "savedmodel": []}
        with open(manifest_path) as f:
            manifest = json.load(f)
        for _ in range(2):
            memory["official"].append(serving_memory(python, manifest["official"]["1"]))
            memory["savedmodel"].append(serving_memory(python, manifest["ours"]["savedmodel"][0]))
        say(memory_peak_mib=memory)
    report(results, memory, args)


def report(results, memory, args):
    """Prints each candidate's median time and its speed-up over the official and over effdet."""
    print("\n%s, 512x512 uint8 picture (batch 8: eight pictures), CPU (%d cores), %d process(es), each "
          "the median of %d interleaved rounds x %d counted calls" % (
              args.model_name, os.cpu_count(), len(results), args.runs, max(args.repeat - 1, 1)))
    print("| candidate | ms (median over processes) | x official (low / median / high) | x effdet (median) |")
    print("|---|---|---|---|")
    for label in results[0]["ms"]:
        kind = "network" if label.endswith("network") else "batch8" if label.endswith("batch8") else "end to end"
        ms = [r["ms"][label] for r in results]
        official = [r["ms"]["official " + kind] / r["ms"][label] for r in results]
        peer = [r["ms"]["effdet " + kind] / r["ms"][label] for r in results if "effdet " + kind in r["ms"]]
        rate = " (%.1f pictures/s)" % (8000.0 / statistics.median(ms)) if kind == "batch8" else ""
        print("| %s | %.1f%s | %.2fx / %.2fx / %.2fx | %s |" % (
            label, statistics.median(ms), rate, min(official), statistics.median(official), max(official),
            "%.2fx" % statistics.median(peer) if peer else "-"))
    print("\nraw outputs on the reference input (random weights: a seeded random input) against the official "
          "SavedModel's `predict` (official: against the stored reference outputs); largest absolute "
          "difference, parity bound %g:" % PARITY_TOLERANCE)
    for label, error in results[0]["parity"].items():
        print("  %-22s %.2e %s" % (label, error, "within" if error <= PARITY_TOLERANCE else "OUTSIDE"))
    if memory:
        print("\nserving peak memory, fresh process, 20 pictures of 480x640 (MiB): official %s, ours %s"
              % (memory["official"], memory["savedmodel"]))


def main():
    parser = argparse.ArgumentParser(description="stage 3 of latency_cpu.py --official_dir (a worker)")
    parser.add_argument("--worker", required=True, help="the work folder with manifest.json")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch8", action="store_true")
    args = parser.parse_args()
    worker(args.worker, args.runs, args.warmup, args.repeat, args.batch8)


if __name__ == "__main__":
    main()
