"""Clean-up of a quantised TFLite graph's float tail: no int8 round trips, best class taken in int8.

`mlir_quantize` leaves the float post-processing of an int8 network with QUANTIZE -> ... ->
DEQUANTIZE detours: the reshaped head outputs are quantised and dequantised again (a wasted pass
over every class logit), and the box deltas of all levels are concatenated in int8 at one common
scale, which coarsens the finer levels' deltas before decoding. `clean_float_tail` rewrites the
flatbuffer so that those tensors stay float, and takes each anchor's best class directly on the
int8 class logits, so that only the best logit is dequantised.
"""

from tensorflow.lite.python import schema_py_generated as schema_fb

_OP = schema_fb.BuiltinOperator
_FLOAT32 = schema_fb.TensorType.FLOAT32
# Ops that only move or select values: on float data they compute what they computed in int8.
_VALUE_OPS = (_OP.RESHAPE, _OP.UNPACK, _OP.STRIDED_SLICE, _OP.SLICE, _OP.SPLIT, _OP.CONCATENATION,
              _OP.GATHER, _OP.TRANSPOSE, _OP.SQUEEZE)
_REDUCTIONS = (_OP.REDUCE_MAX, _OP.ARG_MAX)


class _Graph:
    """Operator-level view of subgraph 0 of a `schema_fb.ModelT`, for rewiring tensors."""

    def __init__(self, model):
        self.model = model
        self.graph = model.subgraphs[0]
        for op in self.graph.operators:
            op.inputs, op.outputs = [int(i) for i in op.inputs], [int(i) for i in op.outputs]
        self.graph.outputs = [int(i) for i in self.graph.outputs]
        self.removed = {}  # id -> op; holding the op keeps its id from being reused by a new one

    def code(self, op):
        code = self.model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def consumers(self, tensor):
        return [op for op in self.graph.operators if id(op) not in self.removed and tensor in op.inputs]

    def replace_uses(self, old, new):
        """Every op input and graph output reading `old` reads `new` instead."""
        for op in self.graph.operators:
            op.inputs = [new if i == old else i for i in op.inputs]
        self.graph.outputs = [new if i == old else i for i in self.graph.outputs]

    def make_float(self, tensor):
        self.graph.tensors[tensor].type = _FLOAT32
        self.graph.tensors[tensor].quantization = None

    def opcode_index(self, builtin):
        for i, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        code = schema_fb.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def remove(self, op):
        self.removed[id(op)] = op

    def finish(self):
        self.graph.operators = [op for op in self.graph.operators if id(op) not in self.removed]
        self.removed = {}


def _remove_int8_detours(g):
    """QUANTIZE(float x) -> value-only int8 ops -> DEQUANTIZE becomes the same ops on float x."""
    for quantize in list(g.graph.operators):
        if id(quantize) in g.removed or g.code(quantize) != _OP.QUANTIZE:
            continue
        source, start = quantize.inputs[0], quantize.outputs[0]
        if g.graph.tensors[source].type != _FLOAT32 or start in g.graph.outputs:
            continue  # a requantisation inside the network, or an int8 output the caller asked for
        region, ops, dequantizes, frontier, ok = {start}, [], [], [start], True
        while frontier and ok:
            for op in g.consumers(frontier.pop()):
                if g.code(op) == _OP.DEQUANTIZE:
                    dequantizes.append(op)
                elif g.code(op) in _VALUE_OPS and all(
                        i < 0 or i in region or g.graph.tensors[i].type != schema_fb.TensorType.INT8
                        for i in op.inputs):
                    if op not in ops:
                        ops.append(op)
                        region.update(op.outputs)
                        frontier += op.outputs
                else:
                    ok = False
                    break
        if not ok:
            continue
        for tensor in region - {start}:
            g.make_float(tensor)
        for op in ops:
            op.inputs = [source if i == start else i for i in op.inputs]
        for op in dequantizes:
            g.remove(op)
            g.replace_uses(op.outputs[0], source if op.inputs[0] == start else op.inputs[0])
        g.remove(quantize)


