"""Augmentation keeps every object inside its box; preprocessing sizes and normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.config import get_config
from efficientdet_tf.factory import build_normalizer
from efficientdet_tf.data import augment, autoaugment, image_ops
from efficientdet_tf.ops import preprocess

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _scene():
    """A 120x160 black picture with a red rectangle and a blue rectangle, and their boxes."""
    image = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[20, 30, 60, 90], [70, 100, 110, 150]], np.float32)
    for (y0, x0, y1, x1), colour in zip(boxes.astype(int), (RED, BLUE)):
        image[y0:y1, x0:x1] = colour
    return image, boxes


def _assert_enclosed(image, boxes, kept_colours, tolerance=1.5):
    """Every strongly coloured pixel of object k lies inside box k (pixel centre +- tolerance)."""
    image = np.asarray(image, np.float32)
    for colour, box in zip(kept_colours, np.asarray(boxes)):
        channel = int(np.argmax(colour))
        others = [c for c in range(3) if c != channel]
        mask = (image[..., channel] > 200) & np.all(image[..., others] < 60, axis=-1)
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        assert ys.min() + 0.5 >= box[0] - tolerance and ys.max() + 0.5 <= box[2] + tolerance, (box, ys.min(), ys.max())
        assert xs.min() + 0.5 >= box[1] - tolerance and xs.max() + 0.5 <= box[3] + tolerance, (box, xs.min(), xs.max())


@pytest.mark.parametrize("seed", range(6))
def test_flip_and_scale_crop_keep_objects_in_boxes(seed):
    image, boxes = _scene()
    seed = tf.constant([seed, 1])
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    img, bxs = augment.random_horizontal_flip(tf.constant(image), tf.constant(boxes), flip_seed)
    img, bxs, scale = augment.random_scale_crop(tf.cast(img, tf.float32), bxs, 128, 0.5, 2.0, crop_seed)
    assert img.shape == (128, 128, 3)
    # Boxes keep their rows (filter_boxes drops empty ones later); check each still-visible box.
    _assert_enclosed(img.numpy(), bxs.numpy(), (RED, BLUE))
    kept, classes = augment.filter_boxes(bxs, tf.constant([1, 2]))
    assert kept.shape[0] == classes.shape[0]
    assert np.all(kept.numpy()[:, 2:] <= 128) and np.all(kept.numpy()[:, :2] >= 0)


def test_flip_mirrors_boxes():
    image, boxes = _scene()
    for s in range(4):
        img, bxs = augment.random_horizontal_flip(tf.constant(image), tf.constant(boxes), tf.constant([s, 0]))
        flipped = not np.array_equal(img.numpy(), image)
        if flipped:
            np.testing.assert_allclose(bxs.numpy()[0], [20, 70, 60, 130])
        _assert_enclosed(img.numpy(), bxs.numpy(), (RED, BLUE), tolerance=0)


@pytest.mark.parametrize("op", [
    lambda i, b: image_ops.rotate(i, b, 30.0),
    lambda i, b: image_ops.rotate(i, b, -17.0),
    lambda i, b: image_ops.shear(i, b, 0.3, "x"),
    lambda i, b: image_ops.shear(i, b, -0.2, "y"),
    lambda i, b: image_ops.translate(i, b, -45.0, "x"),
    lambda i, b: image_ops.translate(i, b, 33.0, "y"),
])
def test_warps_keep_objects_in_boxes(op):
    image, boxes = _scene()
    img, bxs = op(tf.constant(image), tf.constant(boxes))
    _assert_enclosed(img.numpy(), bxs.numpy(), (RED, BLUE))


def test_translate_inside_boxes_stays_inside():
    image, boxes = _scene()
    img = image_ops.translate_inside_boxes(tf.constant(image), tf.constant(boxes), 12.0, "y", 1.0,
                                           tf.constant([0, 0]))
    _assert_enclosed(img.numpy(), boxes, (RED, BLUE), tolerance=0)
    assert np.all(img.numpy()[20:32, 30:90] == 128)  # uncovered top strip of the red box


@pytest.mark.parametrize("policy", ["v0", "randaug"])
def test_policies_keep_objects_in_boxes(policy):
    image, boxes = _scene()
    distort = tf.function(autoaugment.distort_with_autoaugment if policy == "v0"
                          else autoaugment.distort_with_randaugment)
    for s in range(12):
        img, bxs = distort(tf.constant(image), tf.constant(boxes), tf.constant([s, 3]))
        assert img.dtype == tf.uint8 and img.shape == image.shape
        _assert_enclosed(img.numpy(), bxs.numpy(), (RED, BLUE))


def test_colour_ops():
    image, _ = _scene()
    gray = image_ops.color(tf.constant(image), 0.0).numpy()
    assert np.all(gray[..., 0] == gray[..., 1])
    eq = image_ops.equalize(tf.constant(np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)))
    assert eq.numpy().min() == 0 and eq.numpy().max() >= 250
    np.testing.assert_array_equal(image_ops.solarize(tf.constant(image), 128).numpy()[25, 40], [0, 0, 0])
    np.testing.assert_array_equal(image_ops.sharpness(tf.constant(image), 1.0).numpy(), image)


def test_resize_and_pad_sizes_and_scale():
    padded, image_scale = preprocess.resize_and_pad(tf.ones([480, 640, 3]), 512)
    assert padded.shape == (512, 512, 3)
    np.testing.assert_allclose(image_scale.numpy(), 1.25, rtol=1e-6)
    assert padded.numpy()[383, 511, 0] == 1.0 and padded.numpy()[384, 0, 0] == 0.0
    padded, _ = preprocess.resize_and_pad(tf.ones([100, 37, 3], tf.uint8), 64)
    assert padded.numpy()[:, :23].min() == 1.0 and padded.numpy()[:, 23:].max() == 0.0  # floor(37*0.64)


def test_resize_and_pad_of_a_picture_at_the_size_is_the_resize_skipped():
    """A picture whose static size is the network's (a fixed TFLite input) skips the resize op;
    the result is what the resize gives when the size is only known at run time."""
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    graph = tf.function(lambda x: preprocess.resize_and_pad(x, 64)).get_concrete_function(
        tf.TensorSpec([1, 64, 64, 3], tf.float32)).graph
    assert not [op for op in graph.get_operations() if op.type.startswith("Resize")]
    dynamic = tf.function(lambda x: preprocess.resize_and_pad(x, 64),
                          input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    for got, want in zip(preprocess.resize_and_pad(tf.constant(image), 64), dynamic(tf.constant(image))):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_normalize_modes():
    pixel = tf.constant([[[127.0, 255.0, 0.0]]])
    lite = build_normalizer(get_config("efficientdet-lite0"))(pixel)
    np.testing.assert_allclose(lite.numpy().ravel(), [0.0, 1.0, -127.0 / 128.0])
    imagenet = build_normalizer(get_config("efficientdet-d0"))(pixel)
    np.testing.assert_allclose(imagenet.numpy().ravel(),
                               [(127 - 123.675) / 58.395, (255 - 116.28) / 57.12, -103.53 / 57.375], rtol=1e-5)
