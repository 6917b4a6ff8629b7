"""The fields an experiment config holds, what each may be, and the one check of them all.

:func:`validate_config` checks every field :func:`mnemonic_jax.workflow.train` reads
(:data:`FIELD_CHECKS`) before anything is written; :data:`FIELD_TYPES` gives each field's
type for a ``--config.FIELD=VALUE`` override where the config file leaves the field out or
``None`` (ml_collections types an override by the field's current value).
"""

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from mnemonic_jax import errors

#: The largest seed: ``jax.random.key`` takes a signed 64-bit integer.
MAX_SEED = 2 ** 63 - 1
#: The most optimiser steps a run may take (the step counter is a 32-bit integer).
MAX_STEPS = 2 ** 31 - 1
_MAX_INT = 2 ** 31 - 1
_MAX_PAD = 1 << 16


class ConfigError(errors.BadConfig):
  """A config that cannot be used: a config file that is missing, raises or returns no
  config, an override of an unknown field or of the wrong type, or a field missing, of
  the wrong type or out of range.

  The message is one line naming the file or field and the fix.
  """


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_in(low: int, high: int) -> Callable[[Any], str | None]:
  def check(value):
    if not _is_int(value) or not low <= value <= high:
      return f"must be an integer in [{low}, {high}]"
    return None
  return check


def _real(low: float, high: float = math.inf, *, low_open: bool = False,
          high_open: bool = False) -> Callable[[Any], str | None]:
  def check(value):
    ok = _is_real(value) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
      if high == math.inf:
        return f"must be a finite number {'>' if low_open else '>='} {low:g}"
      left, right = "(" if low_open else "[", ")" if high_open else "]"
      return f"must be a finite number in {left}{low:g}, {high:g}{right}"
    return None
  return check


def _bool(value: Any) -> str | None:
  return None if isinstance(value, bool) else "must be True or False"


def _optional_str(value: Any) -> str | None:
  return None if value is None or isinstance(value, str) else "must be a path (a string) or None"


def _name(value: Any) -> str | None:
  return None if isinstance(value, str) and value else "must be a non-empty string"


def _mapping(value: Any) -> str | None:
  if isinstance(value, (Mapping, ml_collections.ConfigDict)):
    return None
  return "must be a group of fields (a dict or ConfigDict)"


def _strings(value: Any) -> str | None:
  if value is None or (isinstance(value, (list, tuple))
                       and all(isinstance(v, str) for v in value)):
    return None
  return "must be a tuple of layer names"


def _classes(value: Any) -> str | None:
  if isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 0 for v in value):
    return None
  return "must be a tuple of class ids (integers >= 0)"


def _lambda(value: Any) -> str | None:
  if value == "auto" or (_is_real(value) and math.isfinite(value) and value > 0):
    return None
  return "must be 'auto' or a finite number > 0"


def _pad_to(value: Any) -> str | None:
  if value is None or (_is_int(value) and 1 <= value <= _MAX_PAD):
    return None
  return f"must be None or an integer in [1, {_MAX_PAD}]"


def _schedule(value: Any) -> str | None:
  from mnemonic_jax import training  # pylint: disable=import-outside-toplevel

  if not isinstance(value, str):
    return "must be a string"
  try:
    training.make_optimizer(1.0, schedule=value, total_steps=1)
  except ValueError as e:
    return f"is not usable: {e}"
  return None


def _code_distribution(value: Any) -> str | None:
  from mnemonic_jax import codes  # pylint: disable=import-outside-toplevel

  if value in codes.DISTRIBUTIONS:
    return None
  return f"must be one of {', '.join(repr(d) for d in codes.DISTRIBUTIONS)}"


def _model(value: Any) -> str | None:
  from mnemonic_jax import models  # pylint: disable=import-outside-toplevel

  if isinstance(value, str) and value in models.available_models():
    return None
  return (f"is not a registered model; use one of {', '.join(models.available_models())} "
          "(or register yours with mnemonic_jax.models.register_model)")


