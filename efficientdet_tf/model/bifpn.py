"""BiFPN: extra levels above the backbone, resampling and weighted fusion cells over a node list.

The node lists (BiFPN and the other topologies) are data, in `fpn_topologies.py`.
"""

import keras

from efficientdet_tf.ops.anchors import halve
from efficientdet_tf.model.layers import NearestUpsample, WeightedFusion, activation


def _pool_for(in_size, out_size, name):
    """Max-pool taking a map of `in_size` to `out_size` (kernel stride+1, 'SAME')."""
    stride = (in_size[0] - 1) // out_size[0] + 1, (in_size[1] - 1) // out_size[1] + 1
    return keras.layers.MaxPooling2D(pool_size=(stride[0] + 1, stride[1] + 1), strides=stride,
                                     padding="same", name=name)


def resample(x, target_size, num_filters, name, bn_args):
    """Brings `x` to `target_size` (h, w) and `num_filters` channels.

    Channel change first (1x1 conv with bias + BN), then max-pool down or nearest-neighbour up.
    """
    if x.shape[-1] != num_filters:
        x = keras.layers.Conv2D(num_filters, 1, padding="same", name=name + ".conv2d")(x)
        x = keras.layers.BatchNormalization(**bn_args, name=name + ".bn")(x)
    size = (x.shape[1], x.shape[2])
    if size[0] > target_size[0]:
        x = _pool_for(size, target_size, name + ".pool")(x)
    elif size[0] < target_size[0]:
        x = NearestUpsample(target_size, name=name + ".upsample")(x)
    return x


def extra_levels(features, sizes, max_level, num_filters, bn_args):
    """Adds levels 6..max_level on top of the backbone's level 5 (P6 via conv+BN+pool, then pools)."""
    features = dict(features)
    for level in range(6, max_level + 1):
        name = "resample_p%d" % level
        features[level] = resample(features[level - 1], sizes[level], num_filters, name, bn_args)
    return features


def bifpn_cell(features, cell_index, nodes_spec, min_level, max_level, num_filters, fusion, act_type, bn_args):
    """One cell over `nodes_spec` [(level, input ids)]. `features` maps level -> map; returns
    level -> map (the last node of each level)."""
    nodes = list(features[level] for level in range(min_level, max_level + 1))
    node_levels = list(range(min_level, max_level + 1))
    prefix = "fpn_cells.cell_%d" % cell_index
    for i, (level, input_ids) in enumerate(nodes_spec):
        node_name = "%s.fnode%d" % (prefix, i)
        new_id = len(nodes)
        target = features[level].shape[1:3]
        inputs = [resample(nodes[j], target, num_filters,
                           "%s.resample_%d_%d_%d" % (node_name, edge, j, new_id), bn_args)
                  for edge, j in enumerate(input_ids)]
        x = WeightedFusion(fusion, name=node_name)(inputs)
        op_name = "%s.op_after_combine%d" % (node_name, new_id)
        x = activation(act_type, op_name + ".act")(x)
        x = keras.layers.SeparableConv2D(num_filters, 3, padding="same", name=op_name + ".conv")(x)
        x = keras.layers.BatchNormalization(**bn_args, name=op_name + ".bn")(x)
        nodes.append(x)
        node_levels.append(level)
    # The cell's inputs are not outputs: each level's output is the last node made at that level.
    outputs = {}
    for node, level in zip(nodes[len(features):], node_levels[len(features):]):
        outputs[level] = node
    return outputs


def bifpn(features, min_level, max_level, num_filters, num_cells, fusion, act_type, bn_args, nodes_spec):
    """The whole feature network: extra levels, then `num_cells` cells (no weight sharing).

    `nodes_spec` is the validated node list of one cell, [(level, input ids)]
    (`fpn_topologies.resolve_topology`); the same list is repeated in every cell.
    """
    sizes = {}
    size = features[5].shape[1:3]
    for level in range(6, max_level + 1):
        size = (halve(size[0]), halve(size[1]))
        sizes[level] = size
    feats = extra_levels(features, sizes, max_level, num_filters, bn_args)
    feats = {level: feats[level] for level in range(min_level, max_level + 1)}
    for cell in range(num_cells):
        feats = bifpn_cell(feats, cell, nodes_spec, min_level, max_level, num_filters, fusion, act_type, bn_args)
    return feats
