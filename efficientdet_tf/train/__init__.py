"""Training: the tf.distribute loop (`trainer.train`), schedules, optimizer, strategies, checkpoints."""
