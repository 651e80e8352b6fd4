"""Detection confusion matrix: which true class each detection was matched to at IoU 0.5, with background."""

import numpy as np

from efficientdet_tf.ops.box_iou import box_iou

BACKGROUND = "background"


def _xyxy(bbox):
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


class ConfusionMatrix:
    """Counts [K + 1, K + 1]: row = true class, column = predicted class, in `class_ids` order, with
    background last (its row: detections that match no object; its column: objects no detection
    matched). `names` has K + 1 entries ending in 'background'."""

    def __init__(self, counts, class_ids, names, iou_threshold, min_score):
        self.counts = counts
        self.class_ids = list(class_ids)
        self.names = list(names)
        self.iou_threshold = iou_threshold
        self.min_score = min_score

    def to_dict(self):
        return {"names": self.names, "class_ids": self.class_ids, "counts": self.counts.tolist(),
                "iou_threshold": self.iou_threshold, "min_score": self.min_score,
                "rows": "true class", "columns": "predicted class"}

    def to_csv(self):
        """The table as CSV text: a header of predicted classes, one line per true class."""
        def cell(name):
            return '"%s"' % name.replace('"', '""') if any(c in name for c in ',"\n') else name

        lines = ["true \\ predicted," + ",".join(cell(n) for n in self.names)]
        for name, row in zip(self.names, self.counts):
            lines.append(cell(name) + "," + ",".join(str(int(v)) for v in row))
        return "\n".join(lines) + "\n"

    def most_confused(self, top=5):
        """[(true name, predicted name, count)] of the largest off-diagonal class-to-class cells."""
        k = len(self.class_ids)
        pairs = [(int(self.counts[i, j]), i, j) for i in range(k) for j in range(k) if i != j and self.counts[i, j]]
        pairs.sort(key=lambda p: -p[0])
        return [(self.names[i], self.names[j], count) for count, i, j in pairs[:top]]


def confusion_matrix(groundtruth, results, label_map=None, iou_threshold=0.5, min_score=0.3):
    """The confusion matrix of COCO-format `results` against the COCO dataset dict `groundtruth`.

    Per picture, the detections scoring >= `min_score` are taken best first; each is matched to the
    unmatched object with the highest IoU >= `iou_threshold`, an object of its own class first when
    one qualifies (so a correct detection is never counted as a confusion because a neighbour of
    another class overlaps it more). A detection that matches only a crowd region is not counted.
    Classes are the ground truth's categories, named by `label_map` {id: name} where given.
    """
    label_map = label_map or {}
    categories = sorted(int(c["id"]) for c in groundtruth["categories"])
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in groundtruth["categories"]}
    names.update({int(k): str(v) for k, v in label_map.items()})
    index = {class_id: i for i, class_id in enumerate(categories)}
    k = len(categories)
    counts = np.zeros((k + 1, k + 1), np.int64)
    objects, detections = {}, {}
    for annotation in groundtruth["annotations"]:
        objects.setdefault(int(annotation["image_id"]), []).append(annotation)
    for result in results:
        if float(result["score"]) >= min_score:
            detections.setdefault(int(result["image_id"]), []).append(result)
    for image_id in {int(image["id"]) for image in groundtruth["images"]} | set(detections):
        found = sorted(detections.get(image_id, []), key=lambda r: -float(r["score"]))
        present = objects.get(image_id, [])
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in present], bool)
        true_classes = np.array([index.get(int(a["category_id"]), -1) for a in present], np.int64)
        taken = crowd.copy()  # crowd regions absorb detections but are never counted
        iou = np.zeros((len(found), len(present)))
        if found and present:
            iou = box_iou(np.array([_xyxy(r["bbox"]) for r in found], np.float64),
                       np.array([_xyxy(a["bbox"]) for a in present], np.float64))
        for d, result in enumerate(found):
            predicted = index.get(int(result["category_id"]))
            if predicted is None:
                continue  # a class the ground truth does not know: not part of this matrix
            free = (iou[d] >= iou_threshold) & ~taken
            if free.any():
                same = free & (true_classes == predicted)
                pool = same if same.any() else free
                best = int(np.argmax(np.where(pool, iou[d], -1.0)))
                taken[best] = True
                counts[true_classes[best], predicted] += 1
            elif not ((iou[d] >= iou_threshold) & crowd).any():
                counts[k, predicted] += 1
        for j in np.nonzero(~taken & (true_classes >= 0))[0]:
            counts[true_classes[j], k] += 1
    return ConfusionMatrix(counts, categories, [names[c] for c in categories] + [BACKGROUND],
                           iou_threshold, min_score)
