"""Our trainer beside the official google/automl TF2 trainer: same data, model, steps and recipe.

    python -m benchmarks.train_vs_official --official_dir $TMPDIR/automl/efficientdet \
        --official_python $TMPDIR/automl_venv/bin/python [--model efficientdet-d0 --image_size 256
        --batch 8 --steps 300 --seeds 1,2 --num_train 400 --num_val 100 --padded_official]

`--official_dir` is the `efficientdet/` folder of a google/automl checkout (nothing of it is in this
project); `--official_python` a Python whose environment has tensorflow 2.21, tf-keras 2.21,
tensorflow-hub, pyyaml, pillow, absl-py, matplotlib and six (it runs under TF_USE_LEGACY_KERAS=1), and
setuptools < 81 (tensorflow-hub imports `pkg_resources`).

Both trainers train from scratch on the same shapes TFRecords (written here) with the same
hyper-parameters: the official defaults (SGD momentum 0.9, weight decay 4e-5, per-tensor then
global clipping at 10, focal/Huber loss, scale jitter 0.1-2.0, flips) and the learning rate given
here; EMA off on both (the official EMA needs TensorFlow Addons). The official TF2 warm-up starts
at `lr_warmup_init` unscaled, ours scales it with batch/64: ours gets `lr_warmup_init * 64 / batch`
so both follow the same schedule. Each run is its own process (one after the other); pictures/s
is the steady state (every step but the first, input included) of each trainer's own loop. The
official weights are written as a name-based checkpoint and both models are scored by the
project's evaluator (`efficientdet_tf.eval`) on the same validation records.

Ours runs as the command-line tools run it, with glibc malloc's top padding set before TensorFlow
starts (`train/host_memory.py`); `--padded_official` adds a run of the official trainer with the
same padding (`MALLOC_TOP_PAD_`), to show how much of the difference is that setting alone.

Each run is printed as one JSON line (also appended to $OUT/train_vs_official.jsonl when OUT is set).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from benchmarks.timing import recorder

say = recorder("train_vs_official.jsonl")

# Runs in the official environment: a stand-in for neural_structured_learning (no longer imports on
# TF 2.21; only the adversarial-loss option uses it), the official model/optimizer/input reader,
# keras fit with a timing callback, then the weights saved under their official names.
OFFICIAL_RUNNER = textwrap.dedent(r"""
    import json, os, sys, time, types
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.modules["neural_structured_learning"] = types.ModuleType("neural_structured_learning")
    official_dir, records, prefix, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    sys.path.insert(0, official_dir)
    import tensorflow as tf
    import dataloader, hparams_config
    from tf2 import train_lib

    tf.keras.utils.set_random_seed(args["seed"])
    config = hparams_config.get_detection_config(args["model"])
    config.override(args["hparams"])
    config.image_size = (args["image_size"], args["image_size"])
    config.override(dict(model_name=args["model"], batch_size=args["batch"], steps_per_epoch=args["steps"],
                         num_epochs=1, strategy="", num_shards=1, model_dir=os.path.dirname(prefix),
                         profile=False, debug=False, steps_per_execution=1), True)
    with tf.distribute.OneDeviceStrategy("device:CPU:0").scope():
        model = train_lib.EfficientDetNetTrain(config=config)
        model.build((None, args["image_size"], args["image_size"], 3))
        model.compile(optimizer=train_lib.get_optimizer(config.as_dict()), loss={
            train_lib.BoxLoss.__name__: train_lib.BoxLoss(config.delta, reduction=tf.keras.losses.Reduction.NONE),
            train_lib.BoxIouLoss.__name__: train_lib.BoxIouLoss(
                config.iou_loss_type, config.min_level, config.max_level, config.num_scales,
                config.aspect_ratios, config.anchor_scale, config.image_size,
                reduction=tf.keras.losses.Reduction.NONE),
            train_lib.FocalLoss.__name__: train_lib.FocalLoss(
                config.alpha, config.gamma, label_smoothing=config.label_smoothing,
                reduction=tf.keras.losses.Reduction.NONE)})
        dataset = dataloader.InputReader(records, is_training=True,
                                         max_instances_per_image=config.max_instances_per_image)(config.as_dict())

        class Timer(tf.keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times, self.last = [], None
            def on_train_batch_begin(self, batch, logs=None):
                self.last = time.perf_counter()
            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self.last)
                self.logs = {k: float(v) for k, v in (logs or {}).items()}

        timer = Timer()
        model.fit(dataset, epochs=1, steps_per_epoch=args["steps"], callbacks=[timer], verbose=0)
    variables = [v for v in model.weights]
    names = [v.name.split(":")[0] for v in variables]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[v.read_value() for v in variables])
    steady = timer.times[1:]
    print("RESULT " + json.dumps({"pictures_per_second": args["batch"] * len(steady) / sum(steady),
                                  "losses": timer.logs, "variables": len(names)}))
""")

# Ours as the command-line tools run it: malloc padded before TensorFlow starts (train/host_memory.py).
OURS_RUNNER = textwrap.dedent(r"""
    import json, sys
    from efficientdet_tf.train.host_memory import keep_freed_memory
    keep_freed_memory()
    from efficientdet_tf.config import get_config
    from efficientdet_tf.train.trainer import train
    records, model_dir, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    config = get_config(args["model"], args["hparams"])
    result = train(config, model_dir, train_file_pattern=records, train_steps=args["steps"],
                   save_every=args["steps"], seed=args["seed"], progress=False)
    print("RESULT " + json.dumps({"pictures_per_second": result["pictures_per_second"],
                                  "losses": result["losses"]}))
