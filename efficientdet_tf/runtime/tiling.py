"""Pictures larger than the input: detect on overlapping tiles, map boxes back, merge across tiles."""

import math

import numpy as np

from efficientdet_tf.ops.box_iou import box_iou
from efficientdet_tf.ops.postprocess import OUTPUT_KEYS
from efficientdet_tf.runtime.base import BaseDetector, check_pictures

MERGES = ("nms", "wbf")


def model_input_size(detector):
    """(height, width) of the square or fixed input the detector's network runs at."""
    size = getattr(detector, "input_size", None)
    if size:
        return int(size[0]), int(size[1])
    return int(detector.config.image_size), int(detector.config.image_size)


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of `tile` pixels covering `length`, neighbours sharing >= `overlap` of a tile.

    The last tile ends at the picture's edge (it overlaps its neighbour more), so every tile is whole."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    count = int(math.ceil((length - tile) / stride)) + 1
    # Spread the tiles evenly between the two edges: equal overlaps, none smaller than asked.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_windows(height, width, tile, overlap):
    """[(y0, x0, y1, x1)] of the tiles that cover a `height` x `width` picture (see `tile_starts`)."""
    th, tw = tile
    return [(y, x, min(y + th, height), min(x + tw, width))
            for y in tile_starts(height, th, overlap) for x in tile_starts(width, tw, overlap)]


def merge_detections(boxes, scores, classes, iou_threshold=0.5, method="nms"):
    """Merges one class's duplicates across tiles; returns (boxes, scores, classes), best first.

    'nms' keeps the best box of each group of boxes of one class overlapping it by more than
    `iou_threshold`; 'wbf' (weighted box fusion) replaces each group by the score-weighted mean of
    its boxes, with the group's best score."""
    if method not in MERGES:
        raise ValueError("the tile merge must be one of %s, got %r" % (", ".join(MERGES), method))
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    alive = np.ones(len(scores), bool)
    kept_boxes, kept_scores, kept_classes = [], [], []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (classes == classes[i])
        group[group] = box_iou(boxes[i][None], boxes[group])[0] > iou_threshold
        group[i] = True
        alive &= ~group
        if method == "wbf":
            weights = scores[group][:, None]
            kept_boxes.append(np.sum(boxes[group] * weights, axis=0) / np.sum(weights))
        else:
            kept_boxes.append(boxes[i])
        kept_scores.append(scores[i])
        kept_classes.append(classes[i])
    if not kept_scores:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    return np.stack(kept_boxes), np.array(kept_scores, np.float32), np.array(kept_classes, np.int32)


