"""Feature-network topologies as data: every topology builds, node lists are checked, bifpn as data."""

import os

import numpy as np
import pytest

import efficientdet_tf as edt
from efficientdet_tf.model.fpn_topologies import (
    FPN_NAMES, TopologyError, bifpn_nodes, resolve_topology, validate_nodes)
from efficientdet_tf.ops.anchors import feature_sizes


def _weights(model):
    return sum(int(np.prod(w.shape)) for w in model.weights)


@pytest.mark.parametrize("max_level", [7, 8])
@pytest.mark.parametrize("fpn_name", FPN_NAMES)
def test_every_topology_builds_and_outputs_every_level(fpn_name, max_level):
    spec = resolve_topology(fpn_name, [], 3, max_level)
    ids = max_level - 3 + 1
    for index, (level, inputs) in enumerate(spec):  # inputs exist before the node that takes them
        assert 3 <= level <= max_level and all(0 <= i < ids + index for i in inputs)
    assert {level for level, _ in spec} == set(range(3, max_level + 1))
    size = 2 ** max_level  # the smallest input that gives the coarsest level
    model = edt.build_model("efficientdet-d0", dict(image_size=size, num_classes=2, max_level=max_level,
                                                    fpn_name=fpn_name, fpn_cell_repeats=2))
    class_outputs, box_outputs = model(np.zeros((1, size, size, 3), "float32"), training=False)
    sizes = feature_sizes(size, 3, max_level)
    assert [tuple(c.shape[1:3]) for c in class_outputs] == list(sizes.values())
    assert len(box_outputs) == max_level - 2


def test_topologies_differ_in_cost():
    base = dict(image_size=128, num_classes=2, fpn_cell_repeats=1)
    counts = {name: _weights(edt.build_model("efficientdet-d0", dict(base, fpn_name=name))) for name in FPN_NAMES}
    # PANet adds bottom-up nodes to FPN; the fully-connected cell resamples every level into every node.
    assert counts["fpn"] < counts["panet"] and counts["fpn"] < counts["fully_connected"]
    assert len(set(counts.values())) == len(FPN_NAMES)


def test_bifpn_written_as_fpn_config_reproduces_the_reference(d0_reference_dir):
    reference = np.load(os.path.join(d0_reference_dir, "reference_outputs.npz"))
    model = edt.build_model("efficientdet-d0", {"fpn_config": bifpn_nodes(3, 7), "fpn_name": "fpn"})
    assert _weights(model) == _weights(edt.build_model("efficientdet-d0"))
    edt.load_official_checkpoint(model, d0_reference_dir)
    class_outputs, box_outputs = model(reference["net_input"], training=False)
    for level, c, b in zip(range(3, 8), class_outputs, box_outputs):
        np.testing.assert_allclose(np.asarray(c), reference["class_outputs_p%d" % level], atol=1e-4)
        np.testing.assert_allclose(np.asarray(b), reference["box_outputs_p%d" % level], atol=1e-4)


@pytest.mark.parametrize("nodes, fragment", [
    ([{"feat_level": 6, "inputs_offsets": [3, 42]}], "node 0 (id 5): unknown input id 42"),
    ([{"feat_level": 6, "inputs_offsets": [3, 6]}, {"feat_level": 5, "inputs_offsets": [2]}],
     "node 0 (id 5): input id 6 is a later node"),
    ([{"feat_level": 9, "inputs_offsets": [3]}], "node 0 (id 5): feat_level 9 lies outside"),
    ([{"feat_level": 6, "inputs_offsets": []}], "node 0 (id 5): inputs_offsets must be a non-empty list"),
    ([{"feat_level": 6, "inputs": [3]}], "node 0 (id 5): expected {feat_level"),
    ([{"feat_level": level, "inputs_offsets": [level - 3]} for level in (3, 4, 5, 6)], "no node outputs level(s) P7"),
])
def test_bad_node_lists_name_the_node(nodes, fragment):
    with pytest.raises(TopologyError) as err:
        validate_nodes(nodes, 3, 7)
    assert fragment in str(err.value)


def test_bad_fpn_config_stops_model_building():
    with pytest.raises(TopologyError, match="node 1 .*unknown input id 99"):
        edt.build_model("efficientdet-d0", {"image_size": 128, "fpn_config": [
            {"feat_level": 3, "inputs_offsets": [0]}, {"feat_level": 4, "inputs_offsets": [99]}]})


def test_summary_compares_topologies_and_plots(tmp_path):
    from efficientdet_tf.cli.summary import compare_fpn, plot_sizes, summarize_all

    table = compare_fpn("efficientdet-lite0", "image_size=128,fpn_cell_repeats=1")
    assert set(table) == set(FPN_NAMES)
    # The feature network is a strict part of the model, and it is what the topologies change.
    for info in table.values():
        assert 0 < info["fpn_weights"] < info["trainable_weights"] and 0 < info["fpn_flops"] < info["flops"]
    backbone_and_heads = {info["trainable_weights"] - info["fpn_weights"] for info in table.values()}
    assert len(backbone_and_heads) == 1
    rows = summarize_all(["efficientdet-d0"])
    assert abs(rows[0][1]["trainable_weights"] - 3880067) == 0
    plot_sizes(rows, str(tmp_path / "sizes.png"))
    assert (tmp_path / "sizes.png").read_bytes()[:4] == b"\x89PNG"
