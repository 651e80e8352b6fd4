"""Hyper-parameters: load the packaged hparams yaml files, apply overrides, validate against the schema."""

import copy
import difflib
import importlib.resources
import os

import yaml

from efficientdet_tf.config import schema


def _hparams_files():
    """The packaged hparams folder (`efficientdet_tf.hparams`, the repository's `hparams/`)."""
    return importlib.resources.files("efficientdet_tf.hparams")


def _read_hparams(file_name):
    entry = _hparams_files().joinpath(file_name)
    return yaml.safe_load(entry.read_text()) if entry.is_file() else None


def model_names():
    """Names of the models that have an hparams file, e.g. 'efficientdet-d0'."""
    return sorted(entry.name[:-5] for entry in _hparams_files().iterdir()
                  if entry.name.startswith("efficientdet-") and entry.name.endswith(".yaml"))


# Sections that, besides the top-level keys, define the network's weights and outputs.
NETWORK_SECTIONS = ("anchors",)


class ConfigError(ValueError):
    """A bad model name, override key or override value."""


class Config:
    """Nested hyper-parameters as plain data with attribute access.

    `cfg.fpn_num_filters`, `cfg.nms.sigma` and `cfg["nms"]["sigma"]` all work; `as_dict()` returns
    a deep copy of the underlying dict (what `get_config()` of the model stores).
    """

    def __init__(self, data):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_sections", {})

    def __getattr__(self, key):
        try:
            value = self._data[key]
        except KeyError:
            raise AttributeError(_unknown_key_message(key, self._data)) from None
        if not isinstance(value, dict):
            return value
        if key not in self._sections:
            # A typed, read-only view (config.schema); built on first use so that a stored config of an
            # older version still opens for the parts it has.
            self._sections[key] = schema.SECTIONS[key](**copy.deepcopy(value))
        return self._sections[key]

    def __getitem__(self, key):
        return self.__getattr__(key)

    def __setattr__(self, key, value):
        raise AttributeError("Config is read-only; use get_config(..., overrides=...) or .replace()")

    def __contains__(self, key):
        return key in self._data

    def __eq__(self, other):
        return isinstance(other, Config) and self._data == other._data

    def __repr__(self):
        return "Config(%r)" % (self._data,)

    def as_dict(self):
        return copy.deepcopy(self._data)

    def network_dict(self):
        """The keys that define the network (top-level keys and `anchors`): what a .keras file stores."""
        return {key: copy.deepcopy(value) for key, value in self._data.items()
                if key in NETWORK_SECTIONS or not isinstance(value, dict)}

    def replace(self, overrides):
        """Returns a new Config with `overrides` (string, dict or yaml path) applied and validated."""
        data = self.as_dict()
        _apply(data, _parse_overrides(overrides), prefix="")
        _validate(data)
        return Config(data)


def _unknown_key_message(key, section, prefix=""):
    full = prefix + key
    # Section keys are offered too, by their bare name, and suggested in full ('loss.alpha').
    candidates = {name: name for name in section}
    if not prefix:
        candidates.update({sub: "%s.%s" % (name, sub) for name, value in section.items()
                           if isinstance(value, dict) for sub in value if sub not in section})
    near = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    hint = " (did you mean '%s%s'?)" % (prefix, candidates[near[0]]) if near else ""
    return "unknown hparam '%s'%s" % (full, hint)


def _parse_scalar(text):
    value = yaml.safe_load(text) if text.strip() else ""
    return value


