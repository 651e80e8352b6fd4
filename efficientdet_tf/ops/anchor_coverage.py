"""Anchor coverage: the share of a data set's boxes the anchor grid can match, and a search for a better grid."""

import dataclasses
import itertools

import numpy as np

from efficientdet_tf.ops.anchors import feature_sizes

SIZE_BUCKETS = (0, 8, 16, 32, 64, 128, 256)  # sqrt(box area) at the model's input, pixels
ANCHOR_SCALES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
COVERAGE_WARNING = 0.9  # efficientdet-train warns below this share


def boxes_at_input(boxes, height, width, image_size):
    """Normalised [ymin, xmin, ymax, xmax] boxes of a `height` x `width` picture, in input pixels
    after the letterbox resize (longer side to `image_size`, picture at the top left)."""
    scale = image_size / float(max(height, width))
    return np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([height, width, height, width]) * scale


def best_iou(boxes, image_size, min_level, max_level, num_scales, aspect_ratios, anchor_scale):
    """The best IoU each box [N, 4] (input pixels) has with any anchor of the grid.

    For one anchor shape the IoU only falls as the centres move apart along either axis, so the
    anchor of that shape whose centre is nearest the box's is its best: one IoU per shape and box,
    exact, without the whole grid."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    best = np.zeros(len(boxes))
    if not len(boxes):
        return best
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    for level, (fh, fw) in feature_sizes(image_size, min_level, max_level).items():
        stride = 2.0 ** level
        ay = stride / 2 + np.clip(np.round((cy - stride / 2) / stride), 0, fh - 1) * stride
        ax = stride / 2 + np.clip(np.round((cx - stride / 2) / stride), 0, fw - 1) * stride
        for octave in range(num_scales):
            base = anchor_scale * stride * 2.0 ** (octave / float(num_scales))
            for aspect in aspect_ratios:
                half_h, half_w = base / np.sqrt(aspect) / 2, base * np.sqrt(aspect) / 2
                inter_h = np.clip(np.minimum(boxes[:, 2], ay + half_h) - np.maximum(boxes[:, 0], ay - half_h), 0, None)
                inter_w = np.clip(np.minimum(boxes[:, 3], ax + half_w) - np.maximum(boxes[:, 1], ax - half_w), 0, None)
                inter = inter_h * inter_w
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                best = np.maximum(best, inter / np.maximum(area + 4 * half_h * half_w - inter, 1e-9))
    return best


@dataclasses.dataclass
class Coverage:
    """How well one anchor grid covers the boxes: `share` of boxes with a positive anchor (best IoU >=
    `threshold`), `mean_iou` of their best IoUs, and per size bucket (low edge, pixels) (boxes, share)."""
    settings: dict
    share: float
    mean_iou: float
    by_size: dict
    threshold: float

    def override(self, base=None):
        """The settings as an --hparams string; with `base` (another Coverage), only those that differ."""
        parts = []
        for key, value in self.settings.items():
            if base is not None and base.settings.get(key) == value:
                continue
            if isinstance(value, (list, tuple)):
                value = "[%s]" % ",".join("%g" % v for v in value)
            elif isinstance(value, float):
                value = "%g" % value
            parts.append("%s=%s" % (key, value))
        return ",".join(parts)


def anchor_settings(config):
    """The anchor grid of a Config as the settings `coverage` takes."""
    return {"anchors.anchor_scale": float(config.anchors.anchor_scale),
            "anchors.aspect_ratios": [float(a) for a in config.anchors.aspect_ratios],
            "min_level": int(config.min_level)}


def coverage(boxes, config, settings=None):
    """The Coverage of `boxes` [N, 4] (input pixels) by the grid of `config`, or of `settings` on top of it."""
    settings = dict(anchor_settings(config), **(settings or {}))
    threshold = float(config.loss.matched_threshold)
    ious = best_iou(boxes, int(config.image_size), settings["min_level"], int(config.max_level),
                    int(config.anchors.num_scales), settings["anchors.aspect_ratios"],
                    settings["anchors.anchor_scale"])
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    by_size = {}
    for low, high in zip(SIZE_BUCKETS, SIZE_BUCKETS[1:] + (np.inf,)):
        inside = (sides >= low) & (sides < high)
        if inside.any():
            by_size[low] = (int(inside.sum()), float(np.mean(ious[inside] >= threshold)))
    share = float(np.mean(ious >= threshold)) if len(ious) else 1.0
    return Coverage(settings, share, float(np.mean(ious)) if len(ious) else 1.0, by_size, threshold)


def aspect_candidates(boxes, count):
    """Sets of `count` aspect ratios (width / height): the default one, symmetric ones ever longer
    (for three), and ones spread over the boxes' own ratios (their quantiles in log space)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ratios = np.clip((boxes[:, 3] - boxes[:, 1]) / np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6), 1 / 16, 16)
    candidates = [(1.0, 2.0, 0.5)[:count] if count <= 3 else (1.0, 2.0, 0.5)]
    if count == 3:  # square, lying and standing, ever longer: objects seen both ways round
        candidates += [(1.0, r, round(1.0 / r, 3)) for r in (3.0, 4.0, 6.0, 8.0)]
    if len(ratios):
        logs = np.log(ratios)
        for spread in (0.6, 0.8, 0.95):
            quantiles = np.linspace(0.5 - spread / 2, 0.5 + spread / 2, count) if count > 1 else [0.5]
            values = tuple(float(np.round(np.exp(np.quantile(logs, q)), 2)) for q in quantiles)
            candidates.append(values)
    unique = []
    for candidate in candidates:
        if len(set(candidate)) == count and candidate not in unique:
            unique.append(candidate)
    return unique


