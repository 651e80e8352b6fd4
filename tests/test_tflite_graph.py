"""The int8 file's float tail after `clean_float_tail`: no int8 detours, best class taken in int8."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb

from efficientdet_tf.litert import make_interpreter
from efficientdet_tf.export.tflite import keep_tail_float, quantize_network

NUM_CLASSES = 5


def _tail_model():
    """A float graph shaped like the detection file's: a 'net' scope with two levels of class
    logits and box deltas (level 'fine' with deltas ~100x smaller than level 'coarse'), then the
    post-processing pattern of `postprocess`: per-level reshape + max/argmax over classes, box
    deltas reshaped, concatenated and unstacked into coordinates."""
    rng = np.random.default_rng(0)
    kernels = [tf.constant(rng.normal(size=(3, 3, 3, n)).astype(np.float32))
               for n in (2 * NUM_CLASSES, 8, 2 * NUM_CLASSES, 8)]

    def fn(x):
        with tf.name_scope("net"):
            feats = [tf.nn.conv2d(x, k, 1, "SAME") for k in kernels]
            class_fine, box_fine, class_coarse, box_coarse = feats
            box_fine = box_fine * 0.01
            class_coarse = tf.nn.max_pool2d(class_coarse, 2, 2, "SAME")
            box_coarse = tf.nn.max_pool2d(box_coarse, 2, 2, "SAME")
        best, channel = [], []
        for logits in (class_fine, class_coarse):
            logits = tf.reshape(logits, [1, -1, NUM_CLASSES])
            best.append(tf.reduce_max(logits, axis=-1))
            channel.append(tf.argmax(logits, axis=-1, output_type=tf.int32))
        deltas = tf.concat([tf.reshape(b, [1, -1, 4]) for b in (box_fine, box_coarse)], axis=1)
        ty, tx, th, tw = tf.unstack(deltas, axis=-1)
        return {"best": tf.concat(best, axis=1), "channel": tf.concat(channel, axis=1),
                "boxes": tf.stack([ty, tx, tf.exp(0.1 * th), tw], axis=-1)}

    return tf.function(fn, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])


def _quantized(fn, samples, clean):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(calibrated, 0))
    float_nodes, _ = keep_tail_float(model, "net")
    if clean:
        return quantize_network(model, float_nodes)
    import flatbuffers
    from tensorflow.lite.python import convert

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return convert.mlir_quantize(bytes(builder.Output()), denylisted_nodes=float_nodes)


def _run(content, x):
    interpreter = make_interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    outputs = {}
    for d in interpreter.get_output_details():  # told apart by kind: the names are generated
        value = interpreter.get_tensor(d["index"])
        outputs["channel" if value.dtype == np.int32 else "boxes" if value.ndim == 3 else "best"] = value
    return outputs, interpreter


def _op_input_types(interpreter):
    dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    kinds = {}
    for op in interpreter._get_ops_details():
        kinds.setdefault(op["op_name"], set()).add(dtypes[op["inputs"][0]])
    return kinds


@pytest.fixture(scope="module")
def files():
    fn = _tail_model()
    rng = np.random.default_rng(1)
    samples = [[rng.normal(size=(1, 8, 8, 3)).astype(np.float32)] for _ in range(8)]
    return fn, _quantized(fn, samples, clean=False), _quantized(fn, samples, clean=True)


def test_clean_tail_takes_the_best_class_in_int8_and_keeps_boxes_float(files):
    fn, raw, cleaned = files
    _, interpreter = _run(raw, np.zeros((1, 8, 8, 3), np.float32))
    before = _op_input_types(interpreter)
    # What mlir_quantize leaves: box deltas unstacked in int8, class logits requantised then
    # dequantised again before a float max.
    assert before["UNPACK"] == {np.int8} and before["REDUCE_MAX"] == {np.float32}, before
    _, interpreter = _run(cleaned, np.zeros((1, 8, 8, 3), np.float32))
    after = _op_input_types(interpreter)
    assert after["CONV_2D"] == {np.int8}
    assert after["REDUCE_MAX"] == {np.int8} and after["ARG_MAX"] == {np.int8}
    assert after["UNPACK"] == {np.float32} and after["CONCATENATION"] <= {np.float32, np.int32}
    assert after["EXP"] == {np.float32}
    assert len(interpreter._get_ops_details()) < len(_run(raw, np.zeros((1, 8, 8, 3), np.float32))[1]._get_ops_details())


def test_clean_tail_keeps_best_class_and_makes_fine_boxes_exact(files):
    fn, raw, cleaned = files
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype(np.float32)
    want = {k: v.numpy() for k, v in fn(x).items()}
    got_raw, _ = _run(raw, x)
    got, _ = _run(cleaned, x)
    # Maximum and channel: the same values as dequantising every logit first.
    np.testing.assert_array_equal(got["channel"], got_raw["channel"])
    np.testing.assert_allclose(got["best"], got_raw["best"], rtol=0, atol=1e-6)
    # The fine level's box deltas (its 128 anchors come first) keep their own int8 scale; the
    # untouched file concatenates them in int8 at the coarse level's 100x coarser scale.
    fine = slice(0, 8 * 8 * 2)
    error_raw = np.abs(got_raw["boxes"][0, fine, :2] - want["boxes"][0, fine, :2]).max()
    error = np.abs(got["boxes"][0, fine, :2] - want["boxes"][0, fine, :2]).max()
    step_fine = np.ptp(want["boxes"][0, fine, :2]) / 255  # this picture's; calibration saw wider
    assert error <= 3 * step_fine and 10 * error < error_raw, (error, step_fine, error_raw)
