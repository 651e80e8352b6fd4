"""COCO evaluation of any detector `runtime.load_detector` opens, on validation data.

The caller says which post-processing runs (`nms`), and so which of two ways the model runs, both
ending in the same COCOeval:
- 'official' or 'config' (a Keras network: checkpoint, model dir, `.keras` file, built model or
  Keras detector; the default is `eval.nms_preset`): the evaluation input pipeline
  (`InputPipeline(is_training=False)`) in batches, `detect_normalised` with the official
  evaluation's NMS or the config's `nms` section, ground truth from its `groundtruths` labels;
- 'serving' (any runtime; the only way, and the default, for the files that carry their own NMS:
  SavedModel, TFLite, ONNX): each record is decoded and the picture goes in as it is, so the
  detector's own preprocessing and NMS run.
"""

import json
import os
import re

import numpy as np

from efficientdet_tf import factory
from efficientdet_tf.data import records
from efficientdet_tf.metrics import coco_metrics
from efficientdet_tf.metrics.coco_format import coco_results
from efficientdet_tf.metrics.confusion import confusion_matrix
from efficientdet_tf.runtime import LoadError, load_detector

# The post-processing an evaluation runs: the two presets of `eval.nms_preset` on a Keras network's
# outputs, or the model end to end as it serves.
NMS_CHOICES = factory.EVAL_NMS_PRESETS + ("serving",)


class EvalError(ValueError):
    """Bad evaluation input (model, data, ground truth), reported in one line."""


# ---- validation data ---------------------------------------------------------------------------


def _list_files(pattern):
    try:
        return records.list_files(pattern)
    except records.NoMatchError as e:
        raise EvalError("--val_file_pattern %s matches no file" % e.pattern) from None


# ---- the evaluation ----------------------------------------------------------------------------


class EvalReport:
    """What `evaluate` returns: `metrics` (metrics.json's content), `paths` {what: file},
    `summary_text` (pycocotools' printout), `num_pictures` and `confusion` (a
    `metrics.confusion.ConfusionMatrix` at IoU 0.5 and `eval.confusion_min_score`)."""

    def __init__(self, metrics, paths, summary_text, num_pictures, coco_eval=None, confusion=None):
        self.metrics = metrics
        self.confusion = confusion
        self.paths = paths
        self.summary_text = summary_text
        self.num_pictures = num_pictures
        self.coco_eval = coco_eval


