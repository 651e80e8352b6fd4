"""Does averaging the batch-norm moving statistics with the weights (the official TF1 trainer's
EMA) move COCO AP? One checkpoint, evaluated twice.

    efficientdet-demo --output_dir /tmp/demo_bn --hparams=train.average_batch_norm=true
    python -m benchmarks.ema_batch_norm --model_dir /tmp/demo_bn/model \
        --val_file_pattern '/tmp/demo_bn/shapes/val-*.tfrecord'

The model dir must come from a run with `train.average_batch_norm=true`, so its checkpoint holds
both the raw moving statistics and their averages. The EMA weights are evaluated once with the
averaged statistics and once with the raw ones (what the trainer gives with the option off), with
the project's evaluator (official post-processing). Prints one JSON line per variant (also appended
to $OUT/ema_batch_norm.jsonl when OUT is set).
"""

import argparse

from benchmarks.timing import recorder

say = recorder("ema_batch_norm.jsonl")
STATISTICS = ("moving_mean", "moving_variance")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--val_file_pattern", required=True)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from efficientdet_tf.checkpoints.loading import trainer_tensors
    from efficientdet_tf.checkpoints.official import model_variables
    from efficientdet_tf.eval.evaluator import evaluate
    from efficientdet_tf.checkpoints.opening import open_model

    prefix = tf.train.latest_checkpoint(args.model_dir)
    tensors = trainer_tensors(prefix)
    averaged = [name for name in tensors["ema"] if name.endswith(STATISTICS)]
    if not averaged:
        raise SystemExit("%s holds no averaged batch-norm statistics: train with "
                         "--hparams=train.average_batch_norm=true" % prefix)
    model, _ = open_model(args.model_dir)  # EMA weights, averaged statistics
    variables = model_variables(model)
    gap = max(float(np.max(np.abs(tensors["ema"][n] - tensors["weights"][n]) / (np.abs(tensors["weights"][n]) + 1e-6)))
              for n in averaged)
    for variant in ("averaged statistics", "raw statistics"):
        if variant == "raw statistics":
            for name in averaged:
                variables[name].assign(tensors["weights"][name])
        report = evaluate(model, val_file_pattern=args.val_file_pattern, progress=False)
        say(variant=variant, checkpoint=prefix, statistics=len(averaged), largest_relative_gap=round(gap, 4),
            **{k: round(float(report.metrics[k]), 4) for k in ("AP", "AP50", "AP75")})


if __name__ == "__main__":
    main()
