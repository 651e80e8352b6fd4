"""The OpenVINO runtime: an exported `.xml` (+ `.bin`) file on the CPU (needs the openvino extra)."""

import json
import os

from efficientdet_tf.inference import OPENVINO_CONFIG_KEY as CONFIG_KEY, OPENVINO_INSTALL_HINT as INSTALL_HINT
from efficientdet_tf.runtime.base import BaseDetector, LoadError


class OpenVINODetector(BaseDetector):
    """Runs an exported OpenVINO model (preprocessing, network and NMS inside) on pictures of any size.

    Compiled for the CPU with float32 inference precision: on CPUs with AMX or AVX-512 BF16
    OpenVINO computes in bfloat16 by default, which moved D0's scores in the third digit. The
    model's Config comes from the file's runtime info; `config` replaces it, `hparams` apply on top
    (data and eval settings: the network and its NMS are the file's own).
    """

    kind = "openvino"

    def __init__(self, path, config=None, hparams=None, num_threads=None, device="CPU"):
        from efficientdet_tf.config import Config

        try:
            import openvino as ov
        except ImportError:
            raise LoadError("OpenVINO files need openvino, which is not installed: %s" % INSTALL_HINT) from None
        path = os.fspath(path)
        core = ov.Core()
        try:
            model = core.read_model(path)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own RuntimeError kinds
            raise LoadError("cannot open the OpenVINO file %s: %s" % (path, str(e).strip().splitlines()[0]))
        inputs = [i.get_any_name() for i in model.inputs]
        if inputs != ["images"]:
            raise LoadError("%s is not an EfficientDet OpenVINO file (inputs %s, expected images)"
                            % (path, ", ".join(inputs)))
        stored = None
        if model.has_rt_info(list(CONFIG_KEY)):
            stored = Config(json.loads(model.get_rt_info(list(CONFIG_KEY)).astype(str)))
        config = config or stored
        if config is None:
            raise LoadError("%s carries no EfficientDet config: give --model_name" % path)
        if hparams:
            config = config.replace(hparams)
        properties = {"INFERENCE_PRECISION_HINT": "f32"}
        if num_threads:
            properties["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.compiled = core.compile_model(model, device, properties)
        self.request = self.compiled.create_infer_request()
        super().__init__(config, "OpenVINO %s" % path, (stored or config).num_classes)

    def _detect_batch(self, images):
        results = self.request.infer({"images": images})
        return {output.get_any_name(): value for output, value in results.items()}