class Evaluator:
    """Evaluates models on one validation set; reusable (the trainer calls it every `eval_every` steps).

    Args:
      config: Config for the data and `eval:` sections (and the network when evaluating Keras models).
      val_file_pattern: TFRecord glob(s), comma-separated; or
      tfds_name / tfds_split: a TFDS source (split default 'validation').
      val_json_file: COCO ground truth; default eval.val_json_file, else built from the records.
    """

    def __init__(self, config, val_file_pattern=None, tfds_name=None, tfds_split=None, val_json_file=None):
        self.config = config
        section = config.eval
        self.tfds_name = tfds_name or None
        self.tfds_split = tfds_split or "validation"
        if not self.tfds_name and not val_file_pattern:
            raise EvalError("give --val_file_pattern (TFRecords) or --tfds_name")
        self.files = None if self.tfds_name else _list_files(val_file_pattern)
        self.val_file_pattern = val_file_pattern
        self.val_json_file = val_json_file or section.val_json_file or None
        self.json_dataset = coco_metrics.load_coco_json(self.val_json_file) if self.val_json_file else None
        self.label_map, self.records_label_map = self._label_map()
        self._detect_fns = {}

    @property
    def data_name(self):
        """The validation data, in words."""
        return "tfds:%s[%s]" % (self.tfds_name, self.tfds_split) if self.tfds_name else self.val_file_pattern

    def _label_map(self):
        from efficientdet_tf.data.label_map import load_label_map

        beside = records.records_label_map(self.files) if self.files else None
        if self.config.eval.label_map:
            return load_label_map(self.config.eval.label_map), beside
        if self.json_dataset and self.json_dataset["categories"]:
            return {int(c["id"]): str(c.get("name", c["id"])) for c in self.json_dataset["categories"]}, beside
        return (dict(beside[1]) if beside else {}), beside

    def check_classes(self, num_classes):
        """Refuses a model whose class count differs from the label map of the records."""
        if num_classes is None or not self.records_label_map:
            return
        path, mapping = self.records_label_map
        if max(mapping) != num_classes:
            raise EvalError("the model predicts %d classes but the validation records' label map %s has ids "
                            "1..%d: evaluate a model trained on this data (for a bare checkpoint set "
                            "--hparams=num_classes=%d)" % (num_classes, path, max(mapping), max(mapping)))

    # -- per-picture streams: (image_id, detections, groundtruth, picture or None) --

    def _network_stream(self, detector, nms, keep_pictures):
        import tensorflow as tf

        from efficientdet_tf.data.pipeline import InputPipeline
        from efficientdet_tf.inference import detect_normalised

        model = detector.model
        config = factory.evaluation_config(detector.config, nms)
        key = id(model)
        if key not in self._detect_fns:
            self._detect_fns = {key: tf.function(lambda images, scales: detect_normalised(model, config, images, scales))}
        detect = self._detect_fns[key]
        pipeline = InputPipeline(None if self.tfds_name else ",".join(self.files), config, is_training=False,
                                 tfds_name=self.tfds_name, tfds_split=self.tfds_split,
                                 batch_size=int(self.config.eval.batch_size))
        mean, stddev = factory.normalization(config)
        kept = 0
        for images, labels in pipeline():
            outputs = {k: v.numpy() for k, v in detect(images, labels["image_scale"]).items()}
            gts = {k: v.numpy() for k, v in labels["groundtruths"].items()}
            scales = labels["image_scale"].numpy()
            for i, image_id in enumerate(labels["image_id"].numpy()):
                count = int(gts["num_groundtruths"][i])
                gt = {"boxes": gts["boxes"][i, :count], "classes": gts["classes"][i, :count],
                      "is_crowd": gts["is_crowd"][i, :count], "area": gts["area"][i, :count],
                      "height": int(gts["height"][i]), "width": int(gts["width"][i])}
                picture = None
                if kept < keep_pictures:
                    kept += 1
                    # The network input, de-normalised and cut to the picture: a drawing of what the model saw.
                    pixels = np.asarray(images[i]) * np.asarray(stddev) + np.asarray(mean)
                    rows = int(np.ceil(gt["height"] / scales[i]))
                    cols = int(np.ceil(gt["width"] / scales[i]))
                    picture = (np.clip(pixels[:rows, :cols], 0, 255).astype(np.uint8), float(scales[i]))
                yield int(image_id), {k: v[i] for k, v in outputs.items()}, gt, picture

    def _decoded_examples(self):
        """(where, decoded example) pairs: 'record #i of <file>' names a record in messages."""
        import tensorflow as tf

        from efficientdet_tf.data import decoder, tfds_source

        if self.tfds_name:
            for index, example in enumerate(tfds_source.load(self.tfds_name, self.tfds_split,
                                                             self.config.data.tfds_data_dir)):
                yield "example #%d of %s" % (index, self.data_name), example
            return
        for path in self.files:
            for index, example in enumerate(tf.data.TFRecordDataset(path).map(decoder.decode_example).prefetch(4)):
                yield "record #%d of %s" % (index, path), example

    def _picture_stream(self, detector, keep_pictures):
        kept = 0
        for where, example in self._decoded_examples():
            gt = {k: example[k].numpy() for k in ("boxes", "classes", "is_crowd", "area")}
            if detector.num_classes and len(gt["classes"]) and gt["classes"].max() > detector.num_classes:
                raise EvalError("the validation records hold class ids the model (%d classes) does not predict: "
                                "label id %d in %s" % (detector.num_classes, gt["classes"].max(), where))
            image = example["image"].numpy()
            outputs = detector(image[None])
            gt.update(height=int(example["height"]), width=int(example["width"]))
            picture = None
            if kept < keep_pictures:
                kept += 1
                picture = (image, 1.0)
            yield (int(records.image_id(example["source_id"])), {k: np.asarray(v)[0] for k, v in outputs.items()},
                   gt, picture)

    def _stream(self, detector, nms, keep_pictures):
        stream = (self._picture_stream(detector, keep_pictures) if nms == "serving"
                  else self._network_stream(detector, nms, keep_pictures))
        limit = int(self.config.eval.max_pictures)
        for index, item in enumerate(stream):
            if limit and index >= limit:
                return
            yield item

    def _translate_error(self, error, num_classes):
        """A TensorFlow data error as one line (the pipeline's own message names file and record)."""
        message = (getattr(error, "message", None) or str(error)).strip()
        lines = [line for line in message.splitlines() if line.strip()]
        useful = next((line for line in lines if "record #" in line or "label ids" in line), lines[0] if lines else "")
        useful = re.sub(r"^.*?(label ids|TFRecord file|cannot parse)", r"\1", useful)
        if "label ids" in useful and num_classes:
            return EvalError("the validation records hold class ids the model (%d classes) does not "
                             "predict: %s" % (num_classes, useful))
        return EvalError("cannot read the validation data %s: %s" % (self.data_name, useful))

    def evaluate(self, detector, nms=None, output_dir=None, progress=False, num_pictures_drawn=None):
        """Runs `detector` (a runtime detector, or anything `runtime.load_detector` opens) over the data.

        `nms`: 'official' or 'config' (`factory.evaluation_config`; a Keras network only) or 'serving'
        (the model end to end, its own preprocessing and NMS); None: `eval.nms_preset` for a Keras
        network, 'serving' for a file that carries its own NMS (see the module docstring).

        Writes, when `output_dir` is given: metrics.json, per_class_ap.txt, pr_curve.png,
        confusion_matrix.csv and .png, detections_grid.jpg, detections.json (COCO results) and, when built from the records,
        groundtruth.json. Returns an EvalReport.
        """
        import tensorflow as tf

        detector = _open(detector)
        nms = self._nms(detector, nms)
        self.check_classes(detector.num_classes)
        categories = dict(self.label_map)
        if not categories:
            count = detector.num_classes or (max(self.records_label_map[1]) if self.records_label_map else 0)
            categories = {i: str(i) for i in range(1, count + 1)}
        if not categories:
            raise EvalError("cannot tell which classes %s predicts: give eval.label_map or num_classes in "
                            "--hparams" % detector.description)
        builder = coco_metrics.GroundtruthBuilder(categories)
        drawn = self.config.eval.num_pictures_drawn if num_pictures_drawn is None else num_pictures_drawn
        total = None
        if progress and self.files:
            total = records.count_records(self.files, max_bytes=2 << 30)  # else only for a progress bar
            if total and int(self.config.eval.max_pictures):
                total = min(total, int(self.config.eval.max_pictures))
        bar = None
        if progress:
            import keras
            bar = keras.utils.Progbar(total, unit_name="picture")
        results, pictures, image_ids, max_class = [], [], [], 0
        try:
            for image_id, detections, gt, picture in self._stream(detector, nms, int(drawn)):
                if not builder.add(image_id, gt["height"], gt["width"], gt["boxes"], gt["classes"],
                                   gt["is_crowd"], gt["area"]):
                    raise EvalError("two validation records share the image id %d (image/source_id must be "
                                    "unique)" % image_id)
                if len(gt["classes"]):
                    max_class = max(max_class, int(np.max(gt["classes"])))
                image_ids.append(image_id)
                results += coco_results(image_id, detections)
                if picture is not None:
                    pictures.append((picture, detections, gt))
                if bar is not None:
                    bar.add(1)
        except tf.errors.OpError as e:
            raise self._translate_error(e, detector.num_classes) from None
        if not image_ids:
            raise EvalError("the validation set %s is empty: no picture to evaluate" % self.data_name)
        if detector.num_classes and max_class > detector.num_classes:
            raise EvalError("the validation records hold class id %d but the model predicts %d classes"
                            % (max_class, detector.num_classes))
        groundtruth = self._groundtruth(builder, image_ids)
        label_map = {int(c["id"]): str(c.get("name", c["id"])) for c in groundtruth["categories"]}
        label_map.update(self.label_map)
        result = coco_metrics.evaluate_detections(groundtruth, results, image_ids=image_ids, label_map=label_map)
        metrics = dict(result.metrics, num_pictures=len(image_ids))
        confusion = confusion_matrix(groundtruth, results, label_map,
                                     min_score=float(self.config.eval.confusion_min_score))
        paths = {}
        if output_dir:
            paths = self._write(output_dir, metrics, result, results, groundtruth, pictures, label_map, confusion)
        return EvalReport(metrics, paths, result.summary_text, len(image_ids), result.coco_eval, confusion)

    def _nms(self, detector, nms):
        if nms is None:
            nms = self.config.eval.nms_preset if detector.kind == "keras" else "serving"
        if nms not in NMS_CHOICES:
            raise EvalError("the evaluation's nms must be one of %s, got %r" % (", ".join(NMS_CHOICES), nms))
        if nms != "serving" and detector.kind != "keras":
            raise EvalError("%s carries its own NMS: it can only be evaluated as it serves (nms='serving'), "
                            "not with nms=%r" % (detector.description, nms))
        return nms

    def _groundtruth(self, builder, image_ids):
        if self.json_dataset is None:
            return builder.dataset()
        dataset = self.json_dataset
        known = {int(image["id"]) for image in dataset["images"]}
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise EvalError("--val_json_file %s does not match the validation records: %d of %d record image ids "
                            "(e.g. %s) are not in it (record ids come from image/source_id)"
                            % (self.val_json_file, len(missing), len(image_ids),
                               ", ".join(str(i) for i in missing[:3])))
        if not dataset["categories"]:
            ids = sorted({int(a["category_id"]) for a in dataset["annotations"]} | set(builder.categories))
            dataset = dict(dataset, categories=[{"id": i, "name": builder.categories.get(i, str(i))} for i in ids])
        return dataset

    def _write(self, output_dir, metrics, result, results, groundtruth, pictures, label_map, confusion):
        from efficientdet_tf.eval import plots

        os.makedirs(output_dir, exist_ok=True)
        paths = {"metrics": os.path.join(output_dir, "metrics.json"),
                 "per_class": os.path.join(output_dir, "per_class_ap.txt"),
                 "pr_curve": os.path.join(output_dir, "pr_curve.png"),
                 "detections": os.path.join(output_dir, "detections.json"),
                 "confusion": os.path.join(output_dir, "confusion_matrix.csv"),
                 "confusion_plot": os.path.join(output_dir, "confusion_matrix.png")}
        with open(paths["metrics"], "w") as f:
            json.dump(metrics, f, indent=1)
        with open(paths["per_class"], "w") as f:
            f.write(coco_metrics.format_metrics(metrics) + "\n\n" + coco_metrics.format_per_class(metrics["per_class"])
                    + "\n")
        with open(paths["detections"], "w") as f:
            json.dump(results, f)
        if self.json_dataset is None:
            paths["groundtruth"] = os.path.join(output_dir, "groundtruth.json")
            with open(paths["groundtruth"], "w") as f:
                json.dump(groundtruth, f)
        plots.plot_pr_curves(result.coco_eval, paths["pr_curve"], label_map)
        with open(paths["confusion"], "w") as f:
            f.write(confusion.to_csv())
        plots.plot_confusion_matrix(confusion, paths["confusion_plot"])
        if pictures:
            drawn = []
            min_score = float(self.config.eval.min_score_drawn)
            for (image, scale), detections, gt in pictures:
                # Boxes are in original pixels; a network-frame picture is 1 / scale of that.
                shown = dict(detections, detection_boxes=np.asarray(detections["detection_boxes"]) / scale)
                drawn.append(plots.draw_picture(image, shown, {"boxes": np.asarray(gt["boxes"]) / scale,
                                                               "classes": gt["classes"]},
                                                label_map, min_score))
            paths["pictures"] = os.path.join(output_dir, "detections_grid.jpg")
            plots.picture_grid(drawn).save(paths["pictures"], quality=90)
        return paths


