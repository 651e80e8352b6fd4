"""Where the CPU time of D0 end to end goes: per model part and per op kind.

    python -m benchmarks.profile_cpu [--runs 20] [--checkpoint DIR] [--model efficientdet-d0] [--unfolded]

Freezes the serving graph (uint8 picture -> preprocessing -> network -> decoding + NMS, batch norms
folded as in the export), runs it in a TensorFlow session with full tracing, and adds up each op's
own time over `--runs` runs (after warm-up). Ops are grouped by model part from their names
(backbone `efficientnet-*`, feature network `resample_p*` / `fpn_cells`, heads `class_net` /
`box_net`; everything else is pre- or post-processing) and by op type. The shares are what to read:
absolute times move with the machine's load. Prints two Markdown tables.
"""

import argparse
import collections


PARTS = (("backbone", ("efficientnet-",)), ("feature network", ("resample_p", "fpn_cells")),
         ("heads", ("class_net", "box_net")))


def network_part(node_name):
    """The network part of an op from its name (the Keras layer scope), or None outside the network."""
    for part, prefixes in PARTS:
        if any(prefix in node_name for prefix in prefixes):
            return part
    return None


def ancestors(graph_def, names):
    """Every node that feeds (directly or not) one of `names`."""
    inputs = {node.name: [i.lstrip("^").split(":")[0] for i in node.input] for node in graph_def.node}
    seen, stack = set(), list(names)
    while stack:
        for parent in inputs.get(stack.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def frozen_serving_graph(model_name, checkpoint, fold):
    """(graph_def, input name, output names) of the frozen uint8 -> detections graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from efficientdet_tf.export.saved_model import fold_and_check
    from efficientdet_tf.inference import detect_images
    from efficientdet_tf.runtime import Detector
    detector = Detector(model_name, checkpoint)
    network = fold_and_check(detector.model, detector.config) if fold else detector.model
    fn = tf.function(lambda images: detect_images(network, detector.config, images),
                     input_signature=[tf.TensorSpec([1, 480, 640, 3], tf.uint8)])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    return frozen.graph.as_graph_def(), frozen.inputs[0].name, [t.name for t in frozen.outputs]


def trace(graph_def, input_name, output_names, runs):
    """{(node name, executed op type): total microseconds} over `runs` traced runs.

    The executed type comes from the trace (grappler fuses e.g. Conv2D + BiasAdd + swish into one
    _FusedConv2D that keeps the name of the last node it replaced).
    """
    import numpy as np
    import tensorflow as tf
    picture = np.random.default_rng(0).integers(0, 256, (1, 480, 640, 3), dtype=np.uint8)
    totals = collections.Counter()
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    op_types = {node.name: node.op for node in graph_def.node}
    with tf.compat.v1.Session(graph=graph) as session:
        for _ in range(3):
            session.run(output_names, {input_name: picture})
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            session.run(output_names, {input_name: picture}, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    name = node.node_name.split(":")[0]
                    if name in op_types:
                        label = node.timeline_label.split(" = ", 1)
                        executed = label[1].split("(", 1)[0] if len(label) == 2 else op_types[name]
                        totals[(name, executed)] += node.op_end_rel_micros
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientdet-d0")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--unfolded", action="store_true", help="keep batch norms unfolded")
    args = parser.parse_args()
    graph_def, input_name, output_names = frozen_serving_graph(args.model, args.checkpoint or None, not args.unfolded)
    totals = trace(graph_def, input_name, output_names, args.runs)

    # Ops outside the network that feed it are preprocessing; the rest come after it.
    feeding = ancestors(graph_def, [node.name for node in graph_def.node if network_part(node.name)])
    by_part, by_type, counts = collections.Counter(), collections.Counter(), collections.Counter()
    for (name, op_type), micros in totals.items():
        part = network_part(name) or ("preprocessing" if name in feeding else "post-processing")
        by_part[part] += micros
        by_type[op_type] += micros
        counts[op_type] += 1
    total = sum(by_part.values())
    print("%s end to end (480x640 uint8 picture, BN %s), %d traced runs: %.1f ms per run of op time"
          % (args.model, "unfolded" if args.unfolded else "folded", args.runs, total / args.runs / 1000))
    print("\n| model part | ms per run | share |\n|---|---|---|")
    for part in ("preprocessing", "backbone", "feature network", "heads", "post-processing"):
        print("| %s | %.1f | %.0f%% |" % (part, by_part[part] / args.runs / 1000, 100.0 * by_part[part] / total))
    print("\n| op type | ops | ms per run | share |\n|---|---|---|---|")
    for op_type, micros in by_type.most_common(12):
        print("| %s | %d | %.1f | %.0f%% |" % (op_type, counts[op_type], micros / args.runs / 1000, 100.0 * micros / total))


if __name__ == "__main__":
    main()
