"""The tf.Example feature keys of a detection record, spelled once for readers and writers alike.

Coordinates are normalised to [0, 1]; labels are 1-based ids (see docs/conventions.md).
"""

ENCODED = "image/encoded"
FORMAT = "image/format"
SOURCE_ID = "image/source_id"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMAX = "image/object/bbox/ymax"
BBOX_XMAX = "image/object/bbox/xmax"
CLASS_LABEL = "image/object/class/label"
CLASS_TEXT = "image/object/class/text"
AREA = "image/object/area"
IS_CROWD = "image/object/is_crowd"

# Box coordinate keys in the package's box order [ymin, xmin, ymax, xmax].
BBOX_KEYS = (BBOX_YMIN, BBOX_XMIN, BBOX_YMAX, BBOX_XMAX)
