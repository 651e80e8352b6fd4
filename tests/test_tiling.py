"""Tiled inference: a 4000x3000 picture of small shapes, found in tiles and not doubled on tile borders."""

import numpy as np
import pytest
from PIL import Image

from efficientdet_tf.runtime import TiledDetector
from efficientdet_tf.runtime.base import BaseDetector
from efficientdet_tf.runtime.tiling import merge_detections, tile_windows
from helpers import box_iou

BACKGROUND = (128, 128, 128)
INPUT = 512


class ColourDetector(BaseDetector):
    """A stand-in network with a detector's blind spot: it shrinks the picture to its 512 px input
    (as every runtime does) and sees a flat-coloured object only when it covers >= 6x6 input pixels.
    Each object has its own colour, so it is found without knowing where it is."""

    kind = "test"
    input_size = (INPUT, INPUT)

    def __init__(self):
        super().__init__(None, "colour stand-in", num_classes=3)

    def _detect_batch(self, images):
        outputs = [self._one(image) for image in images]
        return {key: np.stack([out[key] for out in outputs]) for key in outputs[0]}

    def _one(self, image, limit=100):
        height, width = image.shape[:2]
        scale = min(INPUT / height, INPUT / width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = np.asarray(Image.fromarray(image).resize(size, Image.NEAREST)).astype(np.int64)
        codes = frame[..., 0] * 65536 + frame[..., 1] * 256 + frame[..., 2]
        ys, xs = np.nonzero(codes != BACKGROUND[0] * 65536 + BACKGROUND[1] * 256 + BACKGROUND[2])
        found = []
        values = codes[ys, xs]
        for code in np.unique(values):
            where = values == code
            if where.sum() >= 36:
                box = np.array([ys[where].min(), xs[where].min(), ys[where].max() + 1, xs[where].max() + 1])
                found.append((box / scale, code % 3 + 1))
        out = {"detection_boxes": np.zeros((limit, 4), np.float32), "detection_scores": np.zeros(limit, np.float32),
               "detection_classes": np.zeros(limit, np.int32), "num_detections": np.int32(min(len(found), limit))}
        for i, (box, class_id) in enumerate(found[:limit]):
            out["detection_boxes"][i], out["detection_scores"][i], out["detection_classes"][i] = box, 0.9, class_id
        return out


def big_picture(seed=0, height=3000, width=4000):
    """Gray 4000x3000 picture with small flat shapes (16-40 px), a third of them across tile borders."""
    rng = np.random.default_rng(seed)
    picture = np.full((height, width, 3), BACKGROUND, np.uint8)
    borders = sorted({x1 for _, _, _, x1 in tile_windows(height, width, (INPUT, INPUT), 0.2) if x1 < width})
    boxes, colours = [], set()
    while len(boxes) < 150:
        h, w = rng.integers(16, 41, 2)
        if len(boxes) % 3 == 0:  # straddles the right edge of a tile
            x = int(rng.choice(borders)) - w // 2
        else:
            x = int(rng.integers(0, width - w))
        y = int(rng.integers(0, height - h))
        box = np.array([y, x, y + h, x + w], np.float32)
        grown = box + np.array([-4, -4, 4, 4])  # apart, so every object keeps its own box
        if boxes and np.any(box_iou(grown[None], np.array(boxes))[0] > 0):
            continue
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if colour in colours or colour == BACKGROUND:
            continue
        colours.add(colour)
        picture[y:y + h, x:x + w] = colour
        boxes.append(box)
    return picture, np.array(boxes)


def recall_and_doubles(detections, truth):
    count = int(detections["num_detections"])
    iou = box_iou(truth, detections["detection_boxes"][:count])
    matched = (iou >= 0.5).sum(axis=1)
    return float(np.mean(matched >= 1)), int(np.sum(matched > 1))


@pytest.mark.parametrize("merge", ["nms", "wbf"])
def test_tiles_find_small_objects_that_the_whole_picture_misses_and_none_twice(merge):
    picture, truth = big_picture()
    detector = ColourDetector()
    whole_recall, _ = recall_and_doubles(detector(picture), truth)
    tiled = TiledDetector(detector, 512, overlap=0.2, merge=merge)
    detections = tiled(picture)
    recall, doubles = recall_and_doubles(detections, truth)
    assert whole_recall < 0.05  # 16-40 px shrink to 2-5 px at 512: too small for the stand-in
    assert recall == 1.0
    assert doubles == 0
    assert int(detections["num_detections"]) == len(truth)  # no extra box from a cut copy
    count = len(truth)
    iou = box_iou(truth, detections["detection_boxes"][:count]).max(axis=1)
    assert iou.min() > 0.9  # mapped back to picture pixels, not left in tile pixels


def test_tiles_cover_the_picture_with_at_least_the_overlap():
    windows = tile_windows(3000, 4000, (512, 512), 0.2)
    covered = np.zeros((3000, 4000), bool)
    for y0, x0, y1, x1 in windows:
        assert (y1 - y0, x1 - x0) == (512, 512)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({x0 for _, x0, _, _ in windows})
    assert min(b - a for a, b in zip(xs, xs[1:])) <= 512 * 0.8
    assert tile_windows(300, 400, (512, 512), 0.2) == [(0, 0, 300, 400)]


def test_merge_keeps_the_best_box_or_fuses_by_score():
    boxes = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.5], np.float32)
    classes = np.array([1, 1, 2, 1], np.int32)
    kept, kept_scores, kept_classes = merge_detections(boxes, scores, classes, 0.5, "nms")
    assert kept.tolist() == [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]]  # other classes stay
    assert kept_classes.tolist() == [1, 2, 1]
    fused, fused_scores, _ = merge_detections(boxes, scores, classes, 0.5, "wbf")
    np.testing.assert_allclose(fused[0], [0, 0.6 / 1.5, 10, 10 + 0.6 / 1.5], rtol=1e-6)
    assert fused_scores.tolist() == pytest.approx([0.9, 0.8, 0.5])


