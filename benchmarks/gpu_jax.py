"""GPU latency of the network under KERAS_BACKEND=jax (jit), beside the PyTorch `effdet` peer.

For a machine with JAX and PyTorch but no TensorFlow (the lent H100): carry the keras wheel and run
    KERAS_BACKEND=jax python -m benchmarks.gpu_jax [--models d0,d1,...] [--peer] [--quick]
It prints one JSON line per measurement (also appended to $OUT/gpu_jax.jsonl when OUT is set):
D0..D7 at batch 1 (fp32 and bf16), D0 at batch 64, and with --peer `effdet`'s
tf_efficientdet_dN in eager fp32 and torch.compile(mode='reduce-overhead') in the same process.
Medians over repeated, synchronised runs. Random weights: speed does not depend on their values.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
from benchmarks.timing import recorder

say = recorder("gpu_jax.jsonl")

SIZES = {"d0": 512, "d1": 640, "d2": 768, "d3": 896, "d4": 1024, "d5": 1280, "d6": 1280, "d7": 1536}


def median_ms(fn, sync, repeats, warmup):
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_keras(name, batch, dtype, repeats, warmup):
    import jax
    import keras
    import numpy as np

    import efficientdet_tf as edt
    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bf16" else "float32")
    model = edt.build_model("efficientdet-" + name)
    size = model.config.image_size
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

    @jax.jit
    def forward(state, x):
        outputs, _ = model.stateless_call(state[0], state[1], x, training=False)
        return outputs

    x = jax.device_put(np.random.rand(batch, size, size, 3).astype("float32"))
    ms = median_ms(lambda: forward(state, x), jax.block_until_ready, repeats, warmup)
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    return ms


def bench_peer(name, batch, repeats, warmup, compiled):
    import effdet
    import torch
    torch.backends.cudnn.benchmark = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = effdet.create_model("tf_efficientdet_" + name, pretrained=False, pretrained_backbone=False,
                                bench_task="").to(device).eval()
    if compiled:
        model = torch.compile(model, mode="reduce-overhead")
    x = torch.randn(batch, 3, SIZES[name], SIZES[name], device=device)

    def sync(_):
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        return median_ms(lambda: model(x), sync, repeats, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SIZES))
    parser.add_argument("--peer", action="store_true", help="also time effdet (needs torch, effdet)")
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    args = parser.parse_args()
    repeats, warmup = (3, 1) if args.quick else (30, 5)
    import jax
    say(what="env", jax=jax.__version__, devices=str(jax.devices()))
    for name in args.models.split(","):
        for dtype in ("fp32", "bf16"):
            say(what="keras_jax_net_bs1_ms", model=name, dtype=dtype,
                ms=round(bench_keras(name, 1, dtype, repeats, warmup), 3))
        if args.peer:
            say(what="effdet_net_bs1_ms", model=name, eager_fp32=round(bench_peer(name, 1, repeats, warmup, False), 3))
    batch = 64 if not args.quick else 2
    ms = bench_keras("d0", batch, "bf16", max(3, repeats // 3), warmup)
    say(what="keras_jax_d0_throughput", batch=batch, dtype="bf16", ms_per_batch=round(ms, 2),
        img_per_s=round(batch / ms * 1000, 1))
    if args.peer:
        say(what="effdet_d0_net_bs1_ms_torch_compile", fp32=round(bench_peer("d0", 1, repeats, warmup, True), 3))


if __name__ == "__main__":
    main()
