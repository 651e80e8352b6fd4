"""Label maps: {1-based id: class name}, as YAML or JSON files beside the TFRecords."""

import yaml


def label_map_path(output_prefix):
    """Where a converter writes the label map for `output_prefix`."""
    return output_prefix + "_label_map.yaml"


def write_label_map(path, categories):
    """Writes {id: name} as YAML from COCO categories (list of {'id', 'name'})."""
    mapping = {int(c["id"]): str(c["name"]) for c in categories}
    with open(path, "w") as f:
        yaml.safe_dump(dict(sorted(mapping.items())), f, sort_keys=False, allow_unicode=True)


def load_label_map(path):
    """Reads a label map file (YAML or JSON {id: name}) and returns {int id: name}."""
    with open(path) as f:
        data = yaml.safe_load(f)  # JSON is valid YAML
    if not isinstance(data, dict):
        raise ValueError("%s: a label map must map ids to names, got %s" % (path, type(data).__name__))
    mapping = {int(k): str(v) for k, v in data.items()}
    if any(k < 1 for k in mapping):
        raise ValueError("%s: label ids must be 1-based (id 0 is not a class)" % path)
    return mapping
