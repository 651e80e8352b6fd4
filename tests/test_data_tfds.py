"""TFDS source on tfds.testing.mock_data (no download): internal form and 1-based ids."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from efficientdet_tf.config import get_config
from efficientdet_tf.data import tfds_source
from efficientdet_tf.data.pipeline import InputPipeline


def test_coco_ids_are_the_original_90():
    assert len(tfds_source.COCO_IDS) == 80
    assert tfds_source.COCO_IDS[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)
    assert tfds_source.COCO_IDS[-1] == 90
    to_id = tfds_source.label_to_id("coco/2017")
    assert to_id(np.array([0, 11, 79])).numpy().tolist() == [1, 13, 90]
    assert tfds_source.label_to_id("voc/2007")(np.array([0, 19])).numpy().tolist() == [1, 20]


@pytest.mark.parametrize("name, max_id", [("coco/2017", 90), ("voc/2007", 20)])
def test_mock_dataset_yields_internal_form(name, max_id):
    with tfds.testing.mock_data(num_examples=4):
        dataset = tfds_source.load(name, "train")
        for example in dataset.take(4):
            image = example["image"].numpy()
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            n = example["classes"].shape[0]
            assert example["boxes"].shape == (n, 4)
            assert example["is_crowd"].shape == (n,) and example["area"].shape == (n,)
            classes = example["classes"].numpy()
            assert np.all((classes >= 1) & (classes <= max_id))
            boxes = example["boxes"].numpy()
            assert np.all(boxes[:, [0, 2]] <= image.shape[0] + 1e-3)
            assert np.all(boxes[:, [1, 3]] <= image.shape[1] + 1e-3)
            assert example["source_id"].numpy() != b""


def test_pipeline_from_tfds_name():
    config = get_config("efficientdet-d0", "image_size=128,num_classes=20,data.shuffle_buffer=4")
    with tfds.testing.mock_data(num_examples=4):
        dataset = InputPipeline(None, config, is_training=True, tfds_name="voc/2007", batch_size=2)()
        images, labels = next(iter(dataset))
    assert images.shape == (2, 128, 128, 3)
    assert labels["cls_targets_p3"].numpy().max() < 20
