"""What tiles give on pictures much larger than the input: COCO AP and time per picture, whole vs tiled.

    python -m benchmarks.tiling --model MODEL --records 'val-*.tfrecord' [--mosaic 5x4] [--tile 384]
        [--overlap 0.2] [--merge nms,wbf] [--model_name NAME]

Lays validation pictures side by side, at their own resolution, into mosaics of `--mosaic` columns x
rows (a 5x4 mosaic of 320-400 px pictures is about 2000x1600 px), with their boxes moved along,
and detects each mosaic once as a whole picture (shrunk to the model's input) and once in tiles of
`--tile` pixels (`runtime.TiledDetector`, each merge method). Scores every way with COCOeval
against the moved boxes; prints AP, AP50, APs, AR@100 and the median seconds per mosaic.
"""

import argparse
import json
import statistics
import time

import numpy as np


def mosaics(records, columns, rows):
    """[(picture uint8 [H, W, 3], boxes [N, 4] pixels, classes [N])] of the records, columns x rows each."""
    import tensorflow as tf

    from efficientdet_tf.data import decoder, records as records_lib

    examples = [decoder.decode_example(serialized) for serialized in
                tf.data.TFRecordDataset(records_lib.list_files(records))]
    per_mosaic = columns * rows
    out = []
    for start in range(0, len(examples) - per_mosaic + 1, per_mosaic):
        group = examples[start:start + per_mosaic]
        cell_h = max(int(e["image"].shape[0]) for e in group)
        cell_w = max(int(e["image"].shape[1]) for e in group)
        picture = np.full((rows * cell_h, columns * cell_w, 3), 114, np.uint8)
        boxes, classes = [], []
        for index, example in enumerate(group):
            y, x = (index // columns) * cell_h, (index % columns) * cell_w
            image = example["image"].numpy()
            picture[y:y + image.shape[0], x:x + image.shape[1]] = image
            boxes.append(example["boxes"].numpy() + np.array([y, x, y, x], np.float32))
            classes.append(example["classes"].numpy())
        out.append((picture, np.concatenate(boxes), np.concatenate(classes)))
    return out


def score(detect, pictures, categories):
    """(COCO metrics, median seconds per picture) of `detect` on the mosaics."""
    from efficientdet_tf.metrics import coco_metrics
    from efficientdet_tf.metrics.coco_format import coco_results

    builder = coco_metrics.GroundtruthBuilder(categories)
    results, seconds = [], []
    for image_id, (picture, boxes, classes) in enumerate(pictures, start=1):
        builder.add(image_id, picture.shape[0], picture.shape[1], boxes, classes)
        start = time.perf_counter()
        detections = detect(picture)
        seconds.append(time.perf_counter() - start)
        results += coco_results(image_id, detections)
    metrics = coco_metrics.evaluate_detections(builder.dataset(), results).metrics
    return metrics, statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="anything load_detector opens (a model dir, a SavedModel, ...)")
    parser.add_argument("--model_name", default=None)
    parser.add_argument("--records", required=True, help="validation TFRecords (glob)")
    parser.add_argument("--mosaic", default="5x4", help="columns x rows of pictures per mosaic")
    parser.add_argument("--tile", type=int, default=384)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--merge", default="nms,wbf")
    args = parser.parse_args()

    from efficientdet_tf.runtime import TiledDetector, load_detector

    columns, rows = (int(v) for v in args.mosaic.split("x"))
    pictures = mosaics(args.records, columns, rows)
    detector = load_detector(args.model, model_name=args.model_name)
    categories = {i: str(i) for i in range(1, int(detector.num_classes or 90) + 1)}
    ways = [("whole picture", detector)]
    ways += [("tiles %d, %s" % (args.tile, merge), TiledDetector(detector, args.tile, args.overlap, merge))
             for merge in args.merge.split(",")]
    size = "%dx%d" % pictures[0][0].shape[1::-1]
    for name, detect in ways:
        detect(pictures[0][0])  # warm-up: tracing and first-call costs out of the timing
        metrics, seconds = score(detect, pictures, categories)
        print(json.dumps({"way": name, "mosaics": len(pictures), "mosaic_px": size,
                          "objects": int(sum(len(p[1]) for p in pictures)),
                          **{k: round(metrics[k], 4) for k in ("AP", "AP50", "APs", "ARmax100")},
                          "median_s": round(seconds, 3)}), flush=True)


if __name__ == "__main__":
    main()
