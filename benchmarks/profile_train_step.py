"""Where the CPU time of one training step goes, by model part and op type; a batch-norm candidate A/B.

    python -m benchmarks.profile_train_step [--batch 16] [--steps 5] [--compare_bn --rounds 15]

The step is the trainer's (`train.train_step.build_train_step`: forward, loss, backward, clipping,
SGD momentum, EMA) for the demo detector of README command 1 (`cli/demo.py`), on one cached batch of
shapes pictures. `--steps` steps run under TensorFlow's profiler; every op's own time is added up
from the trace (per step, all threads together: CPU time, not wall time) by model part (backbone
blocks, feature network, heads, each forward and backward) and by op type. Prints Markdown tables.

`--compare_bn` times, interleaved in one process, the step with Keras' BatchNormalization beside
the same step whose training-mode batch norm has a closed-form backward (`keras.ops.custom_gradient`:
one reduction each for the scale and offset gradients, no gradient through the moments). That
candidate is not in the package; BENCHMARKS.md / docs/benchmark_history.md say why.
"""

import argparse
import collections
import glob
import os
import re
import tempfile

from benchmarks.timing import interleaved_medians
from benchmarks.train_step import cached_step

WRAPPERS = ("ExecutorState", "KernelAndDeviceFunc", "EagerLocalExecute", "Iterator")


def demo_step(batch, folder):
    """(step, batch): the trainer's step for the demo detector and one batch of shapes pictures."""
    from efficientdet_tf.cli.demo import PICTURE_SIZES, demo_config
    from efficientdet_tf.data.label_map import label_map_path
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    train_dir = os.path.join(folder, "train")
    records = glob.glob(train_dir + "-*.tfrecord")
    if not records:
        jsons = make_shapes_dataset(folder, max(2 * batch, 16), 1, seed=0, size_range=PICTURE_SIZES)
        records, _ = create_coco_tfrecord.create_coco_tfrecord(train_dir, jsons["train"], train_dir, num_shards=1)
    config = demo_config(5, label_map_path(train_dir)).replace("train.batch_size=%d" % batch)
    return cached_step(config, records[0])


def part_of(name):
    """The model part of an op from its name scope; backward ops sit under the gradient tape."""
    direction = "backward" if "gradient_tape" in name else "forward"
    block = re.search(r"efficientnet-[\w-]+?\.(stem|blocks_\d+|head)", name)
    if block:
        return "backbone %s, %s" % (block.group(1), direction)
    for part, keys in (("feature network", ("fpn_cells", "resample_")), ("heads", ("class_net", "box_net"))):
        if any(key in name for key in keys):
            return "%s, %s" % (part, direction)
    return "loss, clipping, optimizer, EMA"


def profile(step, batch, steps):
    """({part: ms per step}, {op type: ms per step}, {op type: ops per step}) of own op time."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for _ in range(3):
        step(batch)["total_loss"].numpy()
    logdir = tempfile.mkdtemp(prefix="profile_train_step_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(batch)["total_loss"].numpy()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    by_part, by_type, counts = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        if "host:CPU" not in plane.name:
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name, _, op_type = names.get(event.metadata_id, "").rpartition(":")
                if not name or not op_type or op_type.startswith("__") or name.startswith(WRAPPERS):
                    continue
                ms = event.duration_ps / 1e9 / steps
                by_part[part_of(name)] += ms
                by_type[op_type] += ms
                counts[op_type] += 1.0 / steps
    return by_part, by_type, counts


def closed_form_batch_norm():
    """A BatchNormalization whose training-mode backward is written out (the --compare_bn candidate)."""
    import keras
    from keras import ops

    def normalize(x, gamma, beta, axes, epsilon):
        @ops.custom_gradient
        def forward(x, gamma, beta):
            mean = ops.mean(x, axes)
            centred = x - mean
            variance = ops.mean(ops.square(centred), axes)
            inverse = ops.rsqrt(variance + epsilon)
            scale = gamma * inverse
            count = 1
            for axis in axes:
                count *= ops.shape(x)[axis]

            def backward(*args, upstream=None):
                grad = (upstream if upstream is not None else args)[0]
                normalized = centred * inverse
                d_beta = ops.sum(grad, axes)
                d_gamma = ops.sum(grad * normalized, axes)
                return (grad - normalized * (d_gamma / count) - d_beta / count) * scale, d_gamma, d_beta
            return (centred * scale + beta, ops.stop_gradient(mean), ops.stop_gradient(variance)), backward
        return forward(x, gamma, beta)

    class ClosedFormBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            if not (training and self.trainable) or mask is not None or self.renorm:
                return super().call(inputs, training=training, mask=mask)
            x = ops.cast(inputs, "float32")
            y, mean, variance = normalize(x, ops.cast(self.gamma, x.dtype), ops.cast(self.beta, x.dtype),
                                          self._reduction_axes, self.epsilon)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
            return ops.cast(y, self.compute_dtype)

    return ClosedFormBatchNormalization


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--compare_bn", action="store_true", help="time the closed-form batch norm beside Keras'")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from efficientdet_tf.train import host_memory
    host_memory.keep_freed_memory()  # as the command-line tools do, before TensorFlow starts
    import keras

    folder = tempfile.mkdtemp(prefix="profile_train_step_data_")
    step, batch = demo_step(args.batch, folder)
    by_part, by_type, counts = profile(step, batch, args.steps)
    total = sum(by_part.values())
    print("demo detector, batch %d, %d profiled steps: %.0f ms of op time per step (all threads)"
          % (args.batch, args.steps, total))
    print("\n| part | ms per step | share |\n|---|---|---|")
    for part, ms in sorted(by_part.items(), key=lambda item: -item[1]):
        print("| %s | %.1f | %.0f%% |" % (part, ms, 100.0 * ms / total))
    print("\n| op type | ops per step | ms per step | share |\n|---|---|---|---|")
    for op_type, ms in by_type.most_common(14):
        print("| %s | %.0f | %.1f | %.0f%% |" % (op_type, counts[op_type], ms, 100.0 * ms / total))

    if args.compare_bn:
        keras_batch_norm = keras.layers.BatchNormalization
        keras.layers.BatchNormalization = closed_form_batch_norm()
        try:
            candidate, _ = demo_step(args.batch, folder)
        finally:
            keras.layers.BatchNormalization = keras_batch_norm
        _, candidate_types, _ = profile(candidate, batch, args.steps)
        print("\nclosed-form candidate: %.0f ms of op time per step (Tile %.1f, Mul %.1f, Sum %.1f ms)" % (
            sum(candidate_types.values()), candidate_types["Tile"], candidate_types["Mul"], candidate_types["Sum"]))
        losses = {label: float(fn(batch)["total_loss"].numpy()) for label, fn in (("keras", step), ("closed", candidate))}
        medians = interleaved_medians({"keras": lambda: step(batch)["total_loss"].numpy(),
                                       "closed": lambda: candidate(batch)["total_loss"].numpy()},
                                      args.rounds, warmup=2)
        print("\nstep wall time, medians of %d interleaved rounds: Keras batch norm %.1f ms, closed-form "
              "backward %.1f ms (%.3fx); first losses %.6f / %.6f (different initial weights)"
              % (args.rounds, medians["keras"], medians["closed"], medians["keras"] / medians["closed"],
                 losses["keras"], losses["closed"]))


if __name__ == "__main__":
    main()
