"""COCO evaluation (pycocotools COCOeval): metrics, per-class AP, PR curves and detection pictures.

- `evaluator.evaluate(checkpoint_or_model_dir_or_saved_model, val_file_pattern=... | tfds_name=...)`
  -> EvalReport (metrics.json content, written files); `evaluator.make_eval_fn(config, ...)` is the
  trainer's `eval_fn(model_dir_or_model, step)`.
- `coco_metrics`: ground truth from records, COCOeval, the 12 numbers and per-class tables.
- `plots`: the precision-recall PNG and the grid of validation pictures.
- `coco_format.coco_results`: detections as COCO results entries.
"""
