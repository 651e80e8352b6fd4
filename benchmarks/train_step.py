"""Training pictures/s: our D0 training step beside PyTorch `effdet`'s, in the same process.

CPU (TensorFlow, the default):
    python -m benchmarks.train_step [--batch 8] [--rounds 5] [--warmup 2] [--no_peer]
times one optimizer step of the trainer (`train.train_step.build_train_step`: forward, focal + Huber
loss with the global positives normaliser, weight decay, gradients, per-tensor then global clipping at 10, SGD
momentum + EMA) on a cached batch of the real input pipeline (shapes TFRecords at 480-640 px), and
`effdet`'s `tf_efficientdet_d0` training step (`DetBenchTrain`: anchor labelling, focal + Huber
loss, backward, clip 10, SGD momentum; AMP off) at the same batch and size. The two are timed in
alternating rounds (the shared machine's noise hits both alike); pictures/s = batch / median.
Note: effdet labels anchors inside its step; our anchor targets come from the input pipeline.

GPU, where only JAX and PyTorch are installed (no TensorFlow; carry the keras wheel):
    KERAS_BACKEND=jax python -m benchmarks.train_step --jax [--batch 16] [--bf16] [--peer]
times the same network and loss under the JAX backend (jit; bf16 with --bf16), SGD momentum,
clip by global norm and EMA written in jax.numpy, on synthetic anchor targets; --peer times
`effdet` with AMP (float16 autocast + GradScaler) at the same batch on the GPU.
Smoke test on a CPU: JAX_PLATFORMS=cpu python -m benchmarks.train_step --jax --image_size 128 --batch 2
--rounds 2 --warmup 1.

Each measurement is printed as one JSON line (also appended to $OUT/train_step.jsonl when OUT is set).
"""

import argparse
import atexit
import os
import shutil
import tempfile

from benchmarks.timing import interleaved_medians, recorder

say = recorder("train_step.jsonl")


# ---- TensorFlow (ours) ---------------------------------------------------------------------------

def cached_step(config, record, precision="float32", use_xla=False):
    """(step, batch): the trainer's step for `config` under a one-CPU strategy, one cached batch of `record`."""
    import tensorflow as tf

    from efficientdet_tf import factory
    from efficientdet_tf.data.pipeline import InputPipeline
    from efficientdet_tf.train import schedules
    from efficientdet_tf.train.optimizer import build_optimizer
    from efficientdet_tf.train.train_step import build_train_step, build_training_model

    batch_size = config.train.batch_size
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = build_training_model(config, precision)
        lr = schedules.scale_for_batch(config.train.learning_rate, batch_size)
        optimizer = build_optimizer(config.train, lr, precision)
        optimizer.build(model.trainable_variables)
    step = build_train_step(strategy, model, optimizer, model.trainable_variables, factory.build_loss_fn(config),
                            float(config.loss.weight_decay), float(config.train.clip_gradients_norm), precision,
                            use_xla=use_xla)
    pipeline = InputPipeline(record, config, is_training=True, batch_size=batch_size)
    return step, next(iter(strategy.distribute_datasets_from_function(pipeline)))


def tensorflow_step(args):
    """A no-argument function running one training step of ours on a cached batch."""
    from efficientdet_tf.config import get_config
    from tfrecord_tools import create_coco_tfrecord
    from tfrecord_tools.make_shapes_dataset import make_shapes_dataset

    folder = tempfile.mkdtemp(prefix="train_step_bench_")
    atexit.register(shutil.rmtree, folder, True)
    jsons = make_shapes_dataset(folder, max(args.batch * 2, 8), 1, seed=0, size_range=(480, 640))
    paths, _ = create_coco_tfrecord.create_coco_tfrecord(
        os.path.join(folder, "train"), jsons["train"], os.path.join(folder, "train"), num_shards=1)
    config = get_config("efficientdet-" + args.model, {
        "image_size": args.image_size, "train.batch_size": args.batch,
        "train.mixed_precision": "bfloat16" if args.bf16 else ""})
    step, batch = cached_step(config, paths[0], "bfloat16" if args.bf16 else "float32", use_xla=args.xla)

    def run():
        return float(step(batch)["total_loss"].numpy())
    return run


