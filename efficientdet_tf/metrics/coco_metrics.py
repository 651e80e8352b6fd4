"""COCO box metrics through pycocotools' COCOeval: ground truth, the 12 numbers and per-class AP."""

import contextlib
import copy
import io
import json
import math

import numpy as np

# The order of COCOeval.stats for iouType 'bbox'.
METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")

_METRIC_TITLES = {
    "AP": "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AP50": "AP @[IoU=0.50 | area=all | maxDets=100]",
    "AP75": "AP @[IoU=0.75 | area=all | maxDets=100]",
    "APs": "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "APm": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "APl": "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "ARmax1": "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "ARmax10": "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "ARmax100": "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "ARs": "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "ARm": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ARl": "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
}


class GroundtruthBuilder:
    """Collects ground truth picture by picture into a COCO dataset dict (pycocotools' format).

    Boxes come in as [ymin, xmin, ymax, xmax] original-picture pixels (the package convention) and
    are stored as COCO [x, y, width, height]. A non-positive area falls back to the box area.
    """

    def __init__(self, categories):
        """`categories`: {id: name} of every class the model can predict (1-based ids)."""
        self.categories = dict(categories)
        self.images, self.annotations = [], []
        self._seen = set()

    def add(self, image_id, height, width, boxes, classes, is_crowd=None, area=None):
        """Adds one picture and its objects; returns False (adding nothing) for a repeated image id."""
        image_id = int(image_id)
        if image_id in self._seen:
            return False
        self._seen.add(image_id)
        self.images.append({"id": image_id, "height": int(height), "width": int(width)})
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        count = len(boxes)
        is_crowd = np.zeros(count, np.int64) if is_crowd is None else np.asarray(is_crowd).reshape(-1)
        area = np.zeros(count) if area is None else np.asarray(area, np.float64).reshape(-1)
        for (ymin, xmin, ymax, xmax), class_id, crowd, object_area in zip(boxes, np.asarray(classes).reshape(-1),
                                                                         is_crowd, area):
            w, h = float(xmax - xmin), float(ymax - ymin)
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(class_id),
                "bbox": [float(xmin), float(ymin), w, h],
                "area": float(object_area) if object_area > 0 else max(w, 0.0) * max(h, 0.0),
                "iscrowd": int(crowd)})
        return True

    def dataset(self):
        """The COCO ground-truth dict {images, annotations, categories}."""
        return {"images": list(self.images), "annotations": list(self.annotations),
                "categories": [{"id": int(i), "name": str(n)} for i, n in sorted(self.categories.items())]}


def coco_from_dataset(dataset):
    """A pycocotools COCO object from a ground-truth dict, without pycocotools' prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco_json(path):
    """Reads a COCO ground-truth JSON file (with a clear error for a missing or malformed file)."""
    try:
        with open(path) as f:
            dataset = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError("val_json_file %s does not exist" % path) from None
    except ValueError as e:
        raise ValueError("val_json_file %s is not valid JSON: %s" % (path, e)) from None
    if not isinstance(dataset, dict) or "images" not in dataset or "annotations" not in dataset:
        raise ValueError("val_json_file %s is not a COCO ground-truth file (needs 'images' and 'annotations')"
                         % path)
    dataset.setdefault("categories", [])
    return dataset


class CocoResult:
    """The outcome of one COCO evaluation: `metrics` (12 numbers + per_class) and the COCOeval."""

    def __init__(self, metrics, coco_eval, summary_text):
        self.metrics = metrics
        self.coco_eval = coco_eval
        self.summary_text = summary_text


def evaluate_detections(groundtruth, results, image_ids=None, label_map=None):
    """Runs COCOeval (bbox) and returns a CocoResult.

    Args:
      groundtruth: a COCO ground-truth dict (or a pycocotools COCO object).
      results: COCO results entries [{image_id, category_id, bbox [x, y, w, h], score}].
      image_ids: evaluate on these pictures only (default: every picture of the ground truth).
      label_map: {id: name} for the per-class table (default: the ground truth's category names).

    Returns:
      CocoResult whose `metrics` holds the keys of METRIC_KEYS (floats, as COCOeval.stats; -1 where
      COCO defines none, e.g. no small objects) and 'per_class': {name: {'id', 'AP', 'AP50',
      'num_groundtruths'}} (AP None for a class without ground truth).
    """
    from pycocotools.cocoeval import COCOeval

    gt = groundtruth if hasattr(groundtruth, "getImgIds") else coco_from_dataset(groundtruth)
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(list(results))
    else:
        # loadRes cannot take an empty list; no detections is a valid (all-zero) outcome.
        dt = coco_from_dataset({"images": gt.dataset["images"], "annotations": [],
                                "categories": gt.dataset.get("categories", [])})
    coco_eval = COCOeval(gt, dt, "bbox")
    if image_ids is not None:
        coco_eval.params.imgIds = sorted(int(i) for i in image_ids)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    metrics = {key: float(value) for key, value in zip(METRIC_KEYS, coco_eval.stats)}
    metrics["per_class"] = per_class_ap(coco_eval, gt, label_map)
    return CocoResult(metrics, coco_eval, text.getvalue())


def _mean_defined(values):
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else None


def per_class_ap(coco_eval, gt, label_map=None):
    """{class name: {'id', 'AP', 'AP50', 'num_groundtruths'}} from an accumulated COCOeval.

    AP averages precision over the 10 IoU thresholds and 101 recall points (area all, 100
    detections), as COCOeval does for the overall AP; a class without ground truth gets None.
    """
    precision = coco_eval.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt.dataset.get("categories", [])}
    names.update(label_map or {})
    image_ids = set(coco_eval.params.imgIds)
    table = {}
    for index, class_id in enumerate(coco_eval.params.catIds):
        count = sum(1 for a in gt.loadAnns(gt.getAnnIds(catIds=[class_id]))
                    if a["image_id"] in image_ids and not a.get("iscrowd", 0))
        name = str(names.get(class_id, class_id))
        if name in table:  # two ids with one name: keep both rows apart
            name = "%s (%d)" % (name, class_id)
        table[name] = {"id": int(class_id), "AP": _mean_defined(precision[:, :, index, 0, -1]),
                       "AP50": _mean_defined(precision[0, :, index, 0, -1]), "num_groundtruths": count}
    return table


def format_metrics(metrics):
    """The 12 COCO numbers as a two-column text table."""
    lines = ["%-9s %-50s %s" % ("metric", "", "value")]
    for key in METRIC_KEYS:
        lines.append("%-9s %-50s %.4f" % (key, _METRIC_TITLES[key], metrics[key]))
    return "\n".join(lines)


def format_per_class(per_class):
    """The per-class table: id, name, AP, AP50, number of ground-truth objects."""
    width = max([len("class")] + [len(n) for n in per_class])
    lines = ["%4s  %-*s  %7s  %7s  %7s" % ("id", width, "class", "AP", "AP50", "objects")]
    for name, row in sorted(per_class.items(), key=lambda item: item[1]["id"]):
        def cell(value):
            return "%7s" % "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
                else "%7.4f" % value
        lines.append("%4d  %-*s  %s  %s  %7d" % (row["id"], width, name, cell(row["AP"]), cell(row["AP50"]),
                                                row["num_groundtruths"]))
    return "\n".join(lines)
