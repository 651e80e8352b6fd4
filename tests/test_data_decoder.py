"""tf.Example decoding: formats, grayscale, boxes to pixels, optional fields."""

import numpy as np

from efficientdet_tf.data import decoder
from tfrecord_tools.example_writer import make_example


def _picture(height=40, width=60, channels=3):
    rng = np.random.default_rng(0)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 255, shape, dtype=np.uint8)


def test_png_decodes_exactly_and_boxes_become_pixels():
    image = _picture()
    boxes = [[4.0, 6.0, 20.0, 30.0], [0.0, 0.0, 40.0, 60.0]]
    out = decoder.decode_example(make_example(image, boxes, [1, 90], source_id="42", image_format="png",
                                              is_crowd=[0, 1], area=[100.0, 2400.0]))
    np.testing.assert_array_equal(out["image"].numpy(), image)
    np.testing.assert_allclose(out["boxes"].numpy(), boxes, atol=1e-4)
    assert out["classes"].numpy().tolist() == [1, 90]
    assert out["is_crowd"].numpy().tolist() == [0, 1]
    np.testing.assert_allclose(out["area"].numpy(), [100.0, 2400.0])
    assert out["source_id"].numpy() == b"42"
    assert (int(out["height"]), int(out["width"])) == (40, 60)


def test_grayscale_jpeg_becomes_rgb():
    gray = np.full((30, 50), 200, np.uint8)
    out = decoder.decode_example(make_example(gray, [[1, 2, 10, 20]], [5], image_format="jpeg"))
    image = out["image"].numpy()
    assert image.shape == (30, 50, 3)
    assert np.abs(image.astype(int) - 200).max() <= 2
    assert np.all(image[..., 0] == image[..., 1])


def test_grayscale_png_and_missing_optional_fields():
    gray = _picture(channels=1)
    out = decoder.decode_example(make_example(gray, [[0, 0, 10, 20]], [3], image_format="png"))
    np.testing.assert_array_equal(out["image"].numpy(), np.stack([gray] * 3, -1))
    assert out["is_crowd"].numpy().tolist() == [0]
    np.testing.assert_allclose(out["area"].numpy(), [200.0], atol=1e-3)  # box area when absent


def test_no_objects():
    out = decoder.decode_example(make_example(_picture(), np.zeros([0, 4]), []))
    assert out["boxes"].shape == (0, 4)
    assert out["classes"].shape == (0,)
