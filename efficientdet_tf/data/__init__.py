"""Input pipelines: tf.Example decoding, augmentation, anchor targets, TFDS sources."""