def search(boxes, config, min_levels=None):
    """Searches anchor_scale, aspect_ratios (as many as now: the heads keep their shape) and, where
    given, `min_levels`; returns the Coverages best first (share, then mean IoU)."""
    count = len(config.anchors.aspect_ratios)
    results = []
    for scale, aspects, min_level in itertools.product(ANCHOR_SCALES, aspect_candidates(boxes, count),
                                                       min_levels or (int(config.min_level),)):
        results.append(coverage(boxes, config, {"anchors.anchor_scale": scale,
                                                "anchors.aspect_ratios": list(aspects), "min_level": min_level}))
    results.sort(key=lambda c: (-c.share, -c.mean_iou))
    return results


def format_coverage(now, best=None, what="boxes"):
    """The coverage report: the share per size bucket now and with the best grid found, and its override."""
    lines = ["anchor coverage of %s (a box is covered when its best anchor IoU >= %.2f):" % (what, now.threshold),
             "  %-12s %8s %10s%s" % ("box size px", "boxes", "now", " %10s" % "suggested" if best else "")]
    for low, high in zip(SIZE_BUCKETS, SIZE_BUCKETS[1:] + (None,)):
        if low not in now.by_size:
            continue
        boxes, share = now.by_size[low]
        span = "%d-%s" % (low, high if high else "")
        lines.append("  %-12s %8d %9.1f%%%s" % (span, boxes, 100 * share,
                                               " %9.1f%%" % (100 * best.by_size[low][1]) if best else ""))
    lines.append("  %-12s %8s %9.1f%%%s" % ("all", "", 100 * now.share, " %9.1f%%" % (100 * best.share) if best else ""))
    lines.append("now: %s" % now.override())
    if best is not None:
        if best.share > now.share:
            lines.append("suggested: --hparams='%s'" % best.override(now))
            if best.settings["min_level"] != now.settings["min_level"]:
                lines.append("  (min_level changes the network: train from scratch or from a backbone checkpoint)")
        else:
            lines.append("no grid searched covers more boxes than the current one")
    return "\n".join(lines)


def input_boxes(pictures, image_size):
    """All boxes of `pictures` [(height, width, normalised boxes)] in input pixels, degenerate ones left out."""
    boxes = [boxes_at_input(b, h, w, image_size) for h, w, b in pictures if len(b)]
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def suggest(boxes, config, min_level_gain=0.05):
    """The best grid `search` finds. One level finer (min_level - 1, down to 2) is searched too but
    chosen only when it covers `min_level_gain` more of the boxes: it adds a level to the network."""
    min_level = int(config.min_level)
    results = search(boxes, config, (min_level, min_level - 1) if min_level > 2 else None)
    same = next(c for c in results if c.settings["min_level"] == min_level)
    finer = next((c for c in results if c.settings["min_level"] < min_level), None)
    if finer is not None and finer.share >= same.share + min_level_gain:
        return finer
    return same
