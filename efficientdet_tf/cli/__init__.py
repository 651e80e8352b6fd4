"""absl command-line entry points."""

import os

# TensorFlow's C++ start-up chatter hides the tools' own output; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