def _best_class_in_int8(g):
    """DEQUANTIZE(logits) -> RESHAPE -> REDUCE_MAX / ARG_MAX runs on the int8 logits instead.

    Dequantisation preserves order and maps equal int8 values to equal floats, so the maximum and
    its channel are the same; REDUCE_MAX keeps the input's scale and only its result is dequantised.
    """
    operators = g.graph.operators
    for dequantize in list(operators):
        if id(dequantize) in g.removed or g.code(dequantize) != _OP.DEQUANTIZE:
            continue
        logits = dequantize.inputs[0]
        params = g.graph.tensors[logits].quantization
        if g.graph.tensors[logits].type != schema_fb.TensorType.INT8 or params is None or len(params.scale) != 1:
            continue
        reshapes = g.consumers(dequantize.outputs[0])
        if not reshapes or any(g.code(op) != _OP.RESHAPE for op in reshapes):
            continue
        users = [g.consumers(op.outputs[0]) for op in reshapes]
        if not all(u and all(g.code(op) in _REDUCTIONS for op in u) for u in users):
            continue
        if set(g.graph.outputs) & ({dequantize.outputs[0]} | {op.outputs[0] for op in reshapes}):
            continue
        for reshape, reductions in zip(reshapes, users):
            reshape.inputs[0] = logits
            _set_int8(g.graph.tensors[reshape.outputs[0]], params)
            for op in reductions:
                if g.code(op) != _OP.REDUCE_MAX:
                    continue
                best = op.outputs[0]
                _set_int8(g.graph.tensors[best], params)
                dequantized = schema_fb.TensorT()
                dequantized.shape = list(g.graph.tensors[best].shape)
                dequantized.type, dequantized.buffer = _FLOAT32, 0
                dequantized.name = g.graph.tensors[best].name + b"_dequantized"
                g.graph.tensors.append(dequantized)
                g.replace_uses(best, len(g.graph.tensors) - 1)
                new_op = schema_fb.OperatorT()
                new_op.opcodeIndex = g.opcode_index(_OP.DEQUANTIZE)
                new_op.inputs, new_op.outputs = [best], [len(g.graph.tensors) - 1]
                operators.insert(operators.index(op) + 1, new_op)
        g.remove(dequantize)


def _set_int8(tensor, params):
    tensor.type = schema_fb.TensorType.INT8
    tensor.quantization = schema_fb.QuantizationParametersT()
    tensor.quantization.scale, tensor.quantization.zeroPoint = list(params.scale), list(params.zeroPoint)


def clean_float_tail(model_content):
    """Returns the TFLite bytes of `model_content` with the float tail cleaned up (module doc)."""
    import flatbuffers

    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(model_content, 0))
    g = _Graph(model)
    _remove_int8_detours(g)
    g.finish()
    _best_class_in_int8(g)
    g.finish()
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def order_outputs(content, names):
    """TFLite bytes whose subgraph-0 outputs come in the order of the signature output `names`,
    both as the output list and by tensor index.

    The converter orders a signature's outputs as it likes. The TFLite detection runtimes read the
    four detection outputs by position, and MediaPipe's metadata writer pairs them with their
    meaning by ascending tensor index (the port order of TFLite's detection post-processing op),
    so the output tensors swap index slots as well (every reference to them follows).
    """
    import flatbuffers

    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(content, 0))
    signature = model.signatureDefs[0]
    graph = model.subgraphs[0]
    by_name = {t.name.decode(): int(t.tensorIndex) for t in signature.outputs}
    if sorted(by_name) != sorted(names) or len(names) != len(graph.outputs):
        raise ValueError("the TFLite signature's outputs are %s, not %s" % (sorted(by_name), list(names)))
    slots = sorted(by_name.values())
    moved = {by_name[name]: slot for name, slot in zip(names, slots)}  # old index -> new index
    tensors = list(graph.tensors)
    for old, new in moved.items():
        graph.tensors[new] = tensors[old]

    def remap(indices):
        return [moved.get(int(i), int(i)) for i in indices] if indices is not None else indices

    for op in graph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
    graph.inputs = remap(graph.inputs)
    graph.outputs = slots
    for output in signature.outputs:
        output.tensorIndex = moved[int(output.tensorIndex)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def builtin_name(model, op):
    """The builtin operator name ('CONV_2D', 'NON_MAX_SUPPRESSION_V5', ...) of `op` in a `schema_fb.ModelT`."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next((name for name, value in vars(_OP).items() if value == builtin and not name.startswith("_")),
                str(builtin))


def float_ops(content):
    """{operator name: count} of the ops of a TFLite file that compute in float: those with a float32
    output (DEQUANTIZE counts: it is where int8 values leave the integer kernels)."""
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(content, 0))
    graph = model.subgraphs[0]
    counts = {}
    for op in graph.operators:
        if any(graph.tensors[int(i)].type == _FLOAT32 for i in op.outputs):
            name = builtin_name(model, op)
            counts[name] = counts.get(name, 0) + 1
    return counts