def _parse_overrides(overrides):
    """Turns a 'a=1,b.c=x' string, a dict or a yaml file path into a nested dict."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, Config):
        return overrides.as_dict()
    if isinstance(overrides, dict):
        nested = {}
        for key, value in overrides.items():
            _set_dotted(nested, key, value)
        return nested
    if not isinstance(overrides, str):
        raise ConfigError("overrides must be a string, dict or yaml path, got %s" % type(overrides).__name__)
    # "eval.label_map=x.yaml" is an override string, not a file: a file path holds no "=".
    if overrides.endswith((".yaml", ".yml")) and "=" not in overrides:
        if not os.path.isfile(overrides):
            raise ConfigError("hparams file not found: %s" % overrides)
        with open(overrides) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("hparams file %s does not hold a mapping" % overrides)
        return _parse_overrides(loaded)
    nested = {}
    # Split on commas that start a new "key=" pair, so list values like "aspect_ratios=[1.0,2.0]" survive.
    parts, current = [], ""
    for piece in overrides.split(","):
        if "=" in piece.split("[")[0] or not current:
            if current:
                parts.append(current)
            current = piece
        else:
            current += "," + piece
    if current:
        parts.append(current)
    for part in parts:
        if "=" not in part:
            raise ConfigError("bad override '%s': expected key=value" % part.strip())
        key, value = part.split("=", 1)
        _set_dotted(nested, key.strip(), _parse_scalar(value))
    return nested


def _set_dotted(nested, key, value):
    parts = key.split(".")
    node = nested
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if isinstance(value, dict):
        node = node.setdefault(parts[-1], {})
        for k, v in value.items():
            _set_dotted(node, k, v)
    else:
        node[parts[-1]] = value


def _type_ok(expected, value):
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if expected is list:
        return isinstance(value, (list, tuple))
    return True


def _section_of(key, data):
    """The one section that holds `key` (so a bare `alpha=...` means `loss.alpha=...`), or None."""
    owners = [name for name, value in data.items() if isinstance(value, dict) and key in value]
    if len(owners) > 1:
        raise ConfigError("hparam '%s' is ambiguous: say %s" % (
            key, " or ".join("%s.%s" % (owner, key) for owner in owners)))
    return owners[0] if owners else None


def _apply(data, overrides, prefix):
    for key, value in overrides.items():
        if key not in data and not prefix and _section_of(key, data):
            _apply(data, {_section_of(key, data): {key: value}}, prefix)
            continue
        if key not in data:
            raise ConfigError(_unknown_key_message(key, data, prefix))
        default = data[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError("hparam '%s%s' is a section; set its keys, e.g. %s%s.%s=..."
                                  % (prefix, key, prefix, key, next(iter(default))))
            _apply(default, value, prefix + key + ".")
            continue
        expected = schema.field_types(prefix[:-1] or None).get(key, type(default))
        if not _type_ok(expected, value):
            raise ConfigError("hparam '%s%s' expects %s, got %r" % (prefix, key, expected.__name__, value))
        if expected is float:
            value = float(value)
        data[key] = list(value) if isinstance(value, tuple) else value


def _validate(data):
    unknown = sorted(set(data) - {f for f in schema.field_types(None)} - set(schema.SECTIONS))
    if unknown:
        raise ConfigError("unknown hparam '%s'" % unknown[0])
    try:
        schema.check(None, {k: v for k, v in data.items() if not isinstance(v, dict)}, prefix="")
        for section in schema.SECTIONS:
            if section is not None:
                schema.check(section, data[section], prefix=section + ".")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if data["anchors"]["num_scales"] < 1 or not data["anchors"]["aspect_ratios"]:
        raise ConfigError("hparams need anchors.num_scales >= 1 and at least one anchors.aspect_ratios entry")
    if data["num_classes"] < 1:
        raise ConfigError("hparam 'num_classes' must be >= 1 (the number of 1-based label ids)")
    if not 1 <= data["min_level"] <= data["max_level"]:
        raise ConfigError("hparams need 1 <= min_level <= max_level")
    if data["image_size"] % (2 ** data["max_level"]) and data["image_size"] < 2 ** data["max_level"]:
        raise ConfigError("image_size %d is smaller than the coarsest level's stride" % data["image_size"])


def get_config(name_or_yaml_path="efficientdet-d0", overrides=None):
    """Builds the hyper-parameters of one model.

    Args:
      name_or_yaml_path: a model name ('efficientdet-d0' ... 'efficientdet-d7x',
        'efficientdet-lite0' ... 'efficientdet-lite4') or the path of a yaml file that holds a full or
        partial set of hparams (applied over `defaults.yaml`; it may name a model with `name:`).
      overrides: optional 'a=1,b.c=x' string, dict (keys may be dotted) or yaml file path.

    Returns:
      A validated `Config`; its sections are the typed views of `config.schema`.

    Raises:
      ConfigError: unknown model name, unknown key (the message names the nearest valid one) or a
        value of the wrong type (the message names key, value and expected type).
    """
    if isinstance(name_or_yaml_path, Config):
        return name_or_yaml_path.replace(overrides)
    data = _read_hparams("defaults.yaml")
    if name_or_yaml_path.endswith((".yaml", ".yml")):
        layered = _parse_overrides(name_or_yaml_path)
        model_name = layered.get("name", data["name"])
    else:
        layered, model_name = {}, name_or_yaml_path
    model_data = _read_hparams(model_name + ".yaml")
    if model_data is None:
        near = difflib.get_close_matches(model_name, model_names(), n=1, cutoff=0.5)
        hint = " (did you mean '%s'?)" % near[0] if near else ""
        raise ConfigError("unknown model name '%s'%s; known: %s" % (model_name, hint, ", ".join(model_names())))
    _apply(data, model_data, prefix="")
    _apply(data, layered, prefix="")
    _apply(data, _parse_overrides(overrides), prefix="")
    _validate(data)
    return Config(data)
