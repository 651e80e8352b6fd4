"""Inference graphs: preprocess, network and NMS as TensorFlow functions (the runtimes and exports use them)."""

from efficientdet_tf import factory

# The ONNX exporter stores the model's Config (JSON) under this metadata key, so the file says what
# it holds; the ONNX runtime reads it back.
ONNX_CONFIG_KEY = "efficientdet_tf.config"
ONNX_INSTALL_HINT = "pip install 'efficientdet_tf[onnx]'"
# The same for OpenVINO files: the Config's place in the model's runtime info.
OPENVINO_CONFIG_KEY = ("efficientdet_tf", "config")
OPENVINO_INSTALL_HINT = "pip install 'efficientdet_tf[openvino]'"


def raw_output_dict(network, config, inputs):
    """The network's raw outputs on normalised inputs, named class_outputs_p3 ... box_outputs_p7."""
    class_outputs, box_outputs = network(inputs, training=False)
    names = ["%s_outputs_p%d" % (kind, level) for kind in ("class", "box")
             for level in range(config.min_level, config.max_level + 1)]
    return dict(zip(names, list(class_outputs) + list(box_outputs)))


def detect_normalised(network, config, inputs, image_scales, runtime="tensorflow"):
    """Runs the network on preprocessed inputs and post-processes (see `postprocess.postprocess`);
    `runtime` is where the graph will run (see `factory.build_postprocess_fn`)."""
    class_outputs, box_outputs = network(inputs, training=False)
    return factory.build_postprocess_fn(config, runtime=runtime)(list(class_outputs), list(box_outputs), image_scales)


def detect_images(network, config, images, runtime="tensorflow"):
    """uint8 [B, H, W, 3] pictures of one size -> detection dict in original-picture pixels."""
    inputs, image_scales = factory.build_preprocessor(config)(images)
    return detect_normalised(network, config, inputs, image_scales, runtime)
