"""The training / evaluation input pipeline: TFRecords or TFDS -> batched images and targets.

Output of the dataset: (images, labels). images: float32 [B, S, S, 3], normalised, zero-padded in
normalised space. labels (K = data.max_instances_per_image, levels l = min..max):
- targets: 'cls_targets_p<l>' int32 [B, H, W, A], 'box_targets_p<l>' float32 [B, H, W, A*4],
  'num_positives' float32 [B];
- 'image_scale' float32 [B] (1 / resize scale: network-frame pixels times image_scale are
  original-picture pixels), 'source_id' string [B], 'image_id' int64 [B] (source_id as a number, or
  a hash of it when it is not numeric);
- training only, in the network frame (after augmentation): 'boxes' float32 [B, K, 4] and 'classes'
  int32 [B, K] (1-based, 0 = padding);
- evaluation only, in the original picture's frame: 'groundtruths', a dict of 'boxes' float32
  [B, K, 4], 'classes' int32 [B, K], 'is_crowd' int32 [B, K], 'area' float32 [B, K],
  'num_groundtruths' int32 [B], 'height' / 'width' int32 [B] (original picture).
"""

import sys

from absl import logging
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.data import augment, autoaugment, decoder, records, tfds_source
from efficientdet_tf.ops import preprocess

_OK, _END, _BROKEN_FILE, _BAD_RECORD, _BAD_LABEL = 0, 1, 2, 3, 4


