"""The TFLite runtime: an exported detection `.tflite` file on pictures of any size (letterboxed)."""

import os

import numpy as np

from efficientdet_tf.ops.letterbox import IMAGENET_PAD_RGB, letterbox, pad_rgb_for
from efficientdet_tf.runtime.base import BaseDetector, LoadError

class TFLiteDetector(BaseDetector):
    """Runs an exported detection TFLite file on pictures of any size.

    Letterboxes each picture to the file's fixed input (see `letterbox`) and maps the boxes (the
    file gives fractions of its input) back to the picture's own pixels. The padding colour is the
    model's mean colour: `pad_rgb_for(config)` when `config` is given (the file does not record
    which model it holds), else `pad_rgb` (`ops.letterbox.IMAGENET_PAD_RGB` for D0-D7x,
    `LITE_PAD_RGB` for the lite models). `backend`: the interpreter, 'litert' or 'tensorflow'
    (default: LiteRT when `ai_edge_litert` is installed; see `efficientdet_tf.litert`).
    """

    kind = "tflite"

    def __init__(self, path, config=None, num_threads=None, pad_rgb=None, backend=None):
        from efficientdet_tf.litert import make_interpreter

        path = os.fspath(path)
        try:
            self.interpreter = make_interpreter(model_path=path, num_threads=num_threads, backend=backend)
            self.runner = self.interpreter.get_signature_runner("serving_default")
        except (ValueError, RuntimeError) as e:
            raise LoadError("cannot open the TFLite file %s: %s" % (path, str(e).strip().splitlines()[0]))
        details = self.runner.get_input_details()
        if "images" not in details:
            raise LoadError("%s is not a detection TFLite file (its input is %s, not images)"
                            % (path, ", ".join(details)))
        shape = details["images"]["shape"]
        self.input_size = (int(shape[1]), int(shape[2]))
        self.pad_rgb = pad_rgb or (pad_rgb_for(config) if config is not None else IMAGENET_PAD_RGB)
        # The file does not record its class count: the config (from --model_name / --hparams) says it.
        super().__init__(config, "TFLite %s" % path, config.num_classes if config is not None else None)

    def _detect_batch(self, images):
        outputs = []
        for image in images:
            canvas, scale = letterbox(image, self.input_size, self.pad_rgb)
            out = self.runner(images=canvas[None])
            height, width = self.input_size
            pixels = out["detection_boxes"] * np.array([height, width, height, width], np.float32)
            outputs.append(dict(out, detection_boxes=pixels / scale))
        return {key: np.concatenate([out[key] for out in outputs]) for key in outputs[0]}
