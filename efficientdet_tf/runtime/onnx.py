"""The ONNX Runtime runtime: an exported `.onnx` file, end to end or network only (needs the onnx extra)."""

import json
import os

from efficientdet_tf.inference import ONNX_CONFIG_KEY as CONFIG_KEY, ONNX_INSTALL_HINT as INSTALL_HINT
from efficientdet_tf.runtime.base import BaseDetector, LoadError


def import_onnxruntime():
    """onnxruntime, or a one-line LoadError that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise LoadError("ONNX files need onnxruntime, which is not installed: %s" % INSTALL_HINT) from None
    return onnxruntime


def session_options(num_threads=None):
    """ONNX Runtime session options: all graph optimisations, `num_threads` intra-op threads (default all)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    return options


class OnnxDetector(BaseDetector):
    """Runs an exported `.onnx` file with ONNX Runtime (CPU unless `providers` says otherwise).

    An end-to-end file (input `images`) runs as it is: preprocessing, network and NMS are inside.
    A network-only file (input `normalized_images`, from `--onnx_network_only`) gets the model's
    preprocessing and post-processing around it, run by TensorFlow, so it answers the same call.
    The model's Config comes from the file's metadata; `config` replaces it and `hparams` apply on
    top (for example eval settings); the network and its NMS are the file's own.
    """

    kind = "onnx"

    def __init__(self, path, config=None, hparams=None, num_threads=None, providers=None):
        from efficientdet_tf.config import Config

        ort = import_onnxruntime()
        path = os.fspath(path)
        try:
            self.session = ort.InferenceSession(path, session_options(num_threads),
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise LoadError("cannot open the ONNX file %s: %s" % (path, str(e).strip().splitlines()[0]))
        meta = self.session.get_modelmeta().custom_metadata_map
        stored = Config(json.loads(meta[CONFIG_KEY])) if CONFIG_KEY in meta else None
        inputs = [i.name for i in self.session.get_inputs()]
        self.network_only = inputs == ["normalized_images"]
        if not self.network_only and inputs != ["images"]:
            raise LoadError("%s is not an EfficientDet ONNX file (inputs %s, expected images or "
                            "normalized_images)" % (path, ", ".join(inputs)))
        config = config or stored
        if config is None:
            raise LoadError("%s carries no EfficientDet config: give --model_name" % path)
        if hparams:
            config = config.replace(hparams)
        self.output_names = [o.name for o in self.session.get_outputs()]
        super().__init__(config, "ONNX %s" % path, (stored or config).num_classes)
        if self.network_only:
            self._wrap_network(stored or config, path)

    def _wrap_network(self, network_config, path):
        import tensorflow as tf

        from efficientdet_tf import factory

        side = self.session.get_inputs()[0].shape[1]
        if isinstance(side, int) and side != network_config.image_size:
            raise LoadError("%s takes %dx%d inputs but the config says image_size %d"
                            % (path, side, side, network_config.image_size))
        self._preprocess = tf.function(factory.build_preprocessor(network_config))
        postprocess = factory.build_postprocess_fn(network_config)
        # A lambda, so the anchors stay constants of the graph rather than traced arguments.
        self._postprocess = tf.function(lambda classes, boxes, scales: postprocess(classes, boxes, scales))
        levels = range(network_config.min_level, network_config.max_level + 1)
        self._class_names = ["class_outputs_p%d" % level for level in levels]
        self._box_names = ["box_outputs_p%d" % level for level in levels]

    def _detect_batch(self, images):
        if not self.network_only:
            return dict(zip(self.output_names, self.session.run(None, {"images": images})))
        inputs, scales = self._preprocess(images)
        raw = dict(zip(self.output_names, self.session.run(None, {"normalized_images": inputs.numpy()})))
        outputs = self._postprocess([raw[n] for n in self._class_names], [raw[n] for n in self._box_names], scales)
        return {key: value.numpy() for key, value in outputs.items()}
