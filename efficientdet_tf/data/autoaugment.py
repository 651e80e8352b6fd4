"""AutoAugment detection policy v0 and RandAugment for detection, on uint8 pictures with boxes.

Policy v0 is the one of Zoph et al., "Learning Data Augmentation Strategies for Object Detection"
(2019), as used by EfficientDet: five sub-policies of two (op, probability, magnitude) steps; one
sub-policy is drawn uniformly per picture. Magnitudes 0..10 map to op arguments as in that paper's
code release (translation in absolute pixels, 128-gray fill). Ops whose name ends in
`_Only_BBoxes` act inside each box with probability/3 per box.
"""

import tensorflow as tf

from efficientdet_tf.data import image_ops

POLICY_V0 = (
    (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
    (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
    (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
    (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
    (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
)

RANDAUGMENT_OPS = ("Equalize", "Solarize", "Color", "Cutout", "SolarizeAdd", "TranslateX_BBox",
                   "TranslateY_BBox", "ShearX_BBox", "ShearY_BBox", "Rotate_BBox")

_TRANSLATE_PIXELS = 250.0       # whole-picture translation at magnitude 10
_TRANSLATE_BOX_PIXELS = 120.0   # translation inside boxes at magnitude 10
_CUTOUT_PIXELS = 100            # cutout half-size at magnitude 10
_REPLACE = 128


def _enhance_factor(level):
    return level / 10.0 * 1.8 + 0.1


def _signed(value, seed):
    """Negates value with probability 1/2."""
    return tf.where(tf.random.stateless_uniform([], seed) < 0.5, -value, value)


def apply_op(name, image, boxes, probability, level, seed):
    """Applies one named op at magnitude `level` (0..10 scale; RandAugment may exceed 10).

    `probability` is used by the *_Only_BBoxes ops only (per box, divided by 3); the caller
    decides whether other ops run. Returns (image, boxes).
    """
    sign_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if name == "Equalize":
        return image_ops.equalize(image), boxes
    if name == "Solarize":
        return image_ops.solarize(image, int(level / 10.0 * 256)), boxes
    if name == "SolarizeAdd":
        return image_ops.solarize_add(image, int(level / 10.0 * 110)), boxes
    if name == "Color":
        return image_ops.color(image, _enhance_factor(level)), boxes
    if name == "Sharpness":
        return image_ops.sharpness(image, _enhance_factor(level)), boxes
    if name == "Cutout":
        return image_ops.cutout(image, int(level / 10.0 * _CUTOUT_PIXELS), op_seed, _REPLACE), boxes
    if name in ("TranslateX_BBox", "TranslateY_BBox"):
        pixels = _signed(level / 10.0 * _TRANSLATE_PIXELS, sign_seed)
        return image_ops.translate(image, boxes, pixels, name[9].lower(), _REPLACE)
    if name == "TranslateY_Only_BBoxes":
        pixels = _signed(level / 10.0 * _TRANSLATE_BOX_PIXELS, sign_seed)
        return image_ops.translate_inside_boxes(image, boxes, pixels, "y", probability / 3.0,
                                                op_seed, _REPLACE), boxes
    if name in ("ShearX_BBox", "ShearY_BBox"):
        level = _signed(level / 10.0 * 0.3, sign_seed)
        return image_ops.shear(image, boxes, level, name[5].lower(), _REPLACE)
    if name == "Rotate_BBox":
        return image_ops.rotate(image, boxes, _signed(level / 10.0 * 30.0, sign_seed), _REPLACE)
    raise ValueError("unknown augmentation op %r" % name)


def _maybe_apply(name, image, boxes, probability, level, seed):
    """Runs the op with `probability` (ops that take a probability always run and use it inside)."""
    run_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if name.endswith("_Only_BBoxes"):
        return apply_op(name, image, boxes, probability, level, op_seed)
    run = tf.random.stateless_uniform([], run_seed) < probability
    return tf.cond(run, lambda: apply_op(name, image, boxes, probability, level, op_seed),
                   lambda: (image, boxes))


def distort_with_autoaugment(image, boxes, seed, policy=POLICY_V0):
    """Applies one uniformly drawn sub-policy of `policy` (default v0) to image and boxes."""
    choice_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    op_seeds = tf.random.experimental.stateless_split(op_seed, 2)

    def branch(sub_policy):
        def run():
            img, bxs = image, boxes
            for step, (name, probability, level) in enumerate(sub_policy):
                img, bxs = _maybe_apply(name, img, bxs, probability, level, op_seeds[step])
            return img, bxs
        return run

    index = tf.random.stateless_uniform([], choice_seed, 0, len(policy), dtype=tf.int32)
    image, boxes = tf.switch_case(index, [branch(p) for p in policy])
    return image, boxes


def distort_with_randaugment(image, boxes, seed, num_layers=1, magnitude=15):
    """RandAugment for detection: `num_layers` times, one uniformly drawn op of RANDAUGMENT_OPS.

    Every drawn op runs at the fixed `magnitude` (the reference uses 1 layer at magnitude 15).
    """
    for layer_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_layers)):
        choice_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(layer_seed, 2))
        index = tf.random.stateless_uniform([], choice_seed, 0, len(RANDAUGMENT_OPS), dtype=tf.int32)
        branches = [(lambda name=name: apply_op(name, image, boxes, 1.0, magnitude, op_seed))
                    for name in RANDAUGMENT_OPS]
        image, boxes = tf.switch_case(index, branches)
    return image, boxes