def _open(what, model_name=None, hparams=None):
    """`runtime.load_detector`, with its LoadError as an EvalError."""
    try:
        return load_detector(what, model_name=model_name, hparams=hparams)
    except LoadError as e:
        raise EvalError(str(e)) from None


def evaluate(checkpoint, val_file_pattern=None, tfds_name=None, tfds_split=None, val_json_file=None,
             hparams=None, model_name=None, output_dir=None, progress=True, nms=None):
    """Evaluates anything `runtime.load_detector` opens (checkpoint, model dir, SavedModel, TFLite or
    ONNX file, detector, Keras model) with COCOeval, running the post-processing `nms` says
    (`Evaluator.evaluate`; default `eval.nms_preset` for a Keras network, the file's own otherwise).

    Returns an EvalReport (`.metrics` holds AP AP50 AP75 APs APm APl ARmax1 ARmax10 ARmax100 ARs ARm
    ARl, per_class and num_pictures). Raises EvalError on bad input, in one line.
    """
    detector = _open(checkpoint, model_name=model_name, hparams=hparams)
    evaluator = Evaluator(detector.config, val_file_pattern=val_file_pattern, tfds_name=tfds_name,
                          tfds_split=tfds_split, val_json_file=val_json_file)
    return evaluator.evaluate(detector, nms=nms, output_dir=output_dir, progress=progress)


