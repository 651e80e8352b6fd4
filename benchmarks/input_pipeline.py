"""Input pipeline throughput (pictures/s) for EfficientDet-D0 training at 512 on generated records.

Writes synthetic 640x480 JPEG pictures with a few boxes each to a temporary folder, then times the
training pipeline (decode, flip, scale jitter + crop, anchor targets, batching) with 1 and 2
parallel calls, and beside it the rate of one D0 training step (forward + backward + SGD update) at
the same batch size on batches already in memory: the pipeline must outpace the step.
Prints one JSON line. Usage: python -m benchmarks.input_pipeline [--help]
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from efficientdet_tf.config import get_config
from tfrecord_tools.example_writer import make_example, write_records
from efficientdet_tf.data.pipeline import InputPipeline


def write_synthetic(folder, count, shards, seed=0):
    """Writes `count` noisy 640x480 JPEG pictures with 1-8 coloured boxes into `shards` files."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        boxes = []
        for _ in range(int(rng.integers(1, 9))):
            y0, x0 = int(rng.integers(0, 400)), int(rng.integers(0, 560))
            y1, x1 = y0 + int(rng.integers(16, 80)), x0 + int(rng.integers(16, 80))
            image[y0:y1, x0:x1] = rng.integers(0, 255, 3)
            boxes.append([y0, x0, y1, x1])
        examples.append(make_example(image, boxes, rng.integers(1, 91, len(boxes)), source_id=str(i)))
    for shard in range(shards):
        write_records(os.path.join(folder, "synthetic-%d.tfrecord" % shard), examples[shard::shards])
    return os.path.join(folder, "synthetic-*.tfrecord")


def measure(pattern, config, parallel, batch_size, batches, warmup):
    """Pictures per second of the training pipeline after `warmup` batches."""
    dataset = InputPipeline(pattern, config, is_training=True, batch_size=batch_size,
                            num_parallel_calls=parallel)()
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def train_step_rate(pattern, config, batch_size, steps, warmup):
    """Pictures per second of a D0 training step (loss, gradients, momentum SGD) on cached batches."""
    import keras

    from efficientdet_tf.factory import build_loss_fn
    from efficientdet_tf.losses import l2_loss
    from efficientdet_tf.model.efficientdet import build_model
    model = build_model(config)
    loss_fn = build_loss_fn(config)
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    dataset = InputPipeline(pattern, config, is_training=True, batch_size=batch_size)()
    batches = list(dataset.take(2).cache())

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            class_outputs, box_outputs = model(images, training=True)
            loss = loss_fn(class_outputs, box_outputs, labels)["det_loss"]
            loss += l2_loss(model.trainable_variables, config.loss.weight_decay)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    times = []
    for i in range(warmup + steps):
        images, labels = batches[i % len(batches)]
        start = time.perf_counter()
        step(images, labels).numpy()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientdet-d0")
    parser.add_argument("--pictures", type=int, default=64)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--parallel", default="1,2", help="comma-separated num_parallel_calls values")
    parser.add_argument("--autoaugment_policy", default="", help="'', v0 or randaug")
    parser.add_argument("--train_steps", type=int, default=5, help="timed training steps (0 skips)")
    args = parser.parse_args()

    config = get_config(args.model, {"data.autoaugment_policy": args.autoaugment_policy,
                                     "data.shuffle_buffer": args.pictures})
    results = {"model": args.model, "image_size": config.image_size, "batch_size": args.batch_size,
               "pictures": args.pictures, "picture_size": [480, 640],
               "autoaugment_policy": args.autoaugment_policy, "cpu_count": os.cpu_count(),
               "tensorflow": tf.__version__, "pictures_per_s": {}}
    with tempfile.TemporaryDirectory() as folder:
        pattern = write_synthetic(folder, args.pictures, args.shards)
        for parallel in [int(p) for p in args.parallel.split(",")]:
            rate = measure(pattern, config, parallel, args.batch_size, args.batches, args.warmup)
            results["pictures_per_s"]["num_parallel_calls=%d" % parallel] = round(rate, 1)
        if args.train_steps:
            rate = train_step_rate(pattern, config, args.batch_size, args.train_steps, warmup=2)
            results["train_step_pictures_per_s"] = round(rate, 1)
            results["pipeline_over_train_step"] = round(
                min(results["pictures_per_s"].values()) / rate, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
