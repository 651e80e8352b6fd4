"""TFLite export (fp32, fp16, int8, full_int8): network, decoding and NMS in one model on a fixed-size input."""

import shutil
import tempfile

from absl import logging
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from efficientdet_tf.data import schema
from efficientdet_tf.inference import detect_images, raw_output_dict
from efficientdet_tf.ops.image_decoding import decode_image
from efficientdet_tf.ops.letterbox import IMAGENET_PAD_RGB, letterbox, pad_rgb_for

QUANTIZATIONS = ("fp32", "fp16", "int8", "full_int8")
# The outputs of a detection TFLite file, in the order the TFLite detection runtimes read them.
OUTPUT_ORDER = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
# full_int8: the box decoding's int8 ranges cover the boxes of the anchors scoring at least this (of a
# calibration picture's best BOX_RANGE_TOP_K anchors where none does).
BOX_RANGE_MIN_SCORE = 0.2
BOX_RANGE_TOP_K = 100
# ... from the calibration pictures on which those boxes stay within this many input sizes.
BOX_RANGE_LIMIT = 16


def tflite_detections(detections, input_size):
    """The detection dict in the form of TFLite detection models (the form of TFLite's own
    detection post-processing op, which MediaPipe Tasks and the Task Library read): boxes
    [ymin, xmin, ymax, xmax] as fractions of the input, class ids, scores and count all float32."""
    height, width = input_size
    scale = tf.constant([height, width, height, width], tf.float32)
    return {"detection_boxes": tf.cast(detections["detection_boxes"], tf.float32) / scale,
            "detection_classes": tf.cast(detections["detection_classes"], tf.float32),
            "detection_scores": tf.cast(detections["detection_scores"], tf.float32),
            "num_detections": tf.cast(detections["num_detections"], tf.float32)}


def calibration_images(file_pattern, input_size, count=100, pad_rgb=IMAGENET_PAD_RGB):
    """Yields [uint8 [1, h, w, 3]] from the `image/encoded` pictures of TFRecords matching the pattern,
    letterboxed to the TFLite input size as `runtime.TFLiteDetector` feeds them."""
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ValueError("no TFRecord file matches --calibration_file_pattern=%r" % file_pattern)
    records = tf.data.TFRecordDataset(files).take(count)
    for record in records:
        encoded = tf.io.parse_single_example(
            record, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})[schema.ENCODED]
        canvas, _ = letterbox(decode_image(encoded).numpy(), input_size, pad_rgb)
        yield [canvas[None]]