def make_eval_fn(config, val_file_pattern=None, tfds_name=None, tfds_split=None, val_json_file=None,
                 output_dir=None):
    """The trainer's evaluation hook: returns `eval_fn(model_dir_or_model, step) -> metrics dict`.

    `eval_fn` takes the trainer's model dir (its newest checkpoint is loaded with
    `checkpoints.loading.load_weights`, which takes the EMA weights) or a built Keras model, and returns
    the metrics dict (AP ... ARl, per_class, num_pictures). One network is built once and reused, so
    repeated evaluations do not retrace. With `output_dir`, each evaluation writes its files to
    `<output_dir>/step_<step>/`.
    """
    import keras

    from efficientdet_tf.config import get_config

    config = get_config(config) if not hasattr(config, "eval") else config
    evaluator = Evaluator(config, val_file_pattern=val_file_pattern, tfds_name=tfds_name, tfds_split=tfds_split,
                          val_json_file=val_json_file)
    state = {}

    def eval_fn(model_dir_or_model, step):
        if isinstance(model_dir_or_model, keras.Model):
            network = model_dir_or_model
        elif "model" not in state:
            from efficientdet_tf.checkpoints.opening import open_model

            state["model"], _ = open_model(config, os.fspath(model_dir_or_model))
            network = state["model"]
        else:
            from efficientdet_tf.checkpoints.loading import load_weights

            load_weights(state["model"], os.fspath(model_dir_or_model))  # the same network, newer weights
            network = state["model"]
        where = os.path.join(output_dir, "step_%d" % int(step)) if output_dir else None
        return evaluator.evaluate(network, output_dir=where, progress=False,
                                  num_pictures_drawn=None if where else 0).metrics

    return eval_fn
