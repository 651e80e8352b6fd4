"""Evaluation pictures: the precision-recall plot, the confusion matrix and a grid of validation pictures."""

import math

import numpy as np
from PIL import Image, ImageDraw

from efficientdet_tf.visualize import draw_detections


def plot_pr_curves(coco_eval, path, label_map=None, title=None):
    """Writes a PNG of the precision-recall curves (IoU 0.5, all areas, 100 detections) per class.

    The mean curve over classes is drawn thick, with the mean curve at IoU 0.75 dashed beside it.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    precision = coco_eval.eval["precision"]  # [IoU, recall points, classes, areas, max dets]
    recall = coco_eval.params.recThrs
    iou_thresholds = list(np.round(coco_eval.params.iouThrs, 2))
    names = {c: str((label_map or {}).get(c, c)) for c in coco_eval.params.catIds}
    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    curves = []
    for index, class_id in enumerate(coco_eval.params.catIds):
        curve = precision[0, :, index, 0, -1]
        if np.all(curve < 0):
            continue  # no ground truth of this class
        curves.append(curve)
        if len(coco_eval.params.catIds) <= 20:  # more classes would only be noise in the legend
            axes.plot(recall, np.maximum(curve, 0), linewidth=1, label=names[class_id])
    if curves:
        mean50 = np.mean(np.maximum(np.stack(curves), 0), axis=0)
        axes.plot(recall, mean50, color="black", linewidth=2.5, label="mean, IoU 0.50")
        if 0.75 in iou_thresholds:
            at75 = precision[iou_thresholds.index(0.75), :, :, 0, -1]
            defined = at75[:, np.any(at75 > -1, axis=0)]
            if defined.size:
                axes.plot(recall, np.maximum(defined, 0).mean(axis=1), color="black", linestyle="--",
                          linewidth=1.5, label="mean, IoU 0.75")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title or "precision-recall (COCO, area all, 100 detections)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_confusion_matrix(matrix, path):
    """Writes a PNG of a `metrics.confusion.ConfusionMatrix`: cells coloured by the share of their row
    (each true class, and the background row of unmatched detections), counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix.counts, np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(matrix.names)
    side = min(20.0, max(4.8, 0.45 * n + 2.5))
    figure, axes = plt.subplots(figsize=(side, side * 0.85), dpi=100)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    if n <= 30:  # more cells than that: the numbers would not be readable
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    axes.text(j, i, "%d" % counts[i, j], ha="center", va="center", fontsize=7,
                              color="white" if shares[i, j] > 0.5 else "black")
    ticks = range(n) if n <= 60 else []
    axes.set_xticks(list(ticks))
    axes.set_yticks(list(ticks))
    if ticks:
        axes.set_xticklabels(matrix.names, rotation=90, fontsize=7)
        axes.set_yticklabels(matrix.names, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix (IoU %.2f, score >= %.2f)" % (matrix.iou_threshold, matrix.min_score))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def draw_groundtruth(picture, boxes, classes, label_map=None):
    """Draws ground-truth boxes ([ymin, xmin, ymax, xmax] pixels) in white with a dark outline, in place."""
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 300))
    for (ymin, xmin, ymax, xmax), class_id in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1)):
        # Dark outside, white inside: visible on light and dark backgrounds alike.
        draw.rectangle([xmin - width, ymin - width, xmax + width, ymax + width], outline=(0, 0, 0), width=1)
        draw.rectangle([xmin, ymin, xmax, ymax], outline=(255, 255, 255), width=width)
        name = str((label_map or {}).get(int(class_id), int(class_id)))
        draw.text((xmin + 2, ymax - 11), name, fill=(255, 255, 255))
    return picture


def draw_picture(image, detections, groundtruth=None, label_map=None, min_score=0.3):
    """One picture with ground truth (white) under the detections (coloured, with class and score)."""
    picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    if groundtruth is not None:
        draw_groundtruth(picture, groundtruth["boxes"], groundtruth["classes"], label_map)
    return draw_detections(picture, detections, label_map=label_map, min_score=min_score)


def picture_grid(pictures, tile=256, columns=None):
    """Arranges PIL pictures into one grid picture; each fits a `tile` x `tile` cell (aspect kept)."""
    if not pictures:
        raise ValueError("picture_grid needs at least one picture")
    columns = columns or int(math.ceil(math.sqrt(len(pictures))))
    rows = int(math.ceil(len(pictures) / columns))
    grid = Image.new("RGB", (columns * tile, rows * tile), (32, 32, 32))
    for index, picture in enumerate(pictures):
        scale = tile / max(picture.size)
        size = (max(1, round(picture.size[0] * scale)), max(1, round(picture.size[1] * scale)))
        grid.paste(picture.resize(size, Image.BILINEAR), ((index % columns) * tile, (index // columns) * tile))
    return grid
