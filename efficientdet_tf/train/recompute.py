"""Gradient checkpointing: the training pass run segment by segment, each recomputed in the backward pass."""

import re

import tensorflow as tf

# Layer names follow the official scopes: a backbone block is `efficientnet-b4.blocks_12.*`, a
# BiFPN cell `fpn_cells.cell_3.*`. Everything else (stem, extra levels, heads) runs as usual.
_SEGMENT = re.compile(r"^(?:efficientnet-[a-z0-9]+\.(blocks_\d+)|fpn_cells\.(cell_\d+))\.")


def segment_of(layer_name):
    """The recomputed segment a layer belongs to ('blocks_7', 'cell_2'), or None."""
    match = _SEGMENT.match(layer_name)
    return (match.group(1) or match.group(2)) if match else None


class _Unit:
    """Nodes of the functional graph run together: one segment, or one node outside every segment."""

    def __init__(self, key, nodes):
        self.key = key
        self.nodes = nodes
        self.recompute = False

    def layers(self):
        seen = {}
        for node in self.nodes:
            seen.setdefault(id(node.operation), node.operation)
        return list(seen.values())


def _ordered_nodes(model):
    """The model's call nodes in an order where every node follows its inputs (as Keras runs them)."""
    try:
        by_depth = model._nodes_by_depth
    except AttributeError:
        raise ValueError("train.recompute needs a Keras functional model; %s is not one"
                         % type(model).__name__) from None
    nodes = []
    for depth in sorted(by_depth, reverse=True):
        nodes.extend(node for node in by_depth[depth] if node.operation is not None and not node.is_input)
    return nodes


class RecomputedForward:
    """`forward(images) -> (class_outputs, box_outputs)`: `model(images, training=True)` with the
    activations inside each backbone block and BiFPN cell dropped after the forward pass and computed
    again when the backward pass reaches the segment.

    Only a segment's inputs stay in memory, so activation memory falls to about that of the largest
    segment plus the segment boundaries, for one more forward pass of the segments per step. Before
    a segment is recomputed its random state (drop-connect's seed generators) and batch-norm moving
    statistics are put back to what they were before its forward pass, and afterwards to what that
    pass left: the recomputation draws the same drop-connect masks, the moving averages are updated
    once, and the gradients are those of the plain pass.

    Segments whose gradients nobody needs (no trainable variable in them or before them, as with a
    frozen backbone) keep no activations anyway and run as usual. `trainable` is the list of
    variables the step differentiates.
    """

    def __init__(self, model, trainable):
        self.model = model
        nodes = _ordered_nodes(model)
        position, groups = {}, {}
        for index, node in enumerate(nodes):
            key = segment_of(node.operation.name)
            if key is None:
                position[("node", index)] = index
                groups[("node", index)] = _Unit(None, [node])
            else:
                groups.setdefault(key, _Unit(key, [])).nodes.append(node)
                # A segment runs where its last node would: all its outside inputs exist by then.
                position[key] = index
        self.units = [groups[key] for key in sorted(groups, key=position.get)]
        self._wire()
        trainable_ids = {id(v) for v in trainable}
        needs_gradient = False
        for unit in self.units:
            needs_gradient = needs_gradient or any(
                id(v) in trainable_ids for layer in unit.layers() for v in layer.trainable_variables)
            unit.recompute = unit.key is not None and needs_gradient
        self.segments = [unit.key for unit in self.units if unit.recompute]

    def _wire(self):
        """Each unit's outside inputs and the outputs others need, checked in execution order."""
        consumers = {}
        for unit in self.units:
            for node in unit.nodes:
                for tensor in node.input_tensors:
                    consumers.setdefault(id(tensor), set()).add(id(unit))
        model_outputs = {id(t) for t in self.model.outputs}
        available = {id(t) for t in self.model.inputs}
        for unit in self.units:
            made = {id(t) for node in unit.nodes for t in node.outputs}
            unit.inputs = []
            for node in unit.nodes:
                for tensor in node.input_tensors:
                    if id(tensor) not in made and id(tensor) not in unit.inputs:
                        if id(tensor) not in available:
                            raise ValueError("train.recompute cannot cut %s into segments: %s needs a tensor "
                                             "made after it" % (self.model.name, unit.key or node.operation.name))
                        unit.inputs.append(id(tensor))
            unit.outputs = [id(t) for node in unit.nodes for t in node.outputs
                            if id(t) in model_outputs or consumers.get(id(t), set()) - {id(unit)}]
            available.update(made)

    def __call__(self, images):
        tensors = {id(self.model.inputs[0]): images}
        for unit in self.units:
            args = [tensors[i] for i in unit.inputs]
            run = self._runner(unit)
            outputs = _recomputed(run, _state_of(unit))(*args) if unit.recompute else run(*args)
            tensors.update(zip(unit.outputs, outputs))
        flat = [tensors[id(t)] for t in self.model.outputs]
        return tf.nest.pack_sequence_as(self.model._outputs_struct, flat)

    @staticmethod
    def _runner(unit):
        def run(*args):
            tensors = dict(zip(unit.inputs, args))
            for node in unit.nodes:
                node_args, node_kwargs = node.arguments.fill_in(tensors)
                if "training" in getattr(node.operation, "_call_context_args", ()):
                    node_kwargs["training"] = True
                outputs = node.operation(*node_args, **node_kwargs)
                tensors.update(zip((id(t) for t in node.outputs), tf.nest.flatten(outputs)))
            return [tensors[i] for i in unit.outputs]
        return run


def _state_of(unit):
    """The variables a segment's training pass changes: batch-norm moving statistics, seed states."""
    state = []
    for layer in unit.layers():
        state.extend(layer.non_trainable_variables)
    return state


def _recomputed(run, state):
    """`run` under a custom gradient that keeps only its inputs and runs it again for the backward pass."""

    @tf.custom_gradient
    def segment(*inputs):
        before = [tf.identity(v.value) for v in state]
        outputs = run(*inputs)

        def gradient(*output_grads, variables=None):
            variables = list(variables or ())
            after = [tf.identity(v.value) for v in state]
            for v, value in zip(state, before):
                v.assign(value)
            differentiable = [v for v in variables if v.trainable and v.dtype.is_floating]
            # Made to wait for the incoming gradients, the recomputation is a different computation
            # to the graph optimizer, which would otherwise merge it with the forward pass and keep
            # the activations after all.
            with tf.control_dependencies([g for g in output_grads if g is not None]):
                again_inputs = [tf.identity(x) for x in inputs]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(again_inputs)
                tape.watch(differentiable)
                again = run(*again_inputs)
            grads = tape.gradient(again, list(again_inputs) + differentiable, output_gradients=list(output_grads))
            # After the gradients in program order, so the recomputation's updates are overwritten.
            with tf.control_dependencies([g for g in grads if g is not None]):
                for v, value in zip(state, after):
                    v.assign(value)
            by_variable = dict(zip((id(v) for v in differentiable), grads[len(inputs):]))
            input_grads = grads[:len(inputs)]
            if not variables:
                return input_grads
            return input_grads, [by_variable.get(id(v)) for v in variables]

        return outputs, gradient

    return segment