class TiledDetector(BaseDetector):
    """Any detector on pictures larger than its input: overlapping tiles, boxes merged back.

    Each picture is cut into tiles of `tile_size` pixels (an int or (height, width); default the
    model's input size, and never smaller: a smaller tile would be enlarged, which only blurs) whose
    neighbours share `overlap` of a tile. Every tile goes through `detector` at its own resolution;
    a box that touches a tile's inner edge is cut by that edge, so it is dropped: a whole copy of it
    lies in the neighbouring tile when the object is smaller than the overlap, and objects too
    large for that are found by the pass over the whole picture (`full_picture`, shrunk to the input
    as usual). Boxes back in picture pixels (clipped to it) are merged per class by `merge` ('nms'
    or 'wbf', at `iou_threshold`). Keeps the `max_detections` best (output arrays are padded to that length).

    Takes and returns what every detector does (a picture, a batch or a list; see `BaseDetector`).
    Works with every runtime `load_detector` opens, since it only calls the detector on pictures.
    """

    def __init__(self, detector, tile_size=None, overlap=0.2, merge="nms", iou_threshold=0.5,
                 full_picture=True, max_detections=1000, min_score=0.0):
        input_size = model_input_size(detector)
        if tile_size is None:
            tile_size = input_size
        tile_size = (int(tile_size), int(tile_size)) if np.isscalar(tile_size) else tuple(int(t) for t in tile_size)
        if tile_size[0] < input_size[0] and tile_size[1] < input_size[1]:
            raise ValueError("the tile size %dx%d is smaller than the model's input %dx%d: tiles would be "
                             "enlarged; use a tile of at least the input size"
                             % (tile_size + input_size))
        if not 0.0 <= overlap < 1.0:
            raise ValueError("the tile overlap is a fraction of a tile in [0, 1), got %r" % (overlap,))
        if merge not in MERGES:
            raise ValueError("the tile merge must be one of %s, got %r" % (", ".join(MERGES), merge))
        super().__init__(detector.config, "%s in %dx%d tiles" % (detector.description, *tile_size),
                         detector.num_classes)
        self.kind = detector.kind
        self.detector = detector
        self.tile_size = tile_size
        self.overlap = float(overlap)
        self.merge = merge
        self.iou_threshold = float(iou_threshold)
        self.full_picture = bool(full_picture)
        self.max_detections = int(max_detections)
        self.min_score = float(min_score)

    def _detect_batch(self, images):
        parts = [self.detect_one(image) for image in images]
        return {key: np.stack([part[key] for part in parts]) for key in OUTPUT_KEYS}

    def detect_one(self, image):
        """Detections of one picture [H, W, 3] (uint8), as the detector gives them for one picture."""
        image = check_pictures(image)
        height, width = image.shape[:2]
        windows = tile_windows(height, width, self.tile_size, self.overlap)
        found = []  # (boxes in picture pixels, scores, classes)
        if len(windows) > 1:
            tiles = [image[y0:y1, x0:x1] for y0, x0, y1, x1 in windows]
            outputs = self.detector(tiles)  # one batch when the tiles have one size
            for index, (y0, x0, y1, x1) in enumerate(windows):
                boxes, scores, classes = self._valid(outputs, index)
                inner = np.array([y0 > 0, x0 > 0, y1 < height, x1 < width])
                # Within a pixel of an inner edge (or past it): the tile cut the object there.
                reach = np.concatenate([boxes[:, :2] <= 1.0, boxes[:, 2:] >= np.array([y1 - y0, x1 - x0]) - 1.0],
                                       axis=1)
                cut = np.any(reach & inner, axis=1)
                keep = ~cut
                found.append((boxes[keep] + np.array([y0, x0, y0, x0], np.float32), scores[keep], classes[keep]))
        if self.full_picture or len(windows) == 1:
            found.append(self._valid(self.detector(image[None]), 0))
        # Clipped to the picture: the whole-picture pass can reach into its letterbox padding.
        boxes = np.clip(np.concatenate([f[0] for f in found]), 0, [height, width, height, width]).astype(np.float32)
        scores = np.concatenate([f[1] for f in found]).astype(np.float32)
        classes = np.concatenate([f[2] for f in found]).astype(np.int32)
        if len(windows) > 1:
            boxes, scores, classes = merge_detections(boxes, scores, classes, self.iou_threshold, self.merge)
        order = np.argsort(-scores, kind="stable")[:self.max_detections]
        count = len(order)
        out_boxes = np.zeros((self.max_detections, 4), np.float32)
        out_scores = np.zeros((self.max_detections,), np.float32)
        out_classes = np.zeros((self.max_detections,), np.int32)
        out_boxes[:count], out_scores[:count], out_classes[:count] = boxes[order], scores[order], classes[order]
        return {"detection_boxes": out_boxes, "detection_scores": out_scores, "detection_classes": out_classes,
                "num_detections": np.int32(count)}

    def _valid(self, outputs, index):
        count = int(outputs["num_detections"][index])
        scores = np.asarray(outputs["detection_scores"][index][:count], np.float32)
        keep = scores >= self.min_score
        return (np.asarray(outputs["detection_boxes"][index][:count], np.float32)[keep], scores[keep],
                np.asarray(outputs["detection_classes"][index][:count], np.int32)[keep])
