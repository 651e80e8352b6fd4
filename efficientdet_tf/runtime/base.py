"""What every runtime's detector shares: input checks and one call for a picture, a batch or a list."""

import numpy as np

from efficientdet_tf.ops.postprocess import OUTPUT_KEYS


class LoadError(ValueError):
    """A detector that cannot be opened (missing file, wrong kind, missing runtime), in one line."""


def check_pictures(images):
    """Returns `images` as a uint8 array [B, H, W, 3] or [H, W, 3]; raises a one-line error otherwise."""
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError("expected uint8 RGB [H, W, 3] or [B, H, W, 3], got shape %s" % (images.shape,))
    if images.dtype != np.uint8:
        raise TypeError("expected uint8 pixels, got %s (convert with np.clip(x, 0, 255).astype(np.uint8))"
                        % images.dtype)
    if min(images.shape[-3:-1]) < 1:
        raise ValueError("empty picture of shape %s" % (images.shape,))
    return images


class BaseDetector:
    """A detector on uint8 RGB pictures, whatever runs it.

    Calling it takes one picture [H, W, 3], a same-size batch [B, H, W, 3] or a list of pictures of
    any sizes, and returns numpy arrays with the keys of the SavedModel's `serving_default`:
    detection_boxes float32 [B, M, 4] ([ymin, xmin, ymax, xmax] in each picture's own pixels),
    detection_scores float32 [B, M], detection_classes int32 [B, M] (1-based ids, 0 = padding),
    num_detections int32 [B]; without the batch axis for a single picture.

    Attributes: `kind` (keras, saved_model, tflite, onnx), `description` (what was opened, in
    words), `config` (the model's Config; for files that carry their own network and NMS it gives
    only the data and eval settings), `num_classes` (what the model predicts, None when unknown).
    Subclasses implement `_detect_batch(uint8 [B, H, W, 3]) -> dict of [B, ...] arrays`.
    """

    kind = ""

    def __init__(self, config, description, num_classes=None):
        self.config = config
        self.description = description
        self.num_classes = num_classes

    def __call__(self, images):
        """Detects objects in one picture, a same-size batch, or a list of pictures (see the class)."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("an empty list of pictures")
            pictures = [check_pictures(image) for image in images]
            if any(p.ndim != 3 for p in pictures):
                raise ValueError("a list holds single pictures [H, W, 3]")
            if len({p.shape for p in pictures}) == 1:
                return self._finish(self._detect_batch(np.stack(pictures)))
            parts = [self._detect_batch(p[None]) for p in pictures]
            return self._finish({key: np.concatenate([part[key] for part in parts]) for key in OUTPUT_KEYS})
        images = check_pictures(images)
        if images.ndim == 3:
            return {key: value[0] for key, value in self._finish(self._detect_batch(images[None])).items()}
        return self._finish(self._detect_batch(images))

    @staticmethod
    def _finish(outputs):
        out = {key: np.asarray(outputs[key]) for key in OUTPUT_KEYS}
        out["detection_classes"] = out["detection_classes"].astype(np.int32)
        out["num_detections"] = out["num_detections"].astype(np.int32)
        out["detection_boxes"] = out["detection_boxes"].astype(np.float32)
        out["detection_scores"] = out["detection_scores"].astype(np.float32)
        return out

    def _detect_batch(self, images):
        raise NotImplementedError

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.description)
