"""Writes the compact D0 reference copy (tests/data/efficientdet-d0) from the full reference data.

Usage: python tests/data/make_reference_data.py /path/to/reference/efficientdet-d0
See tests/reference_data.py for what is kept and how the tests read it back.
"""

import os
import shutil
import sys

import numpy as np

EMA_SUFFIX = "/ExponentialMovingAverage"
CLASS_KERNEL = "class_net/class-predict/pointwise_kernel"
CLASS_BIAS = "class_net/class-predict/bias"


def compact_outputs(path, ema):
    """The reference outputs with each class output stored as its 64-channel pre-projection features.

    class_outputs_p<l> = features @ pointwise_kernel + bias (the class predictor's last step is linear),
    so features = (outputs - bias) @ pinv(kernel) hold the same information in 64 instead of 810
    channels. Rebuilding in float64 and rounding to float32 gives the reference bit for bit at ~96% of
    the positions and one unit in the last place off elsewhere; `<name>_ulps` (int8, mostly zeros)
    stores those offsets, so `reference_data.rebuild_outputs` restores the exact arrays.
    """
    kernel = ema[CLASS_KERNEL].astype(np.float64)[0, 0]
    bias = ema[CLASS_BIAS].astype(np.float64)
    inverse = np.linalg.pinv(kernel)
    compact = {}
    with np.load(path) as ref:
        for name in ref.files:
            value = ref[name]
            if not name.startswith("class_outputs_p"):
                compact[name] = value  # net_input, box outputs, the picture and the detections: as they are
                continue
            features = ((value.astype(np.float64) - bias) @ inverse).astype(np.float32)
            rebuilt = (features.astype(np.float64) @ kernel + bias).astype(np.float32)
            ulps = value.view(np.int32).astype(np.int64) - rebuilt.view(np.int32).astype(np.int64)
            if np.abs(ulps).max() > 127:  # also catches a sign flip (far apart as integers)
                raise SystemExit("%s: the linear rebuild is too far from the reference" % name)
            compact[name + "_features"] = features
            compact[name + "_ulps"] = ulps.astype(np.int8)
    return compact


def main(source):
    import tensorflow as tf

    target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "efficientdet-d0")
    os.makedirs(target, exist_ok=True)
    reader = tf.train.load_checkpoint(os.path.join(source, "model"))
    ema, raw = {}, {}
    for name in sorted(reader.get_variable_to_shape_map()):
        value = reader.get_tensor(name)
        if name.endswith(EMA_SUFFIX):
            ema[name[: -len(EMA_SUFFIX)]] = value
        elif value.dtype == np.float32:
            raw[name] = value
        else:
            ema[name] = value  # global_step: stored once, as it is
    np.savez_compressed(os.path.join(target, "checkpoint_ema.npz"), **ema)
    np.savez_compressed(os.path.join(target, "checkpoint_raw.npz"), **raw)

    np.savez_compressed(os.path.join(target, "reference_outputs.npz"),
                        **compact_outputs(os.path.join(source, "reference_outputs.npz"), ema))
    for name in ("reference_meta.json", "training_reference.npz", "training_step_reference.npz"):
        shutil.copy(os.path.join(source, name), os.path.join(target, name))
    total = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
    print("wrote %s: %.1f MB" % (target, total / 1e6))


if __name__ == "__main__":
    main(sys.argv[1])
