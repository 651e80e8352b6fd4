"""COCO evaluation (pycocotools COCOeval): metrics, per-class AP, PR curves and detection pictures.

- `evaluator.evaluate(checkpoint_or_model_dir_or_saved_model, val_file_pattern=... | tfds_name=...)`
  -> EvalReport (metrics.json content, written files); `evaluator.make_eval_fn(config, ...)` is the
  trainer's `eval_fn(model_dir_or_model, step)`.
- `plots`: the precision-recall PNG and the grid of validation pictures.
The COCO pieces it measures with (ground truth, COCOeval, per-class tables, `coco_results`) live one
floor down in `efficientdet_tf.metrics`, which int8 calibration shares.
"""
