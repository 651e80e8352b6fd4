"""Feature-network topologies as data: node lists for BiFPN, FPN, PANet and a fully-connected FPN.

A topology is a list of nodes in the official form, `{"feat_level": L, "inputs_offsets": [ids]}`.
Ids count the cell's input levels first (min_level..max_level are 0..n-1), then the nodes in
order (node k gets id n + k). A cell's output at each level is the last node of that level. Every
node fuses its resampled inputs (`fpn_weight_method`), then applies activation, a 3x3 separable
convolution and batch norm, whatever the topology.
"""

from efficientdet_tf.config.schema import choices_of

FPN_NAMES = choices_of(None, "fpn_name")


class TopologyError(ValueError):
    """A feature-network node list that cannot be built; the message names the node."""


def _builder(min_level, max_level):
    """(add(level, inputs), last) helpers that number nodes as the official form does."""
    levels = list(range(min_level, max_level + 1))
    ids_by_level = {level: [i] for i, level in enumerate(levels)}
    nodes = []

    def add(level, inputs):
        nodes.append({"feat_level": level, "inputs_offsets": list(inputs)})
        ids_by_level[level].append(len(levels) + len(nodes) - 1)

    return nodes, ids_by_level, add


def bifpn_nodes(min_level, max_level):
    """BiFPN: top-down from max-1 to min takes [last(level), last(level+1)]; bottom-up from min+1 to
    max takes every node of that level so far plus last(level-1)."""
    nodes, ids, add = _builder(min_level, max_level)
    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [ids[level][-1], ids[level + 1][-1]])
    for level in range(min_level + 1, max_level + 1):
        add(level, ids[level] + [ids[level - 1][-1]])
    return nodes


def fpn_nodes(min_level, max_level):
    """Top-down FPN: the top level is refined on its own, then each lower level takes
    [its input, the node above]."""
    nodes, ids, add = _builder(min_level, max_level)
    add(max_level, [ids[max_level][-1]])
    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [ids[level][-1], ids[level + 1][-1]])
    return nodes


def panet_nodes(min_level, max_level):
    """FPN + PANet: the top-down path of BiFPN, then a bottom-up path in which each level takes
    [its top-down node, the node below] (no skip edge from the cell input, no weighted extras)."""
    nodes, ids, add = _builder(min_level, max_level)
    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [ids[level][-1], ids[level + 1][-1]])
    for level in range(min_level + 1, max_level + 1):
        add(level, [ids[level][-1], ids[level - 1][-1]])
    return nodes


def fully_connected_nodes(min_level, max_level):
    """Fully-connected FPN: one node per level, each fusing every input level of the cell."""
    nodes, _, add = _builder(min_level, max_level)
    every = list(range(max_level - min_level + 1))
    for level in range(min_level, max_level + 1):
        add(level, every)
    return nodes


_GENERATORS = {"bifpn": bifpn_nodes, "fpn": fpn_nodes, "panet": panet_nodes,
               "fully_connected": fully_connected_nodes}


def validate_nodes(nodes, min_level, max_level):
    """Checks a node list and returns it as [(level, [input ids])].

    Raises TopologyError naming the node for: a node without inputs or with a malformed entry, an
    input id that does not exist at all, an input id of a node that comes later (forward
    reference), a level outside min_level..max_level, or a level that no node outputs.
    """
    num_inputs = max_level - min_level + 1
    total = num_inputs + len(nodes)
    checked = []
    for index, node in enumerate(nodes):
        where = "feature-network node %d (id %d)" % (index, num_inputs + index)
        if not isinstance(node, dict) or set(node) != {"feat_level", "inputs_offsets"}:
            raise TopologyError("%s: expected {feat_level: L, inputs_offsets: [ids]}, got %r" % (where, node))
        level, inputs = node["feat_level"], node["inputs_offsets"]
        if not isinstance(level, int) or not min_level <= level <= max_level:
            raise TopologyError("%s: feat_level %r lies outside the model's levels %d..%d"
                                % (where, level, min_level, max_level))
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise TopologyError("%s: inputs_offsets must be a non-empty list of ids, got %r" % (where, inputs))
        for offset in inputs:
            if not isinstance(offset, int) or offset < 0 or offset >= total:
                raise TopologyError("%s: unknown input id %r (ids 0..%d exist: %d input levels, then %d nodes)"
                                    % (where, offset, total - 1, num_inputs, len(nodes)))
            if offset >= num_inputs + index:
                raise TopologyError("%s: input id %d is a later node (forward reference); a node may only "
                                    "take the input levels and earlier nodes (ids < %d)"
                                    % (where, offset, num_inputs + index))
        checked.append((level, list(inputs)))
    missing = sorted(set(range(min_level, max_level + 1)) - {level for level, _ in checked})
    if missing:
        raise TopologyError("feature network: no node outputs level(s) %s; every level %d..%d needs one"
                            % (", ".join("P%d" % m for m in missing), min_level, max_level))
    return checked


def resolve_topology(fpn_name, fpn_config, min_level, max_level):
    """The validated node list of a model: `fpn_config` when given, else the named topology."""
    if fpn_config:
        nodes = fpn_config
    elif fpn_name in _GENERATORS:
        nodes = _GENERATORS[fpn_name](min_level, max_level)
    else:
        raise TopologyError("fpn_name must be one of %s, got %r" % (FPN_NAMES, fpn_name))
    return validate_nodes(nodes, min_level, max_level)