def test_bad_tile_settings_are_one_line_errors():
    detector = ColourDetector()
    with pytest.raises(ValueError, match="tile size 256x256 is smaller than the model's input 512x512"):
        TiledDetector(detector, 256)
    with pytest.raises(ValueError, match="overlap"):
        TiledDetector(detector, 512, overlap=1.0)
    with pytest.raises(ValueError, match="merge must be one of nms, wbf"):
        TiledDetector(detector, 512, merge="mean")


def test_tiled_network_boxes_are_each_tiles_own_moved_to_the_picture(d0_reference_dir):
    from efficientdet_tf.runtime import load_detector
    from helpers import synthetic_picture

    detector = load_detector(d0_reference_dir, model_name="efficientdet-d0", hparams="image_size=128")
    picture = synthetic_picture(128, 256, seed=3)
    # Two tiles side by side, no overlap, no merging (IoU never exceeds 1), no whole-picture pass.
    tiled = TiledDetector(detector, 128, overlap=0.0, iou_threshold=1.0, full_picture=False)
    got = tiled(picture)
    want = []
    for x0 in (0, 128):
        out = detector(picture[:, x0:x0 + 128])
        for box, score, class_id in zip(out["detection_boxes"][:out["num_detections"]],
                                        out["detection_scores"], out["detection_classes"]):
            cut = (x0 == 0 and box[3] >= 127) or (x0 == 128 and box[1] <= 1)
            if not cut:
                want.append((score, class_id, box + np.array([0, x0, 0, x0])))
    want.sort(key=lambda item: -item[0])
    count = int(got["num_detections"])
    assert count == len(want) > 10
    np.testing.assert_allclose(got["detection_scores"][:count], [w[0] for w in want], rtol=1e-6)
    order = np.argsort(-got["detection_scores"][:count], kind="stable")
    got_boxes = got["detection_boxes"][:count][order]
    np.testing.assert_allclose(np.sort(got_boxes, axis=0), np.sort(np.array([w[2] for w in want]), axis=0),
                               atol=1e-3)
