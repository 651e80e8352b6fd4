"""Wall time of D0's model parts in TensorFlow, TFLite fp32 and TFLite int8, side by side.

    python -m benchmarks.profile_parts [--runs 10] [--checkpoint DIR] [--num_calibration_images 16]

TFLite has no per-op profiler in its Python package, and a traced TensorFlow run (profile_cpu.py)
inflates small ops, so the folded network is cut into nested prefixes instead: input -> backbone
features, input -> feature-network outputs, input -> raw head outputs (the whole network). Each
prefix runs as a `tf.function` (as the SavedModel runs its network) and as TFLite fp32 and int8
files (int8 calibrated on synthetic shapes pictures); the end-to-end paths (SavedModel
`serving_default`, `export_tflite` files) run too, all timed interleaved (medians, batch 1). A
part's time is the difference between consecutive prefixes; "pre- and post-processing" is end to
end minus the whole network.
"""

import argparse
import os
import tempfile

from benchmarks.latency_cpu import DEFAULT_CHECKPOINT
from benchmarks.shapes import shapes_records
from benchmarks.timing import interleaved_medians
from efficientdet_tf.litert import make_interpreter

PARTS = (("backbone", ("efficientnet",)),
         ("feature network", ("fpn_cells", "resample_")),
         ("heads", ("class_net", "box_net")))


def prefix_model(network, prefixes):
    """The functional sub-model of `network` made of the layers whose names start with `prefixes`:
    same input, outputs the tensors those layers hand to any other layer (or to the model)."""
    import keras

    # The network's own call nodes: a layer also keeps the nodes of other graphs it was called in.
    nodes = [node for depth in sorted(network._nodes_by_depth, reverse=True)
             for node in network._nodes_by_depth[depth] if node.operation and not node.is_input]
    inside = {id(node) for node in nodes if node.operation.name.startswith(prefixes)}
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    model_outputs = {id(t) for t in network.outputs}
    outputs = [tensor for node in nodes if id(node) in inside for tensor in node.outputs
               if id(tensor) in model_outputs
               or any(id(c) not in inside for c in consumers.get(id(tensor), []))]
    return keras.Model(network.inputs, outputs)


def convert(model, quantization, calibration):
    """TFLite bytes of a float network `model` (normalised input), fp32 or fully int8 inside."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1] + list(model.inputs[0].shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False), input_signature=[spec]).get_concrete_function()
    # Keras 3 variables must be frozen first (see export/tflite.py).
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], None)
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--num_calibration_images", type=int, default=16)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from efficientdet_tf import factory
    from efficientdet_tf.export.saved_model import export_saved_model, fold_and_check
    from efficientdet_tf.export.tflite import calibration_images, export_tflite
    from efficientdet_tf.ops.letterbox import pad_rgb_for
    from efficientdet_tf.runtime import Detector

    detector = Detector("efficientdet-d0", args.checkpoint if os.path.isdir(args.checkpoint or "") else None)
    config = detector.config
    folded = fold_and_check(detector.model, config)
    size = config.image_size
    picture = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    preprocess = factory.build_preprocessor(config)
    net_input = preprocess(tf.constant(picture))[0].numpy()
    fns = {}
    with tempfile.TemporaryDirectory() as root:
        pattern = shapes_records(root)
        pictures = [c[0] for c in calibration_images(pattern, (size, size), args.num_calibration_images,
                                                     pad_rgb_for(config))]
        calibration = [preprocess(tf.constant(p))[0].numpy() for p in pictures]
        prefixes = ()
        for part, names in PARTS:
            prefixes += names
            model = prefix_model(folded, prefixes)
            graph = tf.function(lambda x, model=model: model(x, training=False))  # as the SavedModel runs it
            fns["tensorflow|%s" % part] = lambda graph=graph: [t.numpy() for t in tf.nest.flatten(graph(net_input))]
            for quantization in ("fp32", "int8"):
                interpreter = make_interpreter(model_content=convert(model, quantization, calibration),
                                                  num_threads=os.cpu_count())
                interpreter.allocate_tensors()
                index = interpreter.get_input_details()[0]["index"]

                def run(interpreter=interpreter, index=index):
                    interpreter.set_tensor(index, net_input)
                    interpreter.invoke()
                fns["%s|%s" % (quantization, part)] = run
        for quantization in ("fp32", "int8"):
            path = export_tflite(folded, config, os.path.join(root, quantization + ".tflite"), quantization,
                                 calibration_file_pattern=pattern,
                                 num_calibration_images=args.num_calibration_images)
            runner = make_interpreter(path, num_threads=os.cpu_count()).get_signature_runner()
            fns["%s|end to end" % quantization] = lambda runner=runner: runner(images=picture)
        serve = tf.saved_model.load(export_saved_model(folded, config, root, 1)).signatures["serving_default"]
        fns["tensorflow|end to end"] = lambda: [t.numpy() for t in serve(images=tf.constant(picture)).values()]
        timings = interleaved_medians(fns, args.runs, 2, 3)

    runtimes = ("tensorflow", "fp32", "int8")
    print("| part | SavedModel graph | share | TFLite fp32 | share | TFLite int8 | share |")
    print("|---|---|---|---|---|---|---|")
    cumulative = [part for part, _ in PARTS] + ["end to end"]
    for i, part in enumerate([part for part, _ in PARTS] + ["pre- and post-processing"]):
        cells = []
        for runtime in runtimes:
            here = timings["%s|%s" % (runtime, cumulative[i])]
            before = timings["%s|%s" % (runtime, cumulative[i - 1])] if i else 0.0
            share = 100.0 * (here - before) / timings["%s|end to end" % runtime]
            cells += ["%.1f ms" % (here - before), "%.0f%%" % share]
        print("| %s | %s |" % (part, " | ".join(cells)))
    print("| end to end | %s |" % " | ".join("%.1f ms | " % timings["%s|end to end" % r] for r in runtimes))

if __name__ == "__main__":
    main()