class InputPipeline:
    """Builds the tf.data pipeline; call it with an optional tf.distribute.InputContext.

    Usage: `dataset = InputPipeline("train-*.tfrecord", config, is_training=True)(input_context)`
    or `strategy.distribute_datasets_from_function(pipeline)`.

    Corrupt data: a TFRecord file that cannot be read to its end (truncated, corrupt or compressed),
    a record that cannot be parsed/decoded, or one with label ids outside 1..num_classes stops
    iteration with tf.errors.InvalidArgumentError naming the file, the record index and byte offset. With config.data.skip_corrupt the record
    (or the unreadable rest of the file) is skipped instead, logged once, and listed in `skipped`.
    """

    def __init__(self, file_pattern, config, is_training, tfds_name=None, tfds_split=None,
                 batch_size=None, num_parallel_calls=None):
        """Args:
          file_pattern: TFRecord glob(s), comma-separated; None takes the config's training/validation
            pattern, unless a TFDS name is given (here or in config.data.tfds_name).
          config: efficientdet_tf Config.
          is_training: augment, shuffle, repeat, drop the last partial batch; else deterministic,
            one pass, original-pixel ground truth.
          tfds_name, tfds_split: TFDS source instead of files (split defaults to 'train' for
            training, 'validation' otherwise).
          batch_size: global batch size (default config.train.batch_size).
          num_parallel_calls: parallelism of reading/decoding/augmenting (default AUTOTUNE).
        """
        data = config.data
        self.config = config
        self.is_training = is_training
        self.tfds_name = tfds_name or (None if file_pattern else data.tfds_name) or None
        if file_pattern is None and not self.tfds_name:
            file_pattern = data.training_file_pattern if is_training else data.validation_file_pattern
        if not self.tfds_name and not file_pattern:
            raise ValueError("InputPipeline needs a file pattern or a TFDS name")
        self.file_pattern = file_pattern
        self.tfds_split = tfds_split or ("train" if is_training else "validation")
        self.batch_size = batch_size or config.train.batch_size
        self.parallel = num_parallel_calls or tf.data.AUTOTUNE
        self.deterministic = bool(data.deterministic) or not is_training
        self.seed = int(data.seed) if data.deterministic else None
        self.skip_corrupt = bool(data.skip_corrupt)
        self.skipped = []  # (file, record index, byte offset, reason), each at most once
        self._assigner = factory.build_target_assigner(config)
        self._normalize = factory.build_normalizer(config)

    # ---- sources -------------------------------------------------------------------------------

    def list_files(self):
        """Sorted files matching the comma-separated patterns, with their sizes in bytes."""
        files = records.list_files(self.file_pattern)
        return files, [tf.io.gfile.stat(f).length for f in files]

    def num_examples(self, need_count=True):
        """Pictures in the input: counted (TFRecords are read once) when `need_count`, else None
        once one record is seen. Raises ValueError, in one line naming the input, when there is no
        input, it cannot be read or it is empty."""
        if self.tfds_name:
            return tfds_source.num_examples(self.tfds_name, self.tfds_split, self.config.data.tfds_data_dir)
        try:
            files, _ = self.list_files()
        except ValueError as e:
            raise ValueError("%s (--train_file_pattern)" % e) from None
        try:
            count = records.count_records(files) if need_count else (None if records.has_records(files) else 0)
        except tf.errors.OpError as e:
            raise ValueError("cannot read the training TFRecords %s: %s" % (
                self.file_pattern, str(e.message).splitlines()[0])) from None
        if count == 0:
            raise ValueError("the training TFRecords hold no records: %s (%d file(s))" % (
                self.file_pattern, len(files)))
        return count

    def _read_file(self, filename, size):
        """Records of one file with index and byte offset, plus a final status element.

        The reader stops quietly at the first unreadable byte; the final element compares the
        bytes consumed with the file size so a truncated or corrupt file is still reported.
        """
        records = tf.data.TFRecordDataset(filename, buffer_size=8 << 20)
        records = records.ignore_errors(log_warning=True).enumerate()
        tail = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.constant("")))

        def step(state, element):
            consumed, count = state
            index, record = element
            is_tail = index < 0
            status = tf.where(is_tail, tf.where(consumed == size, _END, _BROKEN_FILE), _OK)
            out = {"file": filename, "index": count, "offset": consumed, "record": record,
                   "status": status}
            # Framing per record: 8-byte length, 4-byte CRC, payload, 4-byte CRC.
            consumed += tf.cast(tf.strings.length(record), tf.int64) + 16
            return (consumed, count + 1), out

        zero = tf.constant(0, tf.int64)
        return records.concatenate(tail).scan((zero, zero), step)

    def _file_records(self, input_context):
        files, sizes = self.list_files()
        dataset = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
        shard_records = False
        if input_context and input_context.num_input_pipelines > 1:
            if len(files) >= input_context.num_input_pipelines:
                dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            else:
                shard_records = True
        if self.is_training:
            dataset = dataset.shuffle(len(files), seed=self.seed, reshuffle_each_iteration=True).repeat()
        dataset = dataset.interleave(self._read_file, cycle_length=min(len(files), 32), block_length=1,
                                     num_parallel_calls=self.parallel, deterministic=self.deterministic)
        dataset = dataset.filter(self._keep)
        if shard_records:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return dataset

    def _tfds_records(self, input_context):
        dataset = tfds_source.load(self.tfds_name, self.tfds_split, self.config.data.tfds_data_dir,
                                   shuffle_files=self.is_training, input_context=input_context,
                                   seed=self.seed)
        name = "tfds:%s[%s]" % (self.tfds_name, self.tfds_split)
        dataset = dataset.enumerate().map(lambda index, example: dict(
            example, file=name, index=index, offset=tf.constant(-1, tf.int64), status=_OK))
        return dataset.repeat() if self.is_training else dataset

    # ---- corrupt data --------------------------------------------------------------------------

    def _keep(self, element):
        """Filter predicate: True for good records; reports (raises or logs) broken ones."""
        status = element["status"]
        broken = (status != _OK) & (status != _END)
        reasons = tf.constant([
            "", "", "TFRecord file is truncated, corrupt or compressed; unreadable from record #",
            "cannot parse the tf.Example or decode its image bytes; record #",
            "label ids must lie in 1..%d (ids are 1-based; num_classes counts them); record #"
            % self.config.num_classes])
        message = tf.strings.join([
            tf.gather(reasons, status),
            tf.strings.as_string(element["index"]), " at byte offset ",
            tf.strings.as_string(element["offset"]), " of file ", element["file"]])
        if not self.skip_corrupt:
            check = tf.debugging.Assert(~broken, [message, "(set data.skip_corrupt=true to skip it;"
                                                  " TensorFlow's own error is logged above)"])
            with tf.control_dependencies([check]):
                return tf.identity(status == _OK)

        def report():
            tf.py_function(self._record_skip, [element["file"], element["index"], element["offset"],
                                               message], [])
            return tf.constant(False)

        return tf.cond(broken, report, lambda: status == _OK)

    def _record_skip(self, file, index, offset, message):
        entry = (file.numpy().decode(), int(index), int(offset), message.numpy().decode())
        if entry not in self.skipped:  # training repeats files; count each bad record once
            self.skipped.append(entry)
            logging.warning("skip_corrupt: skipping %s", entry[3])

    def _safe_decode(self, element):
        """Decodes one record; a failure yields a _BAD_RECORD element instead of an exception."""
        meta = {k: element[k] for k in ("file", "index", "offset", "seed")}

        def decode(record):
            return dict(decoder.decode_example(record), status=tf.constant(_OK), **meta)

        failed = {"image": tf.zeros([0, 0, 3], tf.uint8), "source_id": tf.constant(""),
                  "boxes": tf.zeros([0, 4]), "classes": tf.zeros([0], tf.int32),
                  "is_crowd": tf.zeros([0], tf.int32), "area": tf.zeros([0]),
                  "height": tf.constant(0), "width": tf.constant(0), "status": tf.constant(_BAD_RECORD)}
        good = tf.data.Dataset.from_tensors(element["record"]).map(decode).ignore_errors(log_warning=True)
        return good.concatenate(tf.data.Dataset.from_tensors(dict(failed, **meta))).take(1)

    def _check_labels(self, element):
        """Marks a decoded record whose ids fall outside 1..num_classes (e.g. 0-based data)."""
        classes = element["classes"]
        bad = tf.reduce_any((classes < 1) | (classes > self.config.num_classes))
        return dict(element, status=tf.where(bad, _BAD_LABEL, element["status"]))

    # ---- per-picture transforms ----------------------------------------------------------------

    def _train_transform(self, element):
        data = self.config.data
        seeds = tf.random.experimental.stateless_split(element["seed"], 3)
        aug_seed, flip_seed, crop_seed = tf.unstack(seeds)
        image, boxes = element["image"], element["boxes"]
        if data.autoaugment_policy == "v0":
            image, boxes = autoaugment.distort_with_autoaugment(image, boxes, aug_seed)
        elif data.autoaugment_policy == "randaug":
            image, boxes = autoaugment.distort_with_randaugment(image, boxes, aug_seed)
        if data.input_rand_hflip:
            image, boxes = augment.random_horizontal_flip(image, boxes, flip_seed)
        image = self._normalize(image)
        image, boxes, image_scale = augment.random_scale_crop(
            image, boxes, self.config.image_size, data.jitter_min, data.jitter_max, crop_seed)
        boxes, classes, is_crowd, _ = augment.filter_boxes(
            boxes, element["classes"], element["is_crowd"], element["area"])
        image, labels = self._outputs(element, image, image_scale, boxes, classes, is_crowd)
        limit = self.config.data.max_instances_per_image
        labels.update(boxes=_pad(boxes, limit), classes=_pad(classes, limit))
        return image, labels

    def _eval_transform(self, element):
        image, image_scale = preprocess.resize_and_pad(self._normalize(element["image"]), self.config.image_size)
        boxes = element["boxes"]
        image, labels = self._outputs(element, image, image_scale, boxes / image_scale,
                                      element["classes"], element["is_crowd"])
        limit = self.config.data.max_instances_per_image
        num = tf.shape(element["classes"])[0]
        warn = tf.cond(num > limit, lambda: _print_truncation(element["source_id"], num, limit),
                       lambda: tf.constant(False))
        with tf.control_dependencies([warn]):
            num = tf.minimum(num, limit)
        labels["groundtruths"] = {
            "boxes": _pad(boxes, limit), "classes": _pad(element["classes"], limit),
            "is_crowd": _pad(element["is_crowd"], limit), "area": _pad(element["area"], limit),
            "num_groundtruths": num, "height": element["height"], "width": element["width"]}
        return image, labels

    def _outputs(self, element, image, image_scale, net_boxes, classes, is_crowd):
        """Anchor targets from network-frame boxes, and the picture's identity and scale."""
        labels = self._assigner.assign(net_boxes, classes, is_crowd)
        source_id = element["source_id"]
        labels.update({
            "image_scale": tf.cast(image_scale, tf.float32),
            "source_id": source_id,
            "image_id": records.image_id(source_id),
        })
        size = self.config.image_size
        return tf.ensure_shape(image, [size, size, 3]), labels

    # ---- assembly ------------------------------------------------------------------------------

    def pipeline_seed(self, input_context=None):
        """The seed of this input pipeline's shuffling and augmentation draws (None: random).

        Each input pipeline (worker) gets its own fixed sequence; the same seed everywhere would
        give every worker the same augmentation draws. The first pipeline keeps `data.seed`.
        """
        if self.seed is None or not input_context or not input_context.input_pipeline_id:
            return self.seed
        return self.seed + 1000003 * input_context.input_pipeline_id

    def __call__(self, input_context=None):
        """Builds the dataset (per-replica batches when an input context is given)."""
        batch_size = self.batch_size
        if input_context:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        if self.tfds_name:
            dataset = self._tfds_records(input_context)
        else:
            dataset = self._file_records(input_context)
        seed = self.pipeline_seed(input_context)
        if self.is_training:
            dataset = dataset.shuffle(self.config.data.shuffle_buffer, seed=seed)
        # One stateless seed pair per picture makes augmentation reproducible in deterministic mode.
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(lambda element, seed: dict(element, seed=seed))
        if not self.tfds_name:
            dataset = dataset.interleave(self._safe_decode, cycle_length=self.parallel, block_length=1,
                                         num_parallel_calls=self.parallel, deterministic=self.deterministic)
        dataset = dataset.map(self._check_labels).filter(self._keep)
        transform = self._train_transform if self.is_training else self._eval_transform
        dataset = dataset.map(transform, num_parallel_calls=self.parallel, deterministic=self.deterministic)
        dataset = dataset.batch(batch_size, drop_remainder=self.is_training)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = self.deterministic
        if input_context:
            # Sharding already happened above; stop tf.distribute from sharding again.
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)


def _pad(tensor, limit):
    """First `limit` rows of tensor, zero-padded to exactly `limit` rows."""
    tensor = tensor[:limit]
    padding = [[0, limit - tf.shape(tensor)[0]]] + [[0, 0]] * (len(tensor.shape) - 1)
    padded = tf.pad(tensor, padding)
    return tf.ensure_shape(padded, [limit] + tensor.shape.as_list()[1:])


def _print_truncation(source_id, num, limit):
    """Logs that ground truth beyond max_instances_per_image is dropped from the padded copy."""
    printed = tf.print("WARNING: picture", source_id, "has", num, "objects; the padded ground truth keeps",
                       limit, "(raise data.max_instances_per_image); targets use all of them",
                       output_stream=sys.stderr)
    with tf.control_dependencies([printed]):
        return tf.constant(True)
