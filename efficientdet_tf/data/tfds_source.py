"""TensorFlow Datasets source: detection datasets such as coco/2017 or voc/2007 as internal dicts.

Label ids (the pipeline uses 1-based ids everywhere):
- coco/*: TFDS numbers the 80 COCO categories 0..79 in the order of their original ids; they are
  mapped back to the original COCO ids 1..90 (with the usual gaps: 12, 26, 29, 30, 45, 66, 68, 69,
  71, 83 unused), so num_classes stays 90 and ids agree with COCO annotation files.
- every other dataset (voc/2007: 20 classes, 0..19): id = TFDS label + 1, so num_classes = number
  of TFDS classes (20 for VOC).
VOC 'difficult' objects are kept as ordinary objects (is_crowd = 0).
"""

import tensorflow as tf

_COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_IDS = tuple(i for i in range(1, 91) if i not in _COCO_UNUSED_IDS)  # TFDS label k -> COCO_IDS[k]


def import_tfds():
    """tensorflow_datasets, imported on first use: it is an optional extra, not a default dependency."""
    try:
        import tensorflow_datasets
    except ImportError:
        raise ImportError("a TFDS source (--tfds_name / data.tfds_name) needs tensorflow-datasets: "
                          "pip install 'efficientdet_tf[tfds]'") from None
    return tensorflow_datasets


def label_to_id(tfds_name):
    """Returns a function mapping a TFDS label tensor (0-based) to 1-based ids for that dataset."""
    if tfds_name.split("/")[0] == "coco":
        table = tf.constant(COCO_IDS, tf.int32)
        return lambda label: tf.gather(table, tf.cast(label, tf.int32))
    return lambda label: tf.cast(label, tf.int32) + 1


def _to_internal(example, to_id):
    """Maps one TFDS example (image decoded by TFDS) to the pipeline's internal dict."""
    image = example["image"]
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    objects = example["objects"]
    # Real TFDS sequences hold equal-length fields; tfds.testing.mock_data draws each field's
    # length separately, so keep the common prefix to stay consistent in both cases.
    num = tf.minimum(tf.shape(objects["bbox"])[0], tf.shape(objects["label"])[0])
    scale = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    boxes = tf.reshape(objects["bbox"][:num], [-1, 4]) * scale
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if "is_crowd" in objects:
        crowd = objects["is_crowd"]
        is_crowd = tf.cast(crowd[:num], tf.int32)
        is_crowd = tf.pad(is_crowd, [[0, num - tf.size(is_crowd)]])
    else:
        is_crowd = tf.zeros([num], tf.int32)
    if "area" in objects:
        area = tf.cast(objects["area"][:num], tf.float32)
        area = tf.cond(tf.equal(tf.size(area), num), lambda: area, lambda: box_area)
    else:
        area = box_area
    if "image/id" in example:
        source_id = tf.strings.as_string(example["image/id"])
    else:
        source_id = tf.strings.regex_replace(example["image/filename"], r"\.[^.]*$", "")
    return {
        "image": tf.ensure_shape(image, [None, None, 3]),
        "source_id": source_id,
        "boxes": boxes,
        "classes": to_id(objects["label"][:num]),
        "is_crowd": is_crowd,
        "area": area,
        "height": height,
        "width": width,
    }


def load(tfds_name, split, data_dir=None, shuffle_files=False, input_context=None, seed=None):
    """Loads a TFDS detection dataset as a tf.data.Dataset of internal dicts (see decoder.py).

    Args:
      tfds_name: e.g. 'coco/2017' or 'voc/2007'.
      split: TFDS split, e.g. 'train', 'validation'.
      data_dir: TFDS data folder ('' or None: the TFDS default).
      shuffle_files: shuffle the dataset's files (training).
      input_context: optional tf.distribute.InputContext; TFDS shards the files by it.
      seed: file shuffle seed (None: random).
    """
    tfds = import_tfds()
    read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed)
    dataset = tfds.load(tfds_name, split=split, data_dir=data_dir or None,
                        shuffle_files=shuffle_files, read_config=read_config)
    to_id = label_to_id(tfds_name)
    return dataset.map(lambda example: _to_internal(example, to_id),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def num_examples(tfds_name, split, data_dir=None):
    """Examples in one split of a prepared TFDS dataset; ValueError in one line when it is unusable."""
    try:
        tfds = import_tfds()
    except ImportError as e:
        raise ValueError(str(e)) from None
    try:
        count = tfds.builder(tfds_name, data_dir=data_dir or None).info.splits[split].num_examples
    except Exception as e:  # unknown name, split or missing data: one line
        raise ValueError("TFDS source %s[%s] is not usable: %s" % (
            tfds_name, split, (str(e).splitlines() or [type(e).__name__])[0])) from None
    if not count:
        raise ValueError("TFDS source %s[%s] holds no examples" % (tfds_name, split))
    return count
