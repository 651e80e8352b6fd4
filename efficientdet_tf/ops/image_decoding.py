"""Decoding of encoded pictures (JPEG/PNG/GIF/BMP) to uint8 RGB, shared by data, inference and export."""

import tensorflow as tf


def _on_white(image):
    """Colour channels of a gray+alpha or RGBA picture composited on white (as the converters do)."""
    color = tf.cast(image[..., :-1], tf.float32)
    alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
    return tf.cast(tf.round(color * alpha + 255.0 * (1.0 - alpha)), tf.uint8)


def decode_image(encoded, orientation=False):
    """Decodes one encoded picture to uint8 [H, W, 3].

    Grayscale becomes RGB; transparent pixels are composited on white, the same rule as the dataset
    converters (`efficientdet_tf.data.pictures`), so serving sees what training saw. 16-bit PNGs
    are scaled to 8 bits (value >> 8). With `orientation`, a JPEG's EXIF orientation is applied
    (as `efficientdet-infer` and every viewer do; training records need none: the converters
    store pixels as annotated). Empty strings and non-image bytes raise InvalidArgumentError with
    a message that says so.
    """
    with tf.control_dependencies([tf.debugging.assert_greater(
            tf.strings.length(encoded), 0, message="image bytes: empty string, expected JPEG or PNG")]):
        image = tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)
    channels = tf.shape(image)[-1]
    image = tf.cond(tf.equal(channels % 2, 0), lambda: _on_white(image), lambda: image)
    # 1 colour channel (gray) or 3 (RGB): tile the gray one.
    image = tf.tile(image, [1, 1, 3 // tf.shape(image)[-1]])
    if orientation:
        image = apply_orientation(image, jpeg_orientation(encoded))
    image.set_shape([None, None, 3])
    return image


# EXIF lives in an APP1 segment before the image data; APP segments are at most 64 KiB each.
_EXIF_SEARCH_BYTES = 1 << 18
_MAX_SEGMENTS = 32
_MAX_IFD_ENTRIES = 256


def jpeg_orientation(encoded):
    """The EXIF orientation (1..8) of JPEG bytes, read in the graph; 1 for other formats, no EXIF,
    or an EXIF block that does not parse (never an error: a broken tag leaves the picture as stored).

    Walks the JPEG segments to the `Exif` APP1 segment, then the TIFF header (either byte order)
    and IFD0's entries to tag 0x0112, the same tag Pillow's `ImageOps.exif_transpose` reads.
    """
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 0, _EXIF_SEARCH_BYTES), tf.uint8), tf.int32)
    size = tf.shape(head)[0]
    head = tf.concat([head, [-1]], axis=0)  # reads past the end (or of an empty string) give -1

    def byte(i):
        return tf.gather(head, tf.where((i >= 0) & (i < size), i, size))

    def big_endian_16(i):
        return byte(i) * 256 + byte(i + 1)

    exif_header = tf.constant([ord(c) for c in "Exif"] + [0, 0], tf.int32)

    def is_exif_app1(pos):
        tag = tf.stack([byte(pos + 4 + k) for k in range(6)])
        return tf.equal(big_endian_16(pos), 0xFFE1) & tf.reduce_all(tf.equal(tag, exif_header))

    def segment_search(pos, found, step):
        marker_ok = tf.equal(byte(pos), 0xFF) & (byte(pos + 1) >= 0xE0) & (byte(pos + 1) <= 0xFE)
        here = marker_ok & is_exif_app1(pos)
        next_pos = tf.where(marker_ok & ~here, pos + 2 + big_endian_16(pos + 2), pos)
        return next_pos, tf.where(here, pos, found), tf.where(marker_ok & ~here, step + 1, _MAX_SEGMENTS)

    is_jpeg = tf.equal(big_endian_16(0), 0xFFD8)
    _, app1, _ = tf.while_loop(lambda pos, found, step: step < _MAX_SEGMENTS, segment_search,
                               (tf.constant(2), tf.constant(-1), tf.where(is_jpeg, 0, _MAX_SEGMENTS)))
    tiff = app1 + 10
    little = tf.equal(big_endian_16(tiff), 0x4949)  # "II"; "MM" is big-endian

    def u16(i):
        return tf.where(little, byte(i) + byte(i + 1) * 256, big_endian_16(i))

    def u32(i):
        low, high = (u16(i), u16(i + 2))
        return tf.where(little, low + high * 65536, low * 65536 + high)

    ifd = tiff + u32(tiff + 4)
    entries = tf.minimum(u16(ifd), _MAX_IFD_ENTRIES)

    def entry_search(k, value):
        entry = ifd + 2 + 12 * k
        hit = tf.equal(u16(entry), 0x0112) & tf.equal(u16(entry + 2), 3)  # SHORT
        return k + 1, tf.where(hit & tf.equal(value, 0), u16(entry + 8), value)

    _, value = tf.while_loop(lambda k, value: (k < entries) & tf.equal(value, 0), entry_search,
                             (tf.constant(0), tf.constant(0)))
    valid = (app1 >= 0) & (value >= 1) & (value <= 8)
    return tf.where(valid, value, 1)


def apply_orientation(image, orientation):
    """`image` [H, W, C] turned as viewers show a picture of this EXIF orientation (Pillow's
    `exif_transpose`): 2 mirror, 3 half turn, 4 flip, 5 transpose, 6 quarter turn clockwise,
    7 transverse, 8 quarter turn counter-clockwise."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [lambda: image,
                lambda: image[:, ::-1],
                lambda: image[::-1, ::-1],
                lambda: image[::-1],
                lambda: transpose(image),
                lambda: tf.image.rot90(image, 3),
                lambda: transpose(image)[::-1, ::-1],
                lambda: tf.image.rot90(image, 1)]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)
