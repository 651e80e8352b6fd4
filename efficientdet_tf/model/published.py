"""Published sizes of the EfficientDet models, for checking ours against (paper Table 2, official README)."""

# Trainable weights in millions and multiply-adds in billions (None: not published).
PUBLISHED = {
    "efficientdet-d0": (3.9, 2.5), "efficientdet-d1": (6.6, 6.1), "efficientdet-d2": (8.1, 11),
    "efficientdet-d3": (12.0, 25), "efficientdet-d4": (20.7, 55), "efficientdet-d5": (33.7, 135),
    "efficientdet-d6": (51.9, 226), "efficientdet-d7": (51.9, 325), "efficientdet-d7x": (77.0, 410),
    "efficientdet-lite0": (3.2, None), "efficientdet-lite1": (4.2, None), "efficientdet-lite2": (5.3, None),
    "efficientdet-lite3": (8.4, None), "efficientdet-lite3x": (9.3, None), "efficientdet-lite4": (15.1, None),
}

# Paper Table 5: weights and multiply-adds of each feature network relative to a repeated top-down
# FPN, on an EfficientNet-B3 backbone.
PAPER_FPN_RATIOS = {"fpn": (1.0, 1.0), "panet": (1.0, 1.0), "nasfpn": (0.71, 0.72),
                    "fully_connected": (1.24, 1.21), "bifpn_sum": (0.88, 0.67), "bifpn": (0.88, 0.68)}
