"""Export: SavedModel signatures for TF Serving, and TFLite."""
