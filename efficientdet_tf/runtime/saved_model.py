"""The SavedModel runtime: an exported model's `serving_default` (its own preprocessing, network and NMS)."""

import os

from efficientdet_tf.runtime.base import BaseDetector, LoadError


def find_saved_model(path):
    """The SavedModel folder at `path` (or its highest numeric version sub-folder), else None."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [d for d in os.listdir(path) if d.isdigit()
                    and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
        if versions:
            return os.path.join(path, max(versions, key=int))
    return None


def _class_count(loaded):
    """Class count of an exported EfficientDet from its `predict_raw` output shapes, else None."""
    raw = loaded.signatures.get("predict_raw")
    if raw is None:
        return None
    outputs = raw.structured_outputs
    class_key = next((k for k in sorted(outputs) if k.startswith("class_outputs")), None)
    box_key = next((k for k in sorted(outputs) if k.startswith("box_outputs")), None)
    if not class_key or not box_key:
        return None
    anchors = outputs[box_key].shape[-1] // 4
    return outputs[class_key].shape[-1] // anchors if anchors else None


def _input_size(loaded):
    """(height, width) of the network's input, from the `predict_raw` signature's input, else None."""
    raw = loaded.signatures.get("predict_raw")
    if raw is None:
        return None
    spec = raw.structured_input_signature[1].get("normalized_images")
    if spec is None or spec.shape.rank != 4 or not spec.shape[1] or not spec.shape[2]:
        return None
    return int(spec.shape[1]), int(spec.shape[2])


class SavedModelDetector(BaseDetector):
    """Runs an exported SavedModel (a version folder, or a base folder of numeric versions)."""

    kind = "saved_model"

    def __init__(self, path, config=None):
        """`config` gives the data and eval settings only (the SavedModel carries the rest)."""
        import tensorflow as tf

        from efficientdet_tf.config import get_config

        folder = find_saved_model(path)
        if not folder:
            raise LoadError("%s holds no saved_model.pb (nor numeric version folders with one)" % path)
        self.loaded = tf.saved_model.load(folder)  # keeps the signature's variables alive
        if "serving_default" not in self.loaded.signatures:
            raise LoadError("SavedModel %s has no serving_default signature" % folder)
        self._serving = self.loaded.signatures["serving_default"]
        super().__init__(config or get_config("efficientdet-d0"), "SavedModel %s" % folder,
                         _class_count(self.loaded))
        self.input_size = _input_size(self.loaded)

    def _detect_batch(self, images):
        import tensorflow as tf

        return {key: value.numpy() for key, value in self._serving(images=tf.constant(images)).items()}
