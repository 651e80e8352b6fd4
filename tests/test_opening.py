"""`checkpoints.opening.open_model`: every way of naming a network gives (network, config) the same way."""

import numpy as np
import pytest

from efficientdet_tf.checkpoints.opening import open_model
from efficientdet_tf.config import get_config

SMALL = "image_size=128,num_classes=3,fpn_cell_repeats=1,box_class_repeats=1"


@pytest.fixture(scope="module")
def built():
    return open_model("efficientdet-lite0", hparams=SMALL)


def test_a_name_and_a_config_build_the_same_network(built):
    network, config = built
    assert config.name == "efficientdet-lite0" and config.image_size == 128 and network.config == config
    again, same = open_model(get_config("efficientdet-lite0", SMALL))
    assert same == config and again.count_params() == network.count_params()


def test_saved_files_and_bare_checkpoints(built, tmp_path):
    network, config = built
    keras_file = str(tmp_path / "small.keras")
    network.save(keras_file)
    weights = str(tmp_path / "small.weights.h5")
    network.save_weights(weights)
    from_file, file_config = open_model(keras_file, hparams="nms.max_detections=7")
    assert file_config.nms.max_detections == 7 and file_config.network_dict() == config.network_dict()
    from_weights, _ = open_model("efficientdet-lite0", weights, hparams=SMALL)
    for other in (from_file, from_weights):
        for a, b in zip(network.weights, other.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="a model name is needed for the bare checkpoint"):
        open_model(None, weights)


def test_a_fixed_network_refuses_hparams_that_would_change_it(built):
    network, _ = built
    _, config = open_model(network, hparams={"nms.iou_threshold": 0.3, "eval.batch_size": 2})
    assert config.nms.iou_threshold == 0.3 and config.eval.batch_size == 2
    with pytest.raises(ValueError, match="fixes the network; hparams cannot change image_size"):
        open_model(network, hparams="image_size=256")
