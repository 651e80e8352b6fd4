"""Config loading, overrides and their errors."""

import pytest

from efficientdet_tf.config import ConfigError, get_config, model_names


def test_every_model_has_hparams_matching_the_scaling_table():
    assert len(model_names()) == 15
    d7x = get_config("efficientdet-d7x")
    assert (d7x.backbone_name, d7x.image_size, d7x.fpn_num_filters, d7x.max_level) == ("efficientnet-b7", 1536, 384, 8)
    lite0 = get_config("efficientdet-lite0")
    assert (lite0.act_type, lite0.fpn_weight_method, lite0.anchors.anchor_scale, lite0.input_norm) == ("relu6", "sum", 3.0, "lite")


def test_overrides_from_string_dict_and_yaml(tmp_path):
    cfg = get_config("efficientdet-d1", "num_classes=20,nms.sigma=0.3,aspect_ratios=[1.0,2.0]")
    assert cfg.num_classes == 20 and cfg.nms.sigma == 0.3 and cfg.anchors.aspect_ratios == [1.0, 2.0]
    assert get_config("efficientdet-d1", {"nms.max_detections": 50}).nms.max_detections == 50
    path = tmp_path / "o.yaml"
    path.write_text("image_size: 384\ntrain:\n  batch_size: 8\n")
    cfg = get_config("efficientdet-d0", str(path))
    assert cfg.image_size == 384 and cfg.train.batch_size == 8 and cfg.fpn_num_filters == 64
    # An int given for a float key is accepted and stored as float.
    assert get_config("efficientdet-d0", "anchor_scale=3").anchors.anchor_scale == 3.0
    # A string of overrides whose last value is a yaml path is still a string of overrides.
    cfg = get_config("efficientdet-d0", "num_classes=5,eval.label_map=%s" % path)
    assert cfg.num_classes == 5 and cfg.eval.label_map == str(path)


def test_flat_keys_reach_their_section_and_network_dict_holds_only_the_network():
    cfg = get_config("efficientdet-d0", "alpha=0.3,score_threshold=0.2,data.training_file_pattern=x-*")
    assert cfg.loss.alpha == 0.3 and cfg.nms.score_threshold == 0.2
    network = cfg.network_dict()
    assert network["anchors"]["anchor_scale"] == 4.0 and network["num_classes"] == 90
    assert not {"loss", "nms", "data", "train"} & set(network)
    with pytest.raises(ConfigError, match="did you mean 'loss.gamma'"):
        get_config("efficientdet-d0", "gama=2")


def test_yaml_file_as_model(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: efficientdet-lite1\nnum_classes: 3\n")
    cfg = get_config(str(path))
    assert cfg.backbone_name == "efficientnet-lite1" and cfg.num_classes == 3


@pytest.mark.parametrize("overrides, fragment", [
    ("fpn_num_filter=3", "did you mean 'fpn_num_filters'"),
    ("nms.sigmaa=0.3", "did you mean 'nms.sigma'"),
    ("num_classes=abc", "'num_classes' expects int, got 'abc'"),
    ("act_type=gelu", "act_type"),
    ("image_size", "expected key=value"),
])
def test_bad_overrides_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        get_config("efficientdet-d0", overrides)
    assert fragment in str(err.value)


def test_unknown_model_name_suggests_nearest():
    with pytest.raises(ConfigError) as err:
        get_config("efficientdet-d9")
    assert "did you mean 'efficientdet-d7'" in str(err.value)
