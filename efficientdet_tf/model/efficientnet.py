"""EfficientNet B0-B7 and Lite0-Lite4 backbones, returning the stride 8/16/32 features."""

import dataclasses
import math

import keras

from efficientdet_tf.model.layers import DropConnect, activation

# Block strings of EfficientNet-B0: repeats, kernel, stride, expand ratio, in/out filters, SE ratio.
BLOCK_STRINGS = (
    "r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
)

# (width, depth) multipliers.
SCALING = {
    "efficientnet-b0": (1.0, 1.0), "efficientnet-b1": (1.0, 1.1), "efficientnet-b2": (1.1, 1.2),
    "efficientnet-b3": (1.2, 1.4), "efficientnet-b4": (1.4, 1.8), "efficientnet-b5": (1.6, 2.2),
    "efficientnet-b6": (1.8, 2.6), "efficientnet-b7": (2.0, 3.1),
    "efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1), "efficientnet-lite2": (1.1, 1.2),
    "efficientnet-lite3": (1.2, 1.4), "efficientnet-lite4": (1.4, 1.8),
}

STEM_FILTERS = 32


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One group of MBConv blocks as written in a block string."""
    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float

    @classmethod
    def parse(cls, text):
        fields = {}
        for part in text.split("_"):
            key = "".join(c for c in part if c.isalpha())
            fields[key] = part[len(key):]
        return cls(repeats=int(fields["r"]), kernel_size=int(fields["k"]), stride=int(fields["s"][0]),
                   expand_ratio=int(fields["e"]), input_filters=int(fields["i"]),
                   output_filters=int(fields["o"]), se_ratio=float(fields.get("se", 0) or 0))


def round_filters(filters, width, divisor=8):
    """Scales filters by `width`, rounding to a multiple of `divisor` but never below 90%."""
    filters *= width
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


def is_lite(backbone_name):
    return "lite" in backbone_name


def block_plan(backbone_name, width=None, depth=None):
    """The list of concrete blocks (BlockArgs with scaled filters, one entry per repeat)."""
    if backbone_name not in SCALING:
        raise ValueError("unknown backbone '%s'; known: %s" % (backbone_name, ", ".join(SCALING)))
    default_width, default_depth = SCALING[backbone_name]
    width = width or default_width
    depth = depth or default_depth
    lite = is_lite(backbone_name)
    groups = [BlockArgs.parse(s) for s in BLOCK_STRINGS]
    plan = []
    for g, args in enumerate(groups):
        in_f = round_filters(args.input_filters, width)
        out_f = round_filters(args.output_filters, width)
        # Lite keeps the first and last groups' repeats unscaled (fixed stem/head) and drops SE.
        repeats = args.repeats if lite and g in (0, len(groups) - 1) else round_repeats(args.repeats, depth)
        se_ratio = 0.0 if lite else args.se_ratio
        for r in range(repeats):
            plan.append(dataclasses.replace(
                args, repeats=1, input_filters=in_f if r == 0 else out_f, output_filters=out_f,
                stride=args.stride if r == 0 else 1, se_ratio=se_ratio))
    return plan


def _conv_init():
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


class _Namer:
    """Builds layer names that mirror the official variable scopes, '/' written as '.'."""

    def __init__(self, prefix):
        self.prefix = prefix

    def __call__(self, *parts):
        return ".".join((self.prefix,) + parts)


def mbconv_block(x, args, name, act_type, bn_momentum, bn_epsilon, survival_prob):
    """One MBConv block: [expand] -> depthwise -> [squeeze-excite] -> project (+ skip)."""
    n = _Namer(name)
    bn = dict(momentum=bn_momentum, epsilon=bn_epsilon)
    inputs = x
    expanded = args.input_filters * args.expand_ratio
    # The official scopes number convs and BNs in creation order, so names shift without expansion.
    conv_i, bn_i = 0, 0

    def conv_name():
        nonlocal conv_i
        conv_i += 1
        return n("conv2d" if conv_i == 1 else "conv2d_%d" % (conv_i - 1))

    def bn_name():
        nonlocal bn_i
        bn_i += 1
        return n("tpu_batch_normalization" if bn_i == 1 else "tpu_batch_normalization_%d" % (bn_i - 1))

    if args.expand_ratio != 1:
        x = keras.layers.Conv2D(expanded, 1, padding="same", use_bias=False,
                                kernel_initializer=_conv_init(), name=conv_name())(x)
        x = keras.layers.BatchNormalization(**bn, name=bn_name())(x)
        x = activation(act_type, n("expand_act"))(x)
    x = keras.layers.DepthwiseConv2D(args.kernel_size, strides=args.stride, padding="same", use_bias=False,
                                     depthwise_initializer=_conv_init(), name=n("depthwise_conv2d"))(x)
    x = keras.layers.BatchNormalization(**bn, name=bn_name())(x)
    x = activation(act_type, n("depthwise_act"))(x)
    if args.se_ratio:
        reduced = max(1, int(args.input_filters * args.se_ratio))
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=n("se", "pool"))(x)
        s = keras.layers.Conv2D(reduced, 1, kernel_initializer=_conv_init(), name=n("se", "conv2d"))(s)
        s = activation(act_type, n("se", "act"))(s)
        s = keras.layers.Conv2D(expanded, 1, activation="sigmoid", kernel_initializer=_conv_init(),
                                name=n("se", "conv2d_1"))(s)
        x = keras.layers.Multiply(name=n("se", "excite"))([x, s])
    x = keras.layers.Conv2D(args.output_filters, 1, padding="same", use_bias=False,
                            kernel_initializer=_conv_init(), name=conv_name())(x)
    x = keras.layers.BatchNormalization(**bn, name=bn_name())(x)
    if args.stride == 1 and args.input_filters == args.output_filters:
        if survival_prob < 1.0:
            x = DropConnect(survival_prob, name=n("drop_connect"))(x)
        x = keras.layers.Add(name=n("skip"))([x, inputs])
    return x


def efficientnet_features(images, backbone_name, act_type=None, bn_momentum=0.99, bn_epsilon=1e-3,
                          survival_prob=0.8, width=None, depth=None):
    """Applies the backbone to `images` (a Keras tensor) and returns {level: feature} for 1..5.

    Layers are named after the official variable scopes (`efficientnet-b0.blocks_3.conv2d`), which
    is what checkpoint import relies on. `survival_prob` 1.0 disables drop-connect.
    """
    act_type = act_type or ("relu6" if is_lite(backbone_name) else "swish")
    plan = block_plan(backbone_name, width, depth)
    n = _Namer(backbone_name)
    width = width or SCALING[backbone_name][0]
    stem_filters = STEM_FILTERS if is_lite(backbone_name) else round_filters(STEM_FILTERS, width)
    x = keras.layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False,
                            kernel_initializer=_conv_init(), name=n("stem", "conv2d"))(images)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                        name=n("stem", "tpu_batch_normalization"))(x)
    x = activation(act_type, n("stem", "act"))(x)
    features = {1: x}
    level = 1
    for idx, args in enumerate(plan):
        block_survival = 1.0 - (1.0 - survival_prob) * float(idx) / len(plan)
        if args.stride == 2:
            features[level] = x
            level += 1
        x = mbconv_block(x, args, n("blocks_%d" % idx), act_type, bn_momentum, bn_epsilon, block_survival)
    features[level] = x
    return features
