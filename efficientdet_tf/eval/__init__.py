"""Evaluation helpers: COCO-format results (COCOeval-based evaluation is not built yet)."""