def export_tflite(network, config, path, quantization="fp32", input_size=None,
                  calibration_file_pattern=None, num_calibration_images=100, raw_outputs=False,
                  label_map=None, metadata=True):
    """Converts uint8 pictures [1, h, w, 3] -> detections (the `serving_default` graph) to TFLite.

    The file holds preprocessing, the network, box decoding and NMS (NonMaxSuppressionV5 is a TFLite
    builtin); its signature 'serving_default' has input `images` and the four outputs of TFLite
    detection models, in this order (`OUTPUT_ORDER`, `tflite_detections`): `detection_boxes`
    [1, N, 4] as [ymin, xmin, ymax, xmax] fractions of the input, `detection_classes` (class ids,
    float32), `detection_scores`, `num_detections` (float32 [1]). Pass pictures letterboxed to
    `input_size` and map the boxes back with your own resize scale (`runtime.TFLiteDetector` does).
    With MediaPipe installed (the `edge` extra) the file carries MediaPipe's detector metadata
    (`export.mediapipe_metadata`), so MediaPipe Tasks and the TFLite Task Library run it as it is.

    Args:
      network: the (folded) Keras network.
      config: the Config (image_size, nms).
      path: output .tflite file.
      quantization: 'fp32', 'fp16' (weights), 'int8' (the network in integer arithmetic,
        preprocessing, decoding and NMS in float) or 'full_int8' (for integer-only accelerators:
        uint8 pixels in, scale 1; normalisation, network, best class, scores and box decoding in
        int8; only the NMS and what it selects run in float, `tflite_graph.float_ops` lists them).
      input_size: (height, width) of the fixed input; default (image_size, image_size).
      calibration_file_pattern: TFRecords with image/encoded, required for int8 and full_int8.
      num_calibration_images: how many calibration pictures to read.
      raw_outputs: convert the network alone instead: normalised float32 `normalized_images`
        [1, S, S, 3] in, the raw per-level outputs out (the `predict_raw` graph; fp32/fp16 only;
        no metadata).
      label_map: {class id: name} for the metadata's label file (None: 'class_<id>').
      metadata: write the metadata when MediaPipe is installed
        (`export.mediapipe_metadata.available()` says whether it is).

    Returns:
      path.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError("quantization must be one of %s, got %r" % (QUANTIZATIONS, quantization))
    input_size = tuple(input_size or (config.image_size, config.image_size))
    integer = quantization in ("int8", "full_int8")
    # full_int8 takes the pixels into the graph as float, so that the quantiser gives the file a uint8
    # input of scale 1 that feeds int8 kernels directly; the other files cast their uint8 input inside.
    pixel_type = tf.float32 if quantization == "full_int8" else tf.uint8
    if raw_outputs:
        if integer:
            raise ValueError("raw_outputs exports take fp32 or fp16")
        size = config.image_size
        detect = tf.function(lambda normalized_images: raw_output_dict(network, config, normalized_images),
                             input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32,
                                                            name="normalized_images")])
    else:
        detect = tf.function(
            lambda images: tflite_detections(detect_images(network, config, images, "tflite"), input_size),
            input_signature=[tf.TensorSpec([1, input_size[0], input_size[1], 3], pixel_type, name="images")])
    # Freeze the weights into constants first: the converter leaves Keras 3 variables as
    # VAR_HANDLE/READ_VARIABLE ops that read garbage at run time (TF 2.21).
    concrete = detect.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    module = tf.Module()
    module.detect = tf.function(
        lambda images: tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(images)),
        input_signature=detect.input_signature)
    # Through a SavedModel: from_concrete_functions drops the signature of a variable-free function.
    saved = tempfile.mkdtemp(prefix="efficientdet_tflite_")
    tf.saved_model.save(module, saved, signatures=module.detect.get_concrete_function(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif integer:
        if not calibration_file_pattern:
            raise ValueError("%s TFLite needs --calibration_file_pattern (TFRecords with image/encoded)"
                             % quantization)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [picture.astype(pixel_type.as_numpy_dtype) for picture in sample] for sample in calibration_images(
                calibration_file_pattern, input_size, num_calibration_images, pad_rgb_for(config)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        data = (_quantize_calibrated(converter, network.name, full_integer=quantization == "full_int8")
                if integer else converter.convert())
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    if not raw_outputs:
        from efficientdet_tf.export import mediapipe_metadata
        from efficientdet_tf.export.tflite_graph import order_outputs

        data = order_outputs(data, OUTPUT_ORDER)
        if metadata and mediapipe_metadata.available():
            data = mediapipe_metadata.add_metadata(data, label_map, config.num_classes)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _quantize_calibrated(converter, network_scope, full_integer=False):
    """Calibrates the whole graph, then quantises the network (int8) or all but the NMS (full_int8).

    int8: preprocessing, box decoding and NMS stay float. Quantising the decoding puts the box
    coordinates on a 256-step grid, and the converter cannot quantise it at all when a calibration
    picture drives exp(box delta) to inf (it fails with "scale out of expressed type range"). The
    converter's own per-node denylist does not help with the second, so the statistics of every
    tensor after the network are dropped from the calibrated model before quantising: without
    statistics the quantiser leaves a tensor float. The quantiser still routes parts of that tail
    through int8; `tflite_graph.clean_float_tail` takes those detours out.

    full_int8: the input takes the range 0..255 (uint8 pixels at scale 1) and everything up to the
    NMS is quantised; the ranges of the box decoding come from the boxes of scoring anchors only
    (`keep_nms_float`).

    The graph is quantised twice, with the calibrator's min/max ranges and with
    `calibration.mean_ranges`, and the file whose detections agree better with the float model's
    on the calibration pictures is kept (`calibration.detection_agreement`). Neither estimate wins
    everywhere: on the shapes data (500 held-out pictures) min/max loses 2.2 AP points for D0 at
    512 px and the mean 0.8, while for D0 at 256 px and Lite0 min/max is the better one
    (docs/benchmark_history.md); the agreement picked the better file for all three. Uses the converter's
    calibrate-only mode and `mlir_quantize` (TF 2.21), which
    `tf.lite.experimental.QuantizationDebugger` also uses.
    """
    from tensorflow.lite.python import schema_py_generated as schema_fb

    from efficientdet_tf.export import calibration

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(calibrated, 0))
    samples = list(converter.representative_dataset.input_gen())
    if full_integer:
        float_nodes, tuned = keep_nms_float(model, calibrated, samples, network_scope)
    else:
        float_nodes, tuned = keep_tail_float(model, network_scope)
    input_type = tf.uint8 if full_integer else tf.float32
    candidates = {"min/max": quantize_network(model, float_nodes, input_type)}
    graph = model.subgraphs[0]
    for i, (low, high) in calibration.mean_ranges(calibrated, tuned, samples).items():
        graph.tensors[i].quantization.min, graph.tensors[i].quantization.max = [low], [high]
    candidates["mean of per-picture extremes"] = quantize_network(model, float_nodes, input_type)
    reference = calibration.detections(calibrated, samples)
    try:
        agreement = {name: calibration.detection_agreement(reference, calibration.detections(data, samples))
                     for name, data in candidates.items()}
    except calibration.NothingToCompare as e:
        logging.warning("int8 activation ranges: min/max, the converter's default (%s)", e)
        return candidates["min/max"]
    best = max(agreement, key=agreement.get)
    logging.info("int8 activation ranges: %s (agreement with the float model on %d calibration pictures: %s)",
                 best, len(samples), ", ".join("%s %.4f" % item for item in agreement.items()))
    return candidates[best]


def keep_tail_float(model, network_scope):
    """Marks everything after the network float in a calibrated `schema_fb.ModelT` (in place).

    Returns (names of the output tensors of every op outside the network, for `mlir_quantize`'s
    denylist; indices of the network's tensors that carry a calibrated range). The statistics of
    the tensors after the network are dropped; the preprocessing keeps its own (the input scale).
    """
    from efficientdet_tf.export import calibration

    graph = model.subgraphs[0]
    float_nodes, network_tensors, seen_network = [], [], False
    for op in graph.operators:
        names = [graph.tensors[i].name.decode() for i in op.outputs]
        if names and names[0].startswith(network_scope):
            seen_network = True
            network_tensors += [i for i in op.outputs if calibration.has_range(graph.tensors[i])]
            continue
        float_nodes += names
        if seen_network:
            for i in op.outputs:
                graph.tensors[i].quantization = None
    if not seen_network:
        raise RuntimeError("no op of the network %r found in the calibrated graph" % network_scope)
    return float_nodes, network_tensors


def keep_nms_float(model, calibrated, samples, network_scope):
    """Marks the NMS and everything computed from its results float in a calibrated `schema_fb.ModelT`
    (in place), and sets the ranges of the rest for a full-integer file.

    The input takes the range 0..255, so that the quantised file reads uint8 pixels at scale 1 (what
    MediaPipe and the Task Library feed a uint8 input). The network and the scores keep the ranges
    of the calibration pictures. The box decoding (the tensors between the network's box outputs
    and the NMS) takes its ranges from the anchors that score at least `BOX_RANGE_MIN_SCORE` only (a
    picture's `BOX_RANGE_TOP_K` best where none does; `calibration.box_ranges`): over every anchor,
    exp(box delta) of hopeless anchors reaches thousands of pixels, 1e37 or inf, and a range that
    holds them leaves a few steps of the 256 for the boxes that matter (on the shapes data that cost
    3 AP points) or no valid int8 scale at all; such boxes saturate instead. A calibration picture
    on which even those anchors reach beyond `BOX_RANGE_LIMIT` input sizes (a picture that drives
    the network out of its range) is left out of the box ranges, with a warning.

    Returns (names of the output tensors of the float ops, for `mlir_quantize`'s denylist; indices of
    the network's quantised tensors with a range, for `calibration.mean_ranges`).
    """
    from efficientdet_tf.export import calibration
    from efficientdet_tf.export.tflite_graph import builtin_name

    graph = model.subgraphs[0]
    after_nms, float_nodes, network, producer, nms = set(), [], [], {}, None
    for op in graph.operators:
        if builtin_name(model, op).startswith("NON_MAX_SUPPRESSION") or after_nms.intersection(op.inputs):
            nms = nms or op
            after_nms.update(op.outputs)
            float_nodes += [graph.tensors[i].name.decode() for i in op.outputs]
            for i in op.outputs:
                graph.tensors[i].quantization = None
            continue
        for i in op.outputs:
            producer[i] = op
        if graph.tensors[op.outputs[0]].name.decode().startswith(network_scope):
            network += [i for i in op.outputs if calibration.has_range(graph.tensors[i])]
    if nms is None:
        raise RuntimeError("no NMS op found in the calibrated graph")
    # The box branch: back from the NMS's boxes to the network's outputs.
    boxes, frontier = set(), [int(nms.inputs[0])]
    while frontier:
        i = frontier.pop()
        op = producer.get(i)
        if i in boxes or op is None or graph.tensors[i].name.decode().startswith(network_scope):
            continue
        boxes.add(i)
        frontier += [int(j) for j in op.inputs if j >= 0]
    boxes = [i for i in boxes if calibration.has_range(graph.tensors[i])]
    rest = [i for i in producer if i not in network and i not in boxes and calibration.has_range(graph.tensors[i])]
    ranges = calibration.finite_ranges(calibrated, rest, samples)
    size = max(graph.tensors[graph.inputs[0]].shape[1:3])
    box, skipped = calibration.box_ranges(calibrated, boxes, samples, int(nms.inputs[1]), BOX_RANGE_MIN_SCORE,
                                          BOX_RANGE_TOP_K, BOX_RANGE_LIMIT * float(size))
    if skipped:
        logging.warning("full_int8: %d of %d calibration pictures drive the box decoding beyond %dx the input "
                        "size; the box ranges come from the other %d", skipped, len(samples), BOX_RANGE_LIMIT,
                        len(samples) - skipped)
    ranges.update(box)
    for i, (low, high) in ranges.items():
        graph.tensors[i].quantization.min, graph.tensors[i].quantization.max = [low], [high]
    pixels = graph.tensors[graph.inputs[0]].quantization
    pixels.min, pixels.max = [0.0], [255.0]
    return float_nodes, network


def quantize_network(model, float_nodes, input_type=tf.float32):
    """TFLite bytes of the calibrated `model` quantised except `float_nodes`, float tail cleaned up
    (`tflite_graph.clean_float_tail`); `input_type` tf.uint8 makes the input uint8 (full_int8)."""
    import flatbuffers
    from tensorflow.lite.python import convert

    from efficientdet_tf.export.tflite_graph import clean_float_tail

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return clean_float_tail(convert.mlir_quantize(bytes(builder.Output()), input_data_type=input_type,
                                                 denylisted_nodes=float_nodes))
