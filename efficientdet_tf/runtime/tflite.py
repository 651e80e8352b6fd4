"""The TFLite runtime: an exported detection `.tflite` file on pictures of any size (letterboxed)."""

import os

import numpy as np

from efficientdet_tf.runtime.base import BaseDetector, LoadError

# Letterbox padding in the input's mean colour normalises to (about) zero, which is what the
# reference preprocessing pads with; black padding would show the network a dark border.
IMAGENET_PAD_RGB = (124, 116, 104)
LITE_PAD_RGB = (127, 127, 127)


def pad_rgb_for(config):
    """The letterbox padding colour of a model: its normalisation mean, rounded."""
    from efficientdet_tf import factory

    return tuple(int(round(m)) for m in factory.normalization(config)[0])


def letterbox(image, size, pad_rgb=IMAGENET_PAD_RGB):
    """Fits a uint8 picture [H, W, 3] into size = (height, width) keeping its aspect ratio.

    Bilinear resize (no antialias) to floor(H * scale) x floor(W * scale) with scale =
    min(height / H, width / W), then padding bottom/right with `pad_rgb`. Returns (uint8 [height,
    width, 3], scale); boxes found on the letterboxed picture divided by `scale` are in the
    picture's own pixels.
    """
    import tensorflow as tf

    image = np.asarray(image)
    scale = min(size[0] / image.shape[0], size[1] / image.shape[1])
    new_h, new_w = max(int(image.shape[0] * scale), 1), max(int(image.shape[1] * scale), 1)
    resized = tf.image.resize(image, (new_h, new_w), method="bilinear", antialias=False)
    canvas = np.empty((size[0], size[1], 3), np.uint8)
    canvas[...] = pad_rgb
    canvas[:new_h, :new_w] = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    return canvas, scale


class TFLiteDetector(BaseDetector):
    """Runs an exported detection TFLite file on pictures of any size.

    Letterboxes each picture to the file's fixed input (see `letterbox`) and maps the boxes back
    to the picture's own pixels. The padding colour is the model's mean colour: `pad_rgb_for(config)`
    when `config` is given (the file does not record which model it holds), else `pad_rgb`
    (`IMAGENET_PAD_RGB` for D0-D7x, `LITE_PAD_RGB` for the lite models).
    """

    kind = "tflite"

    def __init__(self, path, config=None, num_threads=None, pad_rgb=None):
        import tensorflow as tf

        path = os.fspath(path)
        try:
            self.interpreter = tf.lite.Interpreter(model_path=path, num_threads=num_threads or os.cpu_count())
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
            outputs.append(dict(out, detection_boxes=out["detection_boxes"] / scale))
        return {key: np.concatenate([out[key] for out in outputs]) for key in outputs[0]}
