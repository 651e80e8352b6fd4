"""How far apart are the two gradient-clipping scopes on one D0 step over two replicas?

    python -m benchmarks.clip_scope --ckpt efficientdet-d0

'replica' (the default, as the official trainers) clips each replica's share of the gradient
before the sum; 'global' clips the sum, which does not depend on the replica count. Two logical
CPUs run one optimizer step of D0 at 256 px (official recipe: clip norm 10) from the same weights
on the same two pictures (the reference batch in tests/data), once per scope. Prints the norms of
the two weight updates, their relative difference and their cosine, and the norm of each replica's
share before clipping (also appended to $OUT/clip_scope.jsonl when OUT is set).
"""

import argparse

import numpy as np
import tensorflow as tf

from benchmarks.timing import recorder

say = recorder("clip_scope.jsonl")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="efficientdet-d0", help="official D0 checkpoint (prefix, folder or name)")
    parser.add_argument("--data", required=True, help="training_step_reference.npz of the D0 reference "
                        "(the repository keeps one in tests/data/efficientdet-d0/)")
    parser.add_argument("--clip", type=float, default=10.0)
    args = parser.parse_args()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from efficientdet_tf import factory
    from efficientdet_tf.checkpoints.loading import load_weights
    from efficientdet_tf.config import get_config
    from efficientdet_tf.train.optimizer import build_optimizer
    from efficientdet_tf.train.train_step import build_train_step, build_training_model

    data = np.load(args.data)
    config = get_config("efficientdet-d0", {"image_size": 256, "train.batch_size": 2, "moving_average_decay": 0,
                                            "clip_gradients_norm": args.clip, "backbone_survival_prob": 1.0})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    labels = {k: data[k] for k in data.files if k.startswith(("cls_targets", "box_targets"))}
    labels["num_positives"] = data["num_positives"].astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((data["images"], labels)).batch(2)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    with strategy.scope():
        model = build_training_model(config)
    load_weights(model, args.ckpt, use_ema=False)
    trainable = model.trainable_variables
    start = [v.numpy() for v in trainable]
    moved = {}
    for scope in ("replica", "global"):
        for variable, value in zip(trainable, start):
            variable.assign(value)
        with strategy.scope():
            optimizer = build_optimizer(config.train, 0.01, "float32")
            optimizer.build(trainable)
        step = build_train_step(strategy, model, optimizer, trainable, factory.build_loss_fn(config),
                                float(config.loss.weight_decay), args.clip, clip_scope=scope)
        step(batch)
        moved[scope] = np.concatenate([(v.numpy() - s).ravel() for v, s in zip(trainable, start)]) / -0.01
    a, b = moved["replica"], moved["global"]
    say(**{"what": "D0 step at 256 px, 2 replicas of 1 picture, clip norm %g" % args.clip,
         "update_norm_replica": float(np.linalg.norm(a)), "update_norm_global": float(np.linalg.norm(b)),
         "relative_difference": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
         "cosine": float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
         "share_of_weights_more_than_1pct_apart": float(np.mean(np.abs(a - b) > 0.01 * np.abs(b)))})


if __name__ == "__main__":
    main()
