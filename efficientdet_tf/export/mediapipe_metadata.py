"""TFLite Model Metadata for MediaPipe Tasks and the TFLite Task Library, written with MediaPipe's own writer.

The exported file keeps its post-processing (decoding and the model's NMS) inside, so the
runtimes read the four detection outputs as they are (`create_for_models_with_nms`): boxes as
[ymin, xmin, ymax, xmax] fractions of the input, the class as an index into the label file (line 0
is the background, so a class id is its own line), the score, and the count.
"""

import importlib
import sys
import types

# The schema's history (metadata_schema.fbs): the first parser version that reads each field.
_FIELD_VERSIONS = (
    ("1.5.0", lambda sub: any(getattr(s, "customMetadata", None) for s in sub)),
    ("1.2.0", lambda sub: any(s.inputTensorGroups or s.outputTensorGroups for s in sub)),
    ("1.1.0", lambda sub: any(s.inputProcessUnits or s.outputProcessUnits for s in sub)),
)


INSTALL_HINT = "pip install 'efficientdet_tf[edge]'"


class MetadataUnavailable(ImportError):
    """MediaPipe (the `edge` extra) is not installed."""


def available():
    """Whether MediaPipe (the `edge` extra) is installed, so that files get metadata."""
    try:
        _writer()
    except MetadataUnavailable:
        return False
    return True


def _minimum_parser_version(metadata_buffer):
    """The smallest metadata parser version that reads every field the buffer uses.

    MediaPipe 1.2.2's wheel ships the metadata writer without the compiled helper that answers
    this (`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`), so its writer does not
    import; this answers from the version history of the schema for the fields a detector's
    metadata can hold.
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytearray(metadata_buffer), 0))
    subgraphs = metadata.subgraphMetadata or []
    tensors = [t for s in subgraphs for t in (s.inputTensorMetadata or []) + (s.outputTensorMetadata or [])]
    files = list(metadata.associatedFiles or []) + [f for t in tensors for f in (t.associatedFiles or [])]
    for version, uses in _FIELD_VERSIONS:
        if uses(subgraphs):
            return version
    if any(getattr(f, "version", None) for f in files):
        return "1.4.1"
    if any(f.type == fb.AssociatedFileType.VOCABULARY for f in files):
        return "1.0.1"
    return "1.0.0"


def _writer():
    """MediaPipe's object-detector metadata writer module (its missing compiled helper stood in)."""
    name = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    try:
        importlib.import_module("mediapipe.tasks.python.core.mediapipe_c_bindings")
    except ImportError as e:
        raise MetadataUnavailable("mediapipe is not installed (%s): %s" % (INSTALL_HINT, e)) from None
    try:
        importlib.import_module(name)
    except ImportError:
        helper = types.ModuleType(name)
        helper.GetMinimumMetadataParserVersion = _minimum_parser_version
        parent = None
        parts = name.split(".")
        for depth in range(3, len(parts) + 1):  # mediapipe.tasks.cc ... down to the helper
            module_name = ".".join(parts[:depth])
            module = sys.modules.get(module_name)
            if module is None:
                module = helper if depth == len(parts) else types.ModuleType(module_name)
                if module is not helper:
                    module.__path__ = []
                sys.modules[module_name] = module
            setattr(parent or sys.modules[".".join(parts[:2])], parts[depth - 1], module)
            parent = module
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, object_detector

    return metadata_writer, object_detector


def label_lines(label_map, num_classes):
    """The label file's lines: line i names class id i; line 0 (background) and ids without a name
    are '???', as in the label files of the TFLite detection models. `label_map`: {id: name} or None
    (numbered names 'class_<id>')."""
    label_map = label_map or {}
    return ["???"] + [str(label_map.get(i, "class_%d" % i if not label_map else "???"))
                      for i in range(1, int(num_classes) + 1)]


def add_metadata(model_content, label_map, num_classes, model_name="EfficientDet"):
    """`model_content` (bytes of a detection TFLite file with uint8 pictures in and the four
    outputs in the order boxes, classes, scores, count) with MediaPipe's detector metadata.

    Raises:
      MetadataUnavailable: without MediaPipe.
    """
    metadata_writer, object_detector = _writer()
    labels = metadata_writer.Labels().add(label_lines(label_map, num_classes))
    # What `create_for_models_with_nms` does, with our own name and description.
    writer = metadata_writer.MetadataWriter(bytearray(model_content))
    writer.add_general_info(model_name, "EfficientDet object detector (efficientdet_tf): decoding and NMS "
                            "inside; boxes are fractions of the input.")
    # uint8 input: the pixels go in as they are (the normalisation is inside the file).
    writer.add_image_input([0.0], [1.0])
    writer.add_detection_output(labels)
    content, _ = object_detector.MetadataWriter(writer).populate()
    del writer  # its temporary folder goes now, not at interpreter exit (where its cleanup fails)
    return bytes(content)


def read_metadata(model_content):
    """The metadata of a TFLite file as JSON text, or None when it has none."""
    _writer()
    from mediapipe.tasks.python.metadata import metadata

    try:
        displayer = metadata.MetadataDisplayer.with_model_buffer(bytearray(model_content))
    except ValueError:
        return None
    return displayer.get_metadata_json()
