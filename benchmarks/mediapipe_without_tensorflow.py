"""A device has no TensorFlow: runs an exported `.tflite` with MediaPipe Tasks in a Python without TensorFlow.

    python -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe
    python -m benchmarks.mediapipe_without_tensorflow --tflite export/efficientdet-d0_fp32.tflite \
        --python /tmp/mp/bin/python [--pictures 'pictures/*.jpg'] [--min_score 0.3]

The other Python gets only the file and the pictures; it checks that `import tensorflow` fails there,
runs MediaPipe's ObjectDetector on each picture and sends back its detections. This process runs
our TFLite runtime on the same pictures and reports, per picture, the share of our detections at or
above `--min_score` that MediaPipe also found (same class name, IoU >= 0.9, both boxes in MediaPipe's
whole pixels). Pictures default to
generated ones of the file's input size (MediaPipe stretches a picture to the input where our
runtime letterboxes; at the input's size the two agree).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

CHILD = r"""
import json, sys
import numpy as np
try:
    import tensorflow  # noqa: F401
    sys.exit("tensorflow is importable in this Python: not the device-like check asked for")
except ImportError:
    pass
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision

path, pictures = sys.argv[1], np.load(sys.argv[2])
options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=path), score_threshold=0.0,
                                       max_results=100)
out = []
with vision.ObjectDetector.create_from_options(options) as detector:
    for key in sorted(pictures.files):
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pictures[key])))
        out.append([[d.bounding_box.origin_y, d.bounding_box.origin_x, d.bounding_box.origin_y + d.bounding_box.height,
                     d.bounding_box.origin_x + d.bounding_box.width, d.categories[0].score, d.categories[0].category_name]
                    for d in result.detections])
print("MEDIAPIPE " + mp.__version__ + " " + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", required=True, help="an exported .tflite with MediaPipe metadata")
    parser.add_argument("--python", required=True, help="a Python with mediapipe and without tensorflow")
    parser.add_argument("--pictures", default="", help="picture files (glob); default: generated ones")
    parser.add_argument("--min_score", type=float, default=0.3)
    args = parser.parse_args()

    from efficientdet_tf.data.pictures import read_picture
    from efficientdet_tf.ops.box_iou import box_iou
    from efficientdet_tf.runtime import TFLiteDetector

    # The metadata's label file rides in the .tflite as a zip member; line i names class id i.
    with zipfile.ZipFile(args.tflite) as bundle:
        labels = bundle.read(bundle.namelist()[0]).decode().splitlines()
    ours = TFLiteDetector(args.tflite)
    height, width = ours.input_size
    if args.pictures:
        pictures = [read_picture(path)[0] for path in sorted(glob.glob(args.pictures))]
    else:
        rng = np.random.default_rng(0)
        pictures = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    folder = tempfile.mkdtemp(prefix="mediapipe_")
    stack = os.path.join(folder, "pictures.npz")
    np.savez(stack, **{"%04d" % i: p for i, p in enumerate(pictures)})
    run = subprocess.run([args.python, "-c", CHILD, os.path.abspath(args.tflite), stack], capture_output=True,
                         text=True)
    line = next((line for line in run.stdout.splitlines() if line.startswith("MEDIAPIPE ")), None)
    if run.returncode or line is None:
        sys.exit("the other Python failed: %s" % (run.stderr.strip().splitlines() or ["no output"])[-1])
    _, version, found = line.split(" ", 2)
    found = json.loads(found)
    for index, (picture, theirs) in enumerate(zip(pictures, found)):
        want = ours(picture)
        keep = want["detection_scores"][:int(want["num_detections"])] >= args.min_score
        boxes = want["detection_boxes"][:len(keep)][keep]
        # MediaPipe reports a box as a whole-pixel origin and size, truncated: ours the same way, so
        # that a 13 px object is not failed by the rounding alone (it costs up to 0.2 of IoU there).
        origin = np.trunc(boxes[:, :2])
        boxes = np.concatenate([origin, origin + np.trunc(boxes[:, 2:] - boxes[:, :2])], axis=1)
        names = [labels[int(c)] for c in want["detection_classes"][:len(keep)][keep]]
        their_boxes = np.array([d[:4] for d in theirs], np.float32).reshape(-1, 4)
        matched = sum(1 for box, name in zip(boxes, names)
                      if any((box_iou(box[None], their_boxes)[0] >= 0.9) & np.array([d[5] == name for d in theirs], bool)))
        print(json.dumps({"picture": index, "size": "%dx%d" % picture.shape[1::-1], "mediapipe": version,
                          "ours_above_min_score": len(boxes), "found_by_mediapipe": matched,
                          "share": round(matched / len(boxes), 4) if len(boxes) else None}), flush=True)


if __name__ == "__main__":
    main()