""")


def make_records(folder, num_train, num_val):
    """Shapes train/val TFRecords; returns (train path, val path, number of classes)."""
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    jsons = make_shapes_dataset(folder, num_train, num_val, seed=0)
    paths = {}
    for split in ("train", "val"):
        written, report = create_coco_tfrecord.create_coco_tfrecord(
            os.path.join(folder, split), jsons[split], os.path.join(folder, split), num_shards=1)
        paths[split] = written[0]
    with open(jsons["train"]) as f:
        num_classes = max(c["id"] for c in json.load(f)["categories"])
    return paths["train"], paths["val"], num_classes


def _result(run, what):
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode != 0 or not lines:
        raise SystemExit("%s failed (exit %d):\n%s" % (what, run.returncode, run.stderr[-4000:]))
    return json.loads(lines[-1][len("RESULT "):])


def run_official(args, records, folder, seed, num_classes, padded=False):
    """The official trainer; `padded`: with glibc's MALLOC_TOP_PAD_ as ours sets it (a control)."""
    prefix = os.path.join(folder, "official%s_seed%d" % ("_padded" * padded, seed), "model")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    hparams = {"num_classes": num_classes, "moving_average_decay": 0, "learning_rate": args.learning_rate,
               "lr_warmup_init": args.lr_warmup_init, "lr_warmup_epoch": args.warmup_fraction}
    spec = {"model": args.model, "image_size": args.image_size, "batch": args.batch, "steps": args.steps,
            "seed": seed, "hparams": hparams}
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    if padded:
        env["MALLOC_TOP_PAD_"] = str(256 << 20)
    run = subprocess.run([args.official_python, "-c", OFFICIAL_RUNNER, args.official_dir, records, prefix,
                          json.dumps(spec)], capture_output=True, text=True, env=env)
    return _result(run, "the official trainer"), prefix


def run_ours(args, records, folder, seed, num_classes):
    model_dir = os.path.join(folder, "ours_seed%d" % seed)
    hparams = {"image_size": args.image_size, "num_classes": num_classes, "train.batch_size": args.batch,
               "moving_average_decay": 0, "learning_rate": args.learning_rate,
               # The official TF2 warm-up start is not scaled with the batch; ours is.
               "lr_warmup_init": args.lr_warmup_init * 64 / args.batch,
               "lr_warmup_epoch": args.warmup_fraction, "steps_per_epoch": args.steps}
    spec = {"model": args.model, "steps": args.steps, "seed": seed, "hparams": hparams}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", OURS_RUNNER, records, model_dir, json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    return _result(run, "our trainer"), model_dir


def score(checkpoint, val_records, args, num_classes):
    from efficientdet_tf.eval.evaluator import evaluate

    hparams = {"image_size": args.image_size, "num_classes": num_classes}
    report = evaluate(checkpoint, val_file_pattern=val_records, hparams=hparams, model_name=args.model,
                      progress=False)
    return {k: round(float(report.metrics[k]), 4) for k in ("AP", "AP50")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official_dir", required=True, help="google/automl's efficientdet/ folder")
    parser.add_argument("--official_python", required=True, help="Python of the official environment")
    parser.add_argument("--model", default="efficientdet-d0")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--num_train", type=int, default=400)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--learning_rate", type=float, default=0.64, help="peak rate per 64 pictures")
    parser.add_argument("--lr_warmup_init", type=float, default=0.008, help="the official (unscaled) start")
    parser.add_argument("--warmup_fraction", type=float, default=0.1, help="warm-up length / run length")
    parser.add_argument("--work_dir", default="")
    parser.add_argument("--padded_official", action="store_true", help="also run the official trainer with "
                        "MALLOC_TOP_PAD_ set, the malloc padding our command-line tools apply")
    args = parser.parse_args()
    args.official_dir = os.path.abspath(args.official_dir)
    if not os.path.isfile(os.path.join(args.official_dir, "tf2", "train_lib.py")):
        raise SystemExit("--official_dir: no tf2/train_lib.py under %s (give automl's efficientdet/ folder)"
                         % args.official_dir)
    folder = args.work_dir or tempfile.mkdtemp(prefix="train_vs_official_")
    train_records, val_records, num_classes = make_records(folder, args.num_train, args.num_val)
    rows = {"official": [], "ours": []}
    runners = [("official", run_official), ("ours", run_ours)]
    if args.padded_official:
        rows["official padded"] = []
        runners.insert(1, ("official padded", lambda *a: run_official(*a, padded=True)))
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, runner in runners:
            result, checkpoint = runner(args, train_records, folder, seed, num_classes)
            metrics = score(checkpoint, val_records, args, num_classes)
            row = dict(trainer=name, seed=seed, model=args.model, image_size=args.image_size, batch=args.batch,
                       steps=args.steps, pictures_per_second=round(result["pictures_per_second"], 2), **metrics)
            rows[name].append(row)
            say(**row)
    summary = {name: {key: statistics.mean(r[key] for r in runs) for key in ("AP", "AP50", "pictures_per_second")}
               for name, runs in rows.items()}
    summary["speed_ratio"] = summary["ours"]["pictures_per_second"] / summary["official"]["pictures_per_second"]
    say(summary=summary)


if __name__ == "__main__":
    main()
