"""IoU of boxes in numpy, for the code that works on detections on the host (tiling, confusion matrix)."""

import numpy as np


def box_iou(a, b):
    """IoU matrix [N, M] of boxes a [N, 4] and b [M, 4], each as (low corner, high corner): [ymin, xmin,
    ymax, xmax] or [x0, y0, x1, y1], the same order on both sides."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