def effdet_step(args, device="cpu", amp=False):
    """A no-argument function running one `effdet` training step, or None if effdet is missing."""
    try:
        import effdet
        import torch
    except ImportError as e:
        say(peer="skipped", reason="torch/effdet not importable: %s" % e)
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    bench = effdet.create_model("tf_efficientdet_" + args.model, bench_task="train", bench_labeler=True, pretrained=False,
                                pretrained_backbone=False, image_size=(args.image_size, args.image_size)).to(device)
    bench.train()
    optimizer = torch.optim.SGD(bench.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    scaler = torch.amp.GradScaler(device, enabled=amp)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator).to(device)
    # Four boxes per picture, [ymin, xmin, ymax, xmax] pixels, 1-based classes (effdet's convention).
    corners = torch.rand(args.batch, 4, 2, generator=generator) * args.image_size * 0.5
    sizes = 32 + torch.rand(args.batch, 4, 2, generator=generator) * args.image_size * 0.4
    target = {"bbox": torch.cat([corners, corners + sizes], -1).to(device),
              "cls": torch.randint(1, 91, (args.batch, 4), generator=generator).float().to(device)}

    def run():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
            loss = bench(x, target)["loss"]
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(bench.parameters(), 10.0)
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())  # synchronises the device
        return value
    return run


# ---- JAX backend ---------------------------------------------------------------------------------

