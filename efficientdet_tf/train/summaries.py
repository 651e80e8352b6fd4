"""TensorBoard summaries of the trainer: scalars and a few training pictures with their boxes.

Written with the core `tf.summary.write` and TensorBoard's plugin metadata, so training does not
need the `tensorboard` package installed (only viewing does).
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from efficientdet_tf import factory


def _metadata(plugin):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata.SerializeToString()


_SCALARS, _IMAGES = _metadata("scalars"), _metadata("images")


class SummaryWriter:
    """Writes `<model_dir>/train` events on the chief; a no-op elsewhere."""

    def __init__(self, logdir, config, enabled=True, max_pictures=3):
        self.enabled = enabled
        self.max_pictures = max_pictures
        self.mean, self.stddev = factory.normalization(config)
        self.writer = tf.summary.create_file_writer(logdir) if enabled else None

    def scalars(self, step, values):
        """One scalar per (name, value) at `step`."""
        if not self.enabled:
            return
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=_SCALARS)

    def pictures(self, step, images, labels):
        """Up to `max_pictures` normalised network inputs, de-normalised, with their boxes drawn."""
        if not self.enabled:
            return
        images = np.asarray(images[: self.max_pictures], np.float32)
        pixels = np.clip(images * np.asarray(self.stddev) + np.asarray(self.mean), 0, 255) / 255.0
        size = images.shape[1]
        boxes = np.asarray(labels["boxes"][: self.max_pictures], np.float32) / size
        colors = np.array([[1.0, 0.2, 0.2, 1.0], [0.2, 1.0, 0.2, 1.0], [0.3, 0.5, 1.0, 1.0]], np.float32)
        drawn = tf.image.draw_bounding_boxes(pixels, boxes, colors)
        encoded = [tf.io.encode_png(tf.image.convert_image_dtype(picture, tf.uint8, saturate=True))
                   for picture in drawn]
        # The images plugin's layout: [width, height, png, png, ...] as strings.
        tensor = tf.stack([tf.as_string(size), tf.as_string(size)] + encoded)
        with self.writer.as_default(step=step):
            tf.summary.write("train_pictures", tensor, metadata=_IMAGES)

    def flush(self):
        if self.enabled:
            self.writer.flush()
