"""COCO ground truth, detections as COCO results and COCOeval: what evaluation and int8 calibration both measure with."""
