"""Detections of one picture as COCO results entries ({image_id, category_id, bbox, score})."""


def coco_results(image_id, detections):
    """COCO results entries [{image_id, category_id, bbox [x, y, w, h], score}] of one picture.

    `detections` is one picture's dict (no batch axis): detection_boxes [M, 4] ([ymin, xmin, ymax,
    xmax] pixels), detection_scores, detection_classes (1-based ids) and num_detections.
    """
    results = []
    count = int(detections["num_detections"])
    for box, score, class_id in zip(detections["detection_boxes"][:count], detections["detection_scores"][:count],
                                    detections["detection_classes"][:count]):
        ymin, xmin, ymax, xmax = [float(v) for v in box]
        results.append({"image_id": image_id, "category_id": int(class_id),
                        "bbox": [round(xmin, 2), round(ymin, 2), round(xmax - xmin, 2), round(ymax - ymin, 2)],
                        "score": round(float(score), 5)})
    return results
