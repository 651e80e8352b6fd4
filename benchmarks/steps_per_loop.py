"""What a larger `steps_per_loop` gives: training pictures/s of the trainer's inner loop at several lengths.

    python -m benchmarks.steps_per_loop [--loops 1,10,50] [--rounds 5] [--model demo|efficientdet-d0]

Builds one `TrainingRun` (the demo's Lite0-based model at 128 px on generated shapes records, or a
named model at its own size) and times its inner loop (`TrainingRun._run_loop`: the compiled loop of
n steps, the read-back of every step's losses, the history and finite checks) at each length, in
interleaved rounds on the same model and input; pictures/s = batch * n / median seconds per loop.
Prints one JSON line per setting and the ratios to a loop of 1.
"""

import argparse
import os
import statistics
import tempfile
import time

from efficientdet_tf.train.host_memory import keep_freed_memory

keep_freed_memory()  # before TensorFlow starts, as the command-line tools do

from benchmarks.timing import recorder  # noqa: E402


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return "+".join(name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX", "amx_tile"))
                    if flag in flags)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="1,10,50", help="inner-loop lengths to time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="demo", help="'demo' or a model name (at its own image size)")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    loops = [int(n) for n in args.loops.split(",")]

    from efficientdet_tf.cli.demo import demo_config
    from efficientdet_tf.config import get_config
    from efficientdet_tf.train.trainer import RunOptions, TrainingRun
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    folder = tempfile.mkdtemp()
    jsons = make_shapes_dataset(folder, 256, 0, seed=0, size_range=(128, 160))
    paths, _ = create_coco_tfrecord.create_coco_tfrecord(os.path.join(folder, "train"), jsons["train"],
                                                          os.path.join(folder, "train"), num_shards=1)
    if args.model == "demo":
        config = demo_config(5, "")
    else:
        config = get_config(args.model, {"num_classes": 5})
    config = config.replace({"train.batch_size": args.batch})
    run = TrainingRun(config, os.path.join(folder, "model"), RunOptions(
        train_file_pattern=paths[0], train_steps=10**6, progress=False, seed=0))
    run.set_up()
    run.restore()
    for n in loops:  # traces once (n is a tensor), then warms each length up
        run._run_loop(n)
    seconds = {n: [] for n in loops}
    for _ in range(args.rounds):
        for n in loops:
            start = time.perf_counter()
            run._run_loop(n)
            seconds[n].append((time.perf_counter() - start) / n)
    say = recorder("steps_per_loop.jsonl")
    base = statistics.median(seconds[loops[0]])
    for n in loops:
        median = statistics.median(seconds[n])
        say(model=args.model, image_size=config.image_size, batch=args.batch, steps_per_loop=n,
            ms_per_step=round(median * 1000, 2), pictures_per_second=round(args.batch / median, 1),
            speedup_vs_first=round(base / median, 3), cpu=_cpu_flags(), cores=os.cpu_count())


if __name__ == "__main__":
    main()
