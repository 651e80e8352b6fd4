"""Import of the official (TF1 name-based) EfficientDet and EfficientNet checkpoints."""