#: field -> (required, check returning a problem or None). What workflow.train reads.
FIELD_CHECKS: dict[str, tuple[bool, Callable[[Any], str | None]]] = {
    "seed": (True, _int_in(0, MAX_SEED)),
    "dataset": (True, _name),
    "model": (True, _model),
    "model_kwargs": (False, _mapping),
    "epochs": (False, _int_in(1, MAX_STEPS)),
    "batch_size": (False, _int_in(1, _MAX_INT)),
    "learning_rate": (False, _real(0.0, low_open=True)),
    "momentum": (False, _real(0.0, 1.0, high_open=True)),
    "weight_decay": (False, _real(0.0)),
    "t_mix": (False, _real(0.0, 1.0)),
    "schedule": (False, _schedule),
    "augment": (False, _bool),
    "code_distribution": (False, _code_distribution),
    "checkpoint_every": (False, _int_in(1, MAX_STEPS)),
    "pad_to": (False, _pad_to),
    "data_dir": (False, _optional_str),
    "download": (False, _bool),
    "log_every": (False, _int_in(1, MAX_STEPS)),
    "stream": (False, _bool),
    "pretrained": (False, _optional_str),
    "pretrained_skip": (False, _strings),
    "lambda1": (False, _lambda),
    "lambda2": (False, _lambda),
    "forget_classes": (False, _classes),
    "name": (False, _name),
}


#: field -> the type a ``--config.FIELD=VALUE`` override of it is parsed as, where the
#: config leaves the field out or ``None`` (``object``: a Python literal, else the string;
#: the lambdas are ``'auto'`` or a number).
FIELD_TYPES: dict[str, type] = {
    "seed": int, "dataset": str, "model": str, "model_kwargs": ml_collections.ConfigDict,
    "epochs": int, "batch_size": int, "learning_rate": float, "momentum": float,
    "weight_decay": float, "t_mix": float, "schedule": str, "augment": bool,
    "code_distribution": str, "checkpoint_every": int, "pad_to": int, "data_dir": str,
    "download": bool, "log_every": int, "stream": bool, "pretrained": str,
    "pretrained_skip": tuple, "lambda1": object, "lambda2": object, "forget_classes": tuple,
    "name": str,
}


def validate_config(config: Any) -> None:
  """Checks every field :func:`mnemonic_jax.workflow.train` reads, before anything is written.

  ``seed`` an integer in ``[0, 2^63)``; ``epochs``, ``batch_size``, ``checkpoint_every``
  and ``log_every`` integers >= 1; ``learning_rate`` > 0, ``momentum`` in ``[0, 1)``,
  ``weight_decay`` >= 0, ``t_mix`` in ``[0, 1]`` (finite numbers); ``schedule`` one that
  :func:`mnemonic_jax.training.make_optimizer` knows; ``model`` registered;
  ``code_distribution`` one of :data:`mnemonic_jax.codes.DISTRIBUTIONS`; ``lambda1`` and
  ``lambda2`` ``'auto'`` or > 0; and the types of the others (see :data:`FIELD_CHECKS`).
  ``seed``, ``dataset`` and ``model`` are required; other fields take
  :class:`~mnemonic_jax.training.FitConfig`'s defaults when absent; fields it does not
  know (e.g. ``baselines``) are left to whoever reads them.

  Args:
    config: an ml_collections ConfigDict or a mapping.

  Raises:
    ConfigError: the config is not a group of fields, or a field is missing, of the wrong
      type or out of range, or holds what JSON cannot write (a dtype, a function: a run
      records its config); one line naming the first such field.

  Example:
    >>> validate_config({"seed": 0, "dataset": "digits", "model": "mlp", "epochs": -1})
    Traceback (most recent call last):
    ConfigError: config.epochs=-1 must be an integer in [1, 2147483647]; ...
  """
  if _mapping(config) is not None:
    raise ConfigError(f"the config is {type(config).__name__}, not a group of fields; "
                      "get_config() must return an ml_collections.ConfigDict")
  for field, (required, check) in FIELD_CHECKS.items():
    if field not in config:
      if required:
        raise ConfigError(f"the config has no field {field!r}; add config.{field} (see "
                          "mnemonic_jax.configs.paper_config)")
      continue
    value = config[field]
    problem = check(value)
    if problem:
      shown = repr(value)
      shown = shown if len(shown) <= 60 else shown[:57] + "..."
      raise ConfigError(f"config.{field}={shown} {problem}; fix it in the config file or "
                        f"with --config.{field}=VALUE")
  _check_recordable(config)


def _check_recordable(config: Any) -> None:
  """Refuses a field JSON cannot write, before training: a run records its config in
  every checkpoint and in its bundle, and the first save came after the training (walk6:
  ``model_kwargs`` holding ``jnp.bfloat16`` lost the run at its first checkpoint)."""
  from mnemonic_jax.bundle import json_value  # pylint: disable=import-outside-toplevel

  for field in config:
    value = config[field]
    try:
      json_value(value.to_dict() if hasattr(value, "to_dict") else value, f"config.{field}")
    except errors.BadRequestType as e:
      raise ConfigError(f"{e}: a run records its config in every checkpoint; write a dtype "
                        "or a function by its name (e.g. 'bfloat16') and build it in the "
                        "model") from None
