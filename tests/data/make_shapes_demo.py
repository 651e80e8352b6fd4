"""Writes tests/data/shapes_demo.keras: the trained detector of `efficientdet-demo` (the tests' trained model).

    efficientdet-demo --output_dir /tmp/demo && python tests/data/make_shapes_demo.py /tmp/demo/model

The device-runtime tests need a detector whose detections are confident (MediaPipe against our TFLite
runtime above a score of 0.35); training one inside the tests takes longer than they may. The file holds
the model dir's EMA weights and its config (about 2.3 MB); the label names are in shapes_demo_labels.yaml.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(model_dir):
    from efficientdet_tf.checkpoints.opening import open_model

    network, _ = open_model(model_dir)
    target = os.path.join(HERE, "shapes_demo.keras")
    network.save(target)
    print("%s: %.1f MB" % (target, os.path.getsize(target) / 1e6))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
