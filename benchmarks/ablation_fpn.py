"""A miniature of the paper's Table 5 on the shapes dataset: feature networks trained alike.

    python -m benchmarks.ablation_fpn [--steps 600] [--seeds 0,1] [--output_dir /tmp/ablation]

Every variant shares the demo detector's backbone, width, depth, heads, data and schedule
(efficientdet_tf/cli/demo.py: Lite0 design at 128 px, slimmed), and differs only in the feature
network: top-down `fpn`, `panet`, `fully_connected`, `bifpn` with plain `sum` fusion and `bifpn`
with `fastattn` fusion. Each is trained from scratch for --steps steps per seed and evaluated with
COCOeval on the held-out shapes pictures. Prints one Markdown row per variant: AP and AP50 per seed
and their mean, weights and multiply-adds of the whole model and of the feature network.
"""

import argparse
import json
import os
import statistics


VARIANTS = (("fpn", "fpn", "fastattn"), ("panet", "panet", "fastattn"),
            ("fully_connected", "fully_connected", "fastattn"), ("bifpn sum", "bifpn", "sum"),
            ("bifpn fastattn", "bifpn", "fastattn"))


def make_data(folder, num_train, num_val):
    """The demo's shapes dataset as TFRecords; returns (train pattern, val pattern, label map file)."""
    from efficientdet_tf.cli.demo import PICTURE_SIZES
    from efficientdet_tf.data.label_map import label_map_path
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    jsons = make_shapes_dataset(folder, num_train, num_val, seed=0, size_range=PICTURE_SIZES)
    for split in ("train", "val"):
        create_coco_tfrecord.create_coco_tfrecord(os.path.join(folder, split), jsons[split],
                                                  os.path.join(folder, split), num_shards=1, num_workers=2)
    return (os.path.join(folder, "train-*"), os.path.join(folder, "val-*"),
            label_map_path(os.path.join(folder, "train")))


def run_variant(config, model_dir, train_pattern, val_pattern, steps, seed):
    """Trains one variant from scratch and returns its COCO metrics on the validation records."""
    import keras

    from efficientdet_tf.eval.evaluator import evaluate
    from efficientdet_tf.train.trainer import train
    train(config, model_dir, train_file_pattern=train_pattern, train_steps=steps, save_every=steps,
          seed=seed, progress=False)
    metrics = evaluate(model_dir, val_file_pattern=val_pattern, progress=False).metrics
    keras.backend.clear_session()
    return metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--num_train", type=int, default=1000)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--output_dir", default="/tmp/efficientdet_ablation")
    args = parser.parse_args()

    from efficientdet_tf.cli.demo import demo_config
    from efficientdet_tf.model.flops import summarize
    from efficientdet_tf.model.efficientdet import build_model

    os.makedirs(args.output_dir, exist_ok=True)
    train_pattern, val_pattern, label_map_file = make_data(os.path.join(args.output_dir, "shapes"),
                                                           args.num_train, args.num_val)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for label, fpn_name, fusion in VARIANTS:
        config = demo_config(5, label_map_file).replace({"fpn_name": fpn_name, "fpn_weight_method": fusion})
        size = summarize(build_model(config))
        results = []
        for seed in seeds:
            model_dir = os.path.join(args.output_dir, "%s_seed%d" % (label.replace(" ", "_"), seed))
            metrics = run_variant(config, model_dir, train_pattern, val_pattern, args.steps, seed)
            results.append((metrics["AP"], metrics["AP50"]))
            print(json.dumps({"variant": label, "seed": seed, "AP": metrics["AP"], "AP50": metrics["AP50"]}), flush=True)
        rows.append((label, results, size))
    print("\n| feature network | AP per seed | AP50 per seed | mean AP / AP50 | weights | mult-adds | "
          "feature-net weights | feature-net mult-adds |")
    print("|---|---|---|---|---|---|---|---|")
    for label, results, size in rows:
        aps, ap50s = [r[0] for r in results], [r[1] for r in results]
        print("| %s | %s | %s | %.3f / %.3f | %.3fM | %.3fB | %.1fK | %.1fM |" % (
            label, ", ".join("%.3f" % a for a in aps), ", ".join("%.3f" % a for a in ap50s),
            statistics.mean(aps), statistics.mean(ap50s), size["trainable_weights"] / 1e6, size["flops"] / 1e9,
            size["fpn_weights"] / 1e3, size["fpn_flops"] / 1e6))


if __name__ == "__main__":
    main()
