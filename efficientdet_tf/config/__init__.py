"""Hyper-parameters: `get_config(name, overrides)` builds a validated, typed `Config`."""

from efficientdet_tf.config.hparams import NETWORK_SECTIONS, Config, ConfigError, get_config, model_names
from efficientdet_tf.config.schema import choices_of

__all__ = ["NETWORK_SECTIONS", "Config", "ConfigError", "choices_of", "get_config", "model_names"]
