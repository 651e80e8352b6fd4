"""The one place that decides what happens to bad pictures and bad boxes during conversion."""

import io
import math
import os

from PIL import Image, ImageOps

from efficientdet_tf.data.pictures import displayed_size, exif_orientation, to_rgb

JPEG_QUALITY = 95
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image_size(path):
    """Returns (width, height) as viewers show the picture (EXIF orientation applied), or None
    when it cannot be read."""
    try:
        with Image.open(path) as image:
            return displayed_size(image)
    except _READ_ERRORS:
        return None


def load_image_as_jpeg(path, report, annotated_size=None):
    """Reads a picture and returns (jpeg_bytes, width, height), or None when it must be skipped.

    RGB JPEG files without an EXIF rotation are kept byte for byte. Anything else is converted to
    an RGB JPEG by `efficientdet_tf.data.pictures.to_rgb` (16-bit grayscale scaled as TensorFlow
    does, transparency on white, CMYK/palette through Pillow) and counted as `image_converted`.

    EXIF orientation: TensorFlow's decoder ignores it, so a rotated JPEG kept as it is would be
    trained on sideways. The pixels are rotated to the displayed orientation (counted as
    `image_exif_rotated`) unless `annotated_size` ((width, height) from the annotation file) is
    the stored picture's size and not the displayed one: then the boxes were drawn on the stored
    pixels, which are kept (counted as `image_exif_ignored`).

    A missing or unreadable file is counted (`image_missing_skipped` / `image_unreadable_skipped`)
    and gives None.
    """
    name = os.path.basename(path)
    if not os.path.isfile(path):
        report.add("image_missing_skipped", path)
        return None
    try:
        with Image.open(path) as image:
            image.load()  # decode fully: a truncated file must fail here, not in training
            orientation = exif_orientation(image)
            if orientation != 1:
                stored, shown = image.size, displayed_size(image)
                if annotated_size and tuple(annotated_size) == stored and shown != stored:
                    report.add("image_exif_ignored", "%s (orientation %d; annotated as stored, %dx%d)"
                               % (name, orientation, stored[0], stored[1]))
                else:
                    report.add("image_exif_rotated", "%s (orientation %d)" % (name, orientation))
                    rotated = ImageOps.exif_transpose(image)
                    return _to_rgb_jpeg(rotated), rotated.width, rotated.height
            if image.format == "JPEG" and image.mode == "RGB":
                with open(path, "rb") as f:
                    return f.read(), image.width, image.height
            report.add("image_converted", "%s (%s %s)" % (name, image.format, image.mode))
            return _to_rgb_jpeg(image), image.width, image.height
    except _READ_ERRORS as error:
        report.add("image_unreadable_skipped", "%s (%s)" % (path, error))
        return None


def _to_rgb_jpeg(image):
    """Encodes a decoded picture of any mode as an RGB JPEG."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def clean_box(bbox, width, height, report, where=""):
    """Checks one COCO box [x, y, w, h] (pixels) against a width x height picture.

    Returns the box clipped to the picture as [x, y, w, h], or None when it must be skipped.
    Clipping is counted as `box_clipped`; skips are counted by reason. `where` names the box in
    the report (file and annotation id).
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        report.add("box_invalid_skipped", "%s %r" % (where, bbox))
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        report.add("box_invalid_skipped", "%s %r" % (where, bbox))
        return None
    if w <= 0 or h <= 0:
        report.add("box_empty_skipped", "%s %r" % (where, bbox))
        return None
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        return [x, y, w, h]  # untouched: recomputing w from x + w would add rounding noise
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        report.add("box_outside_skipped", "%s %r in %dx%d" % (where, bbox, width, height))
        return None
    report.add("box_clipped", "%s %r in %dx%d" % (where, bbox, width, height))
    return [x0, y0, x1 - x0, y1 - y0]
