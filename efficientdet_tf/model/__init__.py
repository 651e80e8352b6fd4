"""Pure Keras 3 EfficientDet network: backbone, BiFPN, heads and their assembly."""
