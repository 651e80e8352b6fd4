"""Config loading, overrides and their errors."""

import os

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


@pytest.mark.parametrize("layout", ["--target", "--prefix"])
def test_an_installed_copy_finds_its_hparams_in_any_install_layout(layout, tmp_path):
    """`pip install --target/--prefix` (a Debian/Colab system pip puts files under /usr/local while
    sys.prefix is /usr): the hparams ship inside the package, not beside sys.prefix."""
    import glob
    import shutil
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = tmp_path / "source"  # the build writes build/ and egg-info: not into the checkout
    source.mkdir()
    for name in ("setup.py", "efficientdet_tf", "tfrecord_tools", "hparams"):
        copy = shutil.copytree if os.path.isdir(os.path.join(root, name)) else shutil.copy
        copy(os.path.join(root, name), source / name)
    where = tmp_path / "installed"
    # A real wheel of the checkout; no dependencies (the test's venv has them), and --ignore-installed
    # so that pip leaves the venv's own install of the package alone.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--ignore-installed", layout, str(where), str(source)], check=True, cwd=tmp_path)
    site = str(where) if layout == "--target" else glob.glob(str(where / "lib" / "python*" / "site-packages"))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import efficientdet_tf, efficientdet_tf.config as c; "
             "cfg = c.get_config('efficientdet-lite2', 'num_classes=3'); "
             "print(efficientdet_tf.__file__, cfg.backbone_name, cfg.num_classes, len(c.model_names()))")
    env = dict(os.environ, PYTHONPATH=site, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", probe], check=True, cwd=elsewhere, env=env,
                         capture_output=True, text=True).stdout.split()
    assert out[0].startswith(site), out  # the installed copy, not the checkout
    assert out[1:] == ["efficientnet-lite2", "3", "15"]


def test_the_schema_declares_each_allowed_value_once_and_the_implementations_follow_it():
    import dataclasses

    from efficientdet_tf.config import schema
    from efficientdet_tf.model import fpn_topologies
    for section, cls in schema.SECTIONS.items():
        for field in dataclasses.fields(cls):
            for value in field.metadata.get("choices", ()):
                key = field.name if section is None else "%s.%s" % (section, field.name)
                assert get_config("efficientdet-d0", {key: value})[section or field.name] is not None
    assert sorted(fpn_topologies._GENERATORS) == sorted(schema.choices_of(None, "fpn_name"))
    cfg = get_config("efficientdet-d0")
    assert isinstance(cfg.train, schema.Train) and cfg.train.clip_gradients_scope == "replica"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nms.sigma = 0.1
    with pytest.raises(ConfigError, match=r"'train.lr_schedule' must be one of \('cosine', 'constant'\)"):
        get_config("efficientdet-d0", "lr_schedule=step")
    with pytest.raises(ConfigError, match="'act_type' must be one of"):
        get_config("efficientdet-d0", "act_type=gelu")