def jax_step(args):
    """A no-argument function running one jitted training step of our network under KERAS_BACKEND=jax."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from efficientdet_tf.config import get_config
    from efficientdet_tf.model.efficientdet import build_model
    from efficientdet_tf.ops.anchors import num_anchors

    if keras.backend.backend() != "jax":
        raise SystemExit("--jax needs KERAS_BACKEND=jax set before Python starts")
    keras.config.set_dtype_policy("mixed_bfloat16" if args.bf16 else "float32")
    config = get_config("efficientdet-" + args.model, {"image_size": args.image_size})
    model = build_model(config)
    loss = config.loss
    classes, anchors = config.num_classes, num_anchors(config.anchors.num_scales, config.anchors.aspect_ratios)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.image_size, args.image_size, 3)).astype("float32")
    targets, sizes, size = [], [], args.image_size
    for level in range(1, config.max_level + 1):
        size = (size - 1) // 2 + 1
        if level >= config.min_level:
            sizes.append(size)
    for side in sizes:
        # About 1% positive anchors of random classes; the rest negative: speed does not depend on it.
        cls = np.where(rng.random((args.batch, side, side, anchors)) < 0.01,
                       rng.integers(0, classes, (args.batch, side, side, anchors)), -1).astype("int32")
        box = (rng.normal(size=(args.batch, side, side, anchors * 4)) * 0.1).astype("float32")
        targets.append((cls, box))
    num_positives = float(sum(int((c >= 0).sum()) for c, _ in targets))

    def detection_loss(class_outputs, box_outputs):
        # The same formulas as efficientdet_tf.losses.detection_loss (which is written in TensorFlow).
        normalizer = num_positives + 1.0
        cls_sum, box_sum = 0.0, 0.0
        for logits, boxes, (cls, box_targets) in zip(class_outputs, box_outputs, targets):
            logits = logits.astype(jnp.float32).reshape(cls.shape + (classes,))
            one_hot = jax.nn.one_hot(jnp.maximum(cls, 0), classes) * (cls >= 0)[..., None]
            prob = jax.nn.sigmoid(logits)
            p_t = one_hot * prob + (1 - one_hot) * (1 - prob)
            alpha_t = one_hot * loss.alpha + (1 - one_hot) * (1 - loss.alpha)
            ce = jnp.maximum(logits, 0) - logits * one_hot + jnp.log1p(jnp.exp(-jnp.abs(logits)))
            cls_sum += jnp.sum(alpha_t * (1 - p_t) ** loss.gamma * ce * (cls > -2)[..., None])
            error = jnp.abs(boxes.astype(jnp.float32) - box_targets)
            quadratic = jnp.minimum(error, loss.delta)
            huber = 0.5 * quadratic ** 2 + loss.delta * (error - quadratic)
            mask = jnp.repeat(cls >= 0, 4, axis=-1) & (box_targets != 0.0)
            box_sum += jnp.sum(huber * mask)
        return cls_sum / normalizer + loss.box_loss_weight * box_sum / (4.0 * normalizer)

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    is_kernel = [("kernel" in v.path) for v in model.trainable_variables]
    lr, decay = 0.08 * args.batch / 64, config.train.moving_average_decay

    def objective(params, state, images):
        (class_outputs, box_outputs), state = model.stateless_call(params, state, images, training=True)
        reg = 0.5 * sum(jnp.sum(p.astype(jnp.float32) ** 2) for p, k in zip(params, is_kernel) if k)
        return detection_loss(class_outputs, box_outputs) + loss.weight_decay * reg, state

    @jax.jit
    def step(params, state, velocity, ema, iteration, images):
        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(params, state, images)
        norm = jnp.sqrt(sum(jnp.sum(g.astype(jnp.float32) ** 2) for g in grads))
        factor = jnp.minimum(1.0, config.train.clip_gradients_norm / jnp.maximum(norm, 1e-12))
        velocity = [config.train.momentum * v - lr * factor * g for v, g in zip(velocity, grads)]
        params = [p + v for p, v in zip(params, velocity)]
        rate = jnp.minimum(decay, (1.0 + iteration) / (10.0 + iteration))
        ema = [rate * e + (1 - rate) * p for e, p in zip(ema, params)]
        return params, state, velocity, ema, iteration + 1, value

    carry = [trainable, non_trainable, [jnp.zeros_like(p) for p in trainable], list(trainable), 0.0]
    images = jax.device_put(x)

    def run():
        *new, value = step(*carry, images)
        carry[:] = new
        return float(jax.block_until_ready(value))
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="d0")
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=None, help="default 8 (TF/CPU), 16 (--jax)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no_peer", action="store_true", help="TF mode: skip effdet")
    parser.add_argument("--jax", action="store_true", help="KERAS_BACKEND=jax variant (GPU)")
    parser.add_argument("--peer", action="store_true", help="--jax mode: also time effdet with AMP on the GPU")
    parser.add_argument("--bf16", action="store_true", help="mixed bfloat16 for ours")
    parser.add_argument("--xla", action="store_true", help="TF mode: XLA-compile our step")
    args = parser.parse_args()
    args.batch = args.batch or (16 if args.jax else 8)
    setting = dict(model=args.model, image_size=args.image_size, batch=args.batch, rounds=args.rounds)
    fns = {}
    if args.jax:
        import jax
        fns["ours (keras/jax, %s)" % ("bf16" if args.bf16 else "fp32")] = jax_step(args)
        device = jax.devices()[0].platform
        if args.peer:
            peer = effdet_step(args, device="cuda" if device == "gpu" else "cpu", amp=device == "gpu")
            if peer:
                fns["effdet (torch, %s)" % ("AMP" if device == "gpu" else "fp32")] = peer
        setting["device"] = str(jax.devices()[0])
    else:
        # Build the peer first: importing torch (triton) after TensorFlow crashes in this environment.
        peer = None if args.no_peer else effdet_step(args)
        fns["ours (tf.distribute step, %s%s)" % ("bf16" if args.bf16 else "fp32", ", XLA" if args.xla else "")] = \
            tensorflow_step(args)
        if peer:
            fns["effdet (torch, fp32)"] = peer
        setting["device"] = "cpu (%d cores)" % (os.cpu_count() or 1)
    medians = {label: ms / 1000.0 for label, ms in interleaved_medians(fns, args.rounds, args.warmup).items()}
    for label, seconds in medians.items():
        rate = args.batch / seconds
        say(candidate=label, seconds_per_step=round(seconds, 4), pictures_per_second=round(rate, 3), **setting)
    if len(medians) == 2:
        (a, ta), (b, tb) = medians.items()
        say(ratio="%s / %s" % (a, b), speedup=round(tb / ta, 3))


if __name__ == "__main__":
    main()
