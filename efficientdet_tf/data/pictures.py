"""Picture files to RGB the same way everywhere: dataset conversion, efficientdet-infer, the demo.

One rule for every path, so that training sees what serving sees:
- 16-bit grayscale is scaled to 8 bits as TensorFlow's decoder does (value >> 8), not clipped;
- transparent pixels are composited on white (the serving graph's decoder does the same);
- CMYK, palette and other modes go through Pillow's conversion (no colour profile is applied);
- EXIF orientation is applied when `orientation` says so (see `load_rgb`).
"""

import errno

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def exif_orientation(image):
    """The EXIF orientation (1..8) of an opened picture; 1 when it has none."""
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def displayed_size(image):
    """(width, height) as viewers show the picture, EXIF orientation applied."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in (5, 6, 7, 8) else (width, height)


def to_rgb(image):
    """A decoded Pillow picture of any mode as an RGB picture (the rules in the module docstring)."""
    if image.mode in _SIXTEEN_BIT:
        # Pillow's convert() clips 16-bit values at 255 (a ramp becomes almost white).
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path, apply_orientation=True):
    """Reads a picture file as uint8 RGB [H, W, 3], EXIF orientation applied (by default).

    Raises what Pillow raises for a missing or unreadable file (OSError, ValueError, ...).
    """
    with Image.open(path) as image:
        image.load()
        if apply_orientation and exif_orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        return np.asarray(to_rgb(image))


# The machine, not the file: these stop a run instead of skipping the picture.
_RESOURCE_ERRNOS = (errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOSPC)


def read_picture(path):
    """`load_rgb` for tools that skip unreadable files: (uint8 picture, None) or (None, why, in one line).

    MemoryError and resource errors (out of memory, file handles or disk) are raised: they are
    not the file's fault, and skipping every following picture for them would lose the run.
    """
    try:
        return load_rgb(path), None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for a bad file; each is one skipped file
        if isinstance(e, OSError) and e.errno in _RESOURCE_ERRNOS:
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, "%s: %s" % (type(e).__name__, reason)
