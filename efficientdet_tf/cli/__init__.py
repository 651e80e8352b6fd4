"""absl command-line entry points."""

import os

# TensorFlow's C++ start-up chatter hides the tools' own output; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before TensorFlow starts its threads: set later, it left the demo's training step about as slow
# as without it (BENCHMARKS.md). See train/host_memory.py.
from efficientdet_tf.train.host_memory import keep_freed_memory  # noqa: E402

keep_freed_memory()
