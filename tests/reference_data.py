"""The D0 reference data of the tests: the compact copy in tests/data, and comparisons against it.

tests/data/efficientdet-d0/ (written by tests/data/make_reference_data.py from the full reference):
- checkpoint_ema.npz: every /ExponentialMovingAverage variable (float32, exact) and global_step;
- checkpoint_raw.npz: the raw (non-EMA) variables (float32, exact: the one-step training parity test
  starts from them);
- reference_outputs.npz: everything of the full file exactly; each class output is stored as its
  64-channel pre-projection features plus int8 last-place offsets (see make_reference_data.py) and
  rebuilt bit for bit;
- reference_meta.json, training_reference.npz and training_step_reference.npz as they are.
`materialise` turns that into a directory laid out like the full reference (TF1 checkpoint files
model.index / model.data-*, the full reference_outputs.npz ...), which the `d0_reference_dir`
fixture returns.
"""

import json
import os
import shutil

import numpy as np

EMA_SUFFIX = "/ExponentialMovingAverage"
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CLASS_KERNEL = "class_net/class-predict/pointwise_kernel"
CLASS_BIAS = "class_net/class-predict/bias"


def materialise(compact_dir, target_dir):
    """Writes a full-layout reference directory from the compact copy; returns target_dir."""
    import tensorflow as tf

    os.makedirs(target_dir, exist_ok=True)
    tensors = {}
    with np.load(os.path.join(compact_dir, "checkpoint_ema.npz")) as ema:
        for name in ema.files:
            tensors[name if name == "global_step" else name + EMA_SUFFIX] = ema[name]
    with np.load(os.path.join(compact_dir, "checkpoint_raw.npz")) as raw:
        for name in raw.files:
            tensors[name] = raw[name]
    names = sorted(tensors)
    prefix = os.path.join(target_dir, "model")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    with open(os.path.join(target_dir, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n')
    np.savez(os.path.join(target_dir, "reference_outputs.npz"),
             **rebuild_outputs(os.path.join(compact_dir, "reference_outputs.npz"), tensors))
    for name in ("reference_meta.json", "training_reference.npz", "training_step_reference.npz"):
        shutil.copy(os.path.join(compact_dir, name), os.path.join(target_dir, name))
    return target_dir


def rebuild_outputs(path, tensors):
    """The full reference outputs from the compact file and the EMA class-predictor weights."""
    kernel = tensors[CLASS_KERNEL + EMA_SUFFIX].astype(np.float64)[0, 0]
    bias = tensors[CLASS_BIAS + EMA_SUFFIX].astype(np.float64)
    outputs = {}
    with np.load(path) as compact:
        for name in compact.files:
            if name.endswith("_ulps"):
                continue
            if not name.endswith("_features"):
                outputs[name] = compact[name]
                continue
            rebuilt = (compact[name].astype(np.float64) @ kernel + bias).astype(np.float32)
            ulps = compact[name[: -len("_features")] + "_ulps"].astype(np.int32)
            outputs[name[: -len("_features")]] = (rebuilt.view(np.int32) + ulps).view(np.float32)
    return outputs


def summary(path):
    """Size of each file of a directory in MB (for the README of the data)."""
    return {f: round(os.path.getsize(os.path.join(path, f)) / 1e6, 2) for f in sorted(os.listdir(path))}


if __name__ == "__main__":
    print(json.dumps(summary(os.path.join(DATA_DIR, "efficientdet-d0")), indent=1))
