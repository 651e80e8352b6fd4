"""Softmax fusion (`attn`) against fast normalised fusion (`fastattn`), timed in one run.

    python -m benchmarks.fusion_speed [--model efficientdet-d0] [--batch 1] [--rounds 15]
    KERAS_BACKEND=jax python -m benchmarks.fusion_speed   # e.g. on a GPU machine without TensorFlow

Two measurements, each interleaved round by round between the methods (so machine noise hits
both alike), medians reported with the ratio softmax / fast:
- the whole network built with `fpn_weight_method` = attn, fastattn (and sum for reference);
- the fusion layers alone: one `WeightedFusion` over three P3-sized maps, as in a BiFPN node.
Works on the TensorFlow backend (tf.function) and the JAX backend (jax.jit).
"""

import argparse
import json
import statistics
import time

METHODS = ("attn", "fastattn", "sum")


def compiled_forward(model_or_layer, **call_args):
    """A compiled inference call of a Keras model or layer on the active backend, and its sync."""
    import keras

    if keras.backend.backend() == "jax":
        import jax
        trainable = [v.value for v in model_or_layer.trainable_variables]
        frozen = [v.value for v in model_or_layer.non_trainable_variables]

        @jax.jit
        def forward(x):
            outputs, _ = model_or_layer.stateless_call(trainable, frozen, x, **call_args)
            return outputs
        return forward, jax.block_until_ready
    import tensorflow as tf
    forward = tf.function(lambda x: model_or_layer(x, **call_args))
    return forward, lambda out: tf.nest.map_structure(lambda t: t.numpy(), out)


def interleaved_medians(candidates, rounds, calls_per_round):
    """{name: median ms per call} over `rounds`, visiting every candidate once per round."""
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, (fn, sync, x) in candidates.items():
            start = time.perf_counter()
            for _ in range(calls_per_round):
                sync(fn(x))
            times[name].append((time.perf_counter() - start) * 1000 / calls_per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientdet-d0")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=3, help="calls per round and candidate")
    args = parser.parse_args()

    import keras
    import numpy as np

    import efficientdet_tf as edt
    from efficientdet_tf.model.layers import WeightedFusion

    rng = np.random.default_rng(0)
    networks, layers = {}, {}
    for method in METHODS:
        model = edt.build_model(args.model, {"fpn_weight_method": method})
        size = model.config.image_size
        x = keras.ops.convert_to_tensor(rng.normal(size=(args.batch, size, size, 3)).astype("float32"))
        networks[method] = compiled_forward(model, training=False) + (x,)
        side, width = size // 8, model.config.fpn_num_filters
        maps = [keras.ops.convert_to_tensor(rng.normal(size=(args.batch, side, side, width)).astype("float32"))
                for _ in range(3)]
        layer = WeightedFusion(method)
        layer.build([m.shape for m in maps])
        layers[method] = compiled_forward(layer) + (maps,)
    for candidates in (networks, layers):  # compile and warm up
        interleaved_medians(candidates, 2, 1)

    result = {"backend": keras.backend.backend(), "model": args.model, "batch": args.batch, "rounds": args.rounds}
    for label, candidates, calls in (("network", networks, args.calls), ("fusion_layer", layers, args.calls * 20)):
        medians = interleaved_medians(candidates, args.rounds, calls)
        result[label + "_ms"] = {name: round(ms, 4) for name, ms in medians.items()}
        result[label + "_softmax_over_fast"] = round(medians["attn"] / medians["fastattn"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
