"""The typed schema of the hyper-parameters: one frozen dataclass per config section.

`hparams/defaults.yaml` holds the default values and explains each key; this module declares what
each key may hold: its type and, for the keys that select between implementations, every allowed
value. The modules that implement a choice read their list from here (`choices_of`), so an allowed
value is written down once.
"""

import dataclasses
import typing


def choice(*values):
    """A field that must hold one of `values` (declared once, here)."""
    return dataclasses.field(metadata={"choices": tuple(values)})


class Section:
    """Mapping-style access shared by the section dataclasses (`section["key"]`, `"key" in section`)."""

    def __getitem__(self, key):
        return getattr(self, key)

    def __contains__(self, key):
        return key in {f.name for f in dataclasses.fields(self)}

    def as_dict(self):
        return dataclasses.asdict(self)


_dataclass = dataclasses.dataclass(frozen=True, kw_only=True)


@_dataclass
class Network(Section):
    """Top-level keys: the network's architecture (with `anchors`, all that a .keras file stores)."""
    name: str
    backbone_name: str
    image_size: int
    num_classes: int
    input_norm: str = choice("imagenet", "lite")
    mean_rgb: list
    stddev_rgb: list
    min_level: int
    max_level: int
    fpn_num_filters: int
    fpn_cell_repeats: int
    fpn_weight_method: str = choice("sum", "attn", "fastattn", "channel_attn", "channel_fastattn")
    fpn_name: str = choice("bifpn", "fpn", "panet", "fully_connected")
    fpn_config: list
    box_class_repeats: int
    act_type: str = choice("swish", "silu", "relu", "relu6")
    batch_norm_momentum: float
    batch_norm_epsilon: float
    backbone_survival_prob: float
    head_survival_prob: float
    backbone_width: float
    backbone_depth: float


@_dataclass
class Anchors(Section):
    """The anchor grid (part of the network: it fixes the anchors per location)."""
    num_scales: int
    aspect_ratios: list
    anchor_scale: float


@_dataclass
class Loss(Section):
    """Anchor matching and the detection loss."""
    matched_threshold: float
    unmatched_threshold: float
    crowd_anchors: str = choice("background", "ignore")
    alpha: float
    gamma: float
    delta: float
    box_loss_weight: float
    weight_decay: float
    label_smoothing: float


@_dataclass
class Nms(Section):
    """Post-processing: what a Detector and the exports run."""
    mode: str = choice("global", "per_class", "combined")
    method: str = choice("gaussian", "hard")
    iou_threshold: float
    score_threshold: float
    sigma: float
    max_detections: int
    max_nms_inputs: int


@_dataclass
class Data(Section):
    """The input pipeline."""
    training_file_pattern: str
    validation_file_pattern: str
    tfds_name: str
    tfds_data_dir: str
    max_instances_per_image: int
    jitter_min: float
    jitter_max: float
    input_rand_hflip: bool
    autoaugment_policy: str = choice("", "v0", "randaug")
    skip_corrupt: bool
    shuffle_buffer: int
    deterministic: bool
    seed: int


@_dataclass
class Train(Section):
    """The trainer."""
    batch_size: int
    accumulation_steps: int
    recompute: bool
    num_epochs: int
    steps_per_epoch: int
    learning_rate: float
    lr_warmup_init: float
    lr_warmup_epoch: float
    lr_schedule: str = choice("cosine", "constant")
    momentum: float
    clip_gradients_norm: float
    clip_gradients_scope: str = choice("replica", "global")
    moving_average_decay: float
    average_batch_norm: bool
    mixed_precision: str = choice("", "float16", "bfloat16")


@_dataclass
class Eval(Section):
    """COCO evaluation."""
    val_json_file: str
    batch_size: int
    nms_preset: str = choice("official", "config")
    label_map: str
    num_pictures_drawn: int
    min_score_drawn: float
    confusion_min_score: float
    max_pictures: int


# Section name -> dataclass; `None` names the top level.
SECTIONS = {None: Network, "anchors": Anchors, "loss": Loss, "nms": Nms, "data": Data, "train": Train,
            "eval": Eval}


def choices_of(section, key):
    """The allowed values of `section.key` (`section` None for a top-level key), e.g.
    `choices_of("nms", "mode")` -> ('global', 'per_class', 'combined')."""
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == key:
            return f.metadata["choices"]
    raise KeyError("%s.%s" % (section, key))


def field_types(section):
    """{key: type} of one section (`None` for the top level)."""
    hints = typing.get_type_hints(SECTIONS[section])
    return {f.name: hints[f.name] for f in dataclasses.fields(SECTIONS[section])}


def check(section, values, prefix):
    """Raises ValueError(message) when `values` (one section's dict) breaks the schema: a key missing
    or unknown, or a choice outside its allowed values. Types are checked as overrides are applied."""
    cls = SECTIONS[section]
    declared = {f.name: f for f in dataclasses.fields(cls)}
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ValueError("hparams lack %s" % ", ".join(prefix + key for key in missing))
    for key, f in declared.items():
        allowed = f.metadata.get("choices")
        if allowed is not None and values[key] not in allowed:
            raise ValueError("hparam '%s%s' must be one of %s, got %r" % (prefix, key, allowed, values[key]))
    return cls(**{key: values[key] for key in declared})
