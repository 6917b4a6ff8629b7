"""The paper's training and forgetting settings as ml_collections configs, and their loader.

Every experiment config (``experiments/configs/*.py``) and the ``demo`` command start from
:func:`paper_config` and change only what their setting changes, so the shared defaults
(SGD with momentum 0.9 and weight decay 5e-4, learning rate 0.01, uniform codes, seed 0)
live in one place. The fields are those :func:`mnemonic_jax.workflow.train` reads.

:func:`load_config` is the one loader of the command line and the experiment runners, in
the spirit of ``ml_collections.config_flags.DEFINE_config_file(lock_config=True)``:
``FILE[:VARIANT]`` runs ``get_config(VARIANT)`` of a Python file, ``--config.FIELD=VALUE``
overrides (:func:`apply_overrides`) set existing fields keeping their types, and the result
is validated (:func:`validate_config`) and locked, so a misspelt field fails before
anything is written.
"""

import ast
import importlib.util
import inspect
import math
import numbers
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

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


def paper_config(
    name: str,
    dataset: str,
    model: str,
    model_kwargs: Mapping[str, Any],
    *,
    t_mix: float,
    epochs: int,
    lambda1: float | str,
    lambda2: float | str,
    batch_size: int = 128,
    schedule: str = "constant",
    augment: bool = False,
    checkpoint_every: int = 1000,
    **fields: Any,
) -> ml_collections.ConfigDict:
  """An experiment config with the paper's shared defaults.

  Args:
    name: experiment name (results and cache directories are named after it).
    dataset: a :func:`mnemonic_jax.data.load_dataset` name.
    model: registry name; ``model_kwargs`` its attributes.
    t_mix: code mixing rate (paper: 0.1, or 0.3 for CIFAR-10 and ImageNet).
    epochs, batch_size, schedule, augment: training (SGD lr 0.01, momentum 0.9, weight
      decay 5e-4 unless ``fields`` says otherwise).
    lambda1, lambda2: the paper's forgetting step bounds for this setting (or ``"auto"``).
    checkpoint_every: training steps between checkpoints (``log_every``, 100: between
      lines of the run's ``metrics.jsonl``; ``data_dir`` None and ``download`` False:
      where a ``tfds:`` dataset is prepared, and whether tfds may download it).
    **fields: further or overriding fields (e.g. ``pretrained``, ``weight_decay``).

  Returns:
    A ConfigDict.
  """
  config = ml_collections.ConfigDict()
  config.name = name
  config.seed = 0
  config.dataset = dataset
  config.data_dir = None
  config.download = False
  config.pad_to = None
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict(dict(model_kwargs))
  config.code_distribution = "uniform"
  config.t_mix = t_mix
  config.epochs = epochs
  config.batch_size = batch_size
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = schedule
  config.augment = augment
  config.checkpoint_every = checkpoint_every
  config.log_every = 100
  config.lambda1 = lambda1
  config.lambda2 = lambda2
  config.forget_classes = (0,)
  for key, value in fields.items():
    config[key] = value
  return config


def paper_mlp_config(name: str, dataset: str, *, epochs: int = 200,
                     checkpoint_every: int = 500, **fields: Any) -> ml_collections.ConfigDict:
  """The paper's MNIST setting: MLP ...-1000 (sigmoid)-C, t_mix 0.1, lambdas (1e-3, 10)."""
  return paper_config(
      name, dataset, "mlp", {"hidden": (1000,), "activation": "sigmoid"}, t_mix=0.1,
      epochs=epochs, lambda1=1e-3, lambda2=10.0, checkpoint_every=checkpoint_every, **fields)


# --------------------------------------------------------------------------------------
# Validation.


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
      type or out of range (one line naming the first such field).

  Example:
    >>> validate_config(paper_mlp_config("m", "digits", epochs=-1))
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


# --------------------------------------------------------------------------------------
# Loading: FILE[:VARIANT] and --config.FIELD=VALUE overrides.


def split_spec(spec: str) -> tuple[pathlib.Path, str | None]:
  """``FILE[:VARIANT]`` as ``(absolute file, variant or None)``.

  A path that exists as a file is taken whole (its name may hold a colon); otherwise the
  text after the last colon is the variant.

  Args:
    spec: e.g. ``"experiments/configs/digits_mlp.py:quick"``.

  Returns:
    The file (made absolute, not checked) and the variant (None when none is named).
  """
  spec = os.fspath(spec)
  path, variant = spec, None
  if not os.path.isfile(spec) and ":" in spec:
    path, variant = spec.rsplit(":", 1)
  return pathlib.Path(path).expanduser().absolute(), variant


def _one_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


#: What starts a config override on a command line.
OVERRIDE_PREFIX = "--config."


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``) from other arguments.

  Arguments after ``--`` are left alone.

  Args:
    argv: command-line arguments.

  Returns:
    ``(other_arguments, [(dotted_field, raw_value), ...])`` in command-line order.

  Raises:
    ConfigError: an override has no value or names no field.
  """
  rest, overrides = [], []
  argv = list(argv)
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--":
      rest.extend(argv[i:])
      break
    if arg.startswith(OVERRIDE_PREFIX):
      name, eq, value = arg[len(OVERRIDE_PREFIX):].partition("=")
      if not eq:
        if i + 1 >= len(argv):
          raise ConfigError(f"{arg} needs a value: write {arg}=VALUE")
        value = argv[i + 1]
        i += 1
      if not name or not all(name.split(".")):
        raise ConfigError(f"{arg!r} names no config field: write --config.FIELD=VALUE")
      overrides.append((name, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def load_config_file(spec: str) -> Any:
  """Runs ``get_config(VARIANT)`` of the config file a ``FILE[:VARIANT]`` spec names.

  The config file is the user's code: whatever it raises while being imported or while
  ``get_config`` runs is reported as a :class:`ConfigError` (one line naming the file and
  the exception), as is a ``get_config`` that is missing, cannot take the variant, or
  returns something other than a group of fields (e.g. None). ``get_config()`` is called
  without an argument when the spec names no variant.

  Args:
    spec: ``FILE[:VARIANT]``.

  Returns:
    What ``get_config`` returned: an ml_collections ConfigDict (or a mapping), unlocked.

  Raises:
    ConfigError: the file does not exist, raises, has no usable ``get_config``, or its
      ``get_config`` raises or returns no config.
  """
  path, variant = split_spec(spec)
  if not path.is_file():
    raise ConfigError(f"config file {str(path)!r} does not exist; pass a python file "
                      "defining get_config(), e.g. experiments/configs/digits_mlp.py[:quick]")
  name = "mnemonic_jax_config_" + path.stem.replace("-", "_")
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"cannot import config file {path}: {type(e).__name__}: "
                      f"{_one_line(e)}; fix the config file") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"config file {path} defines no get_config(); add "
                      "'def get_config(variant=\"\"): ...' returning an ml_collections.ConfigDict")
  args = () if variant is None else (variant,)
  try:
    inspect.signature(get_config).bind(*args)
  except TypeError:
    raise ConfigError(
        f"config file {path}: get_config() takes no variant, but {spec!r} names one; drop "
        f"':{variant}' or give get_config a variant argument") from None
  except ValueError:  # No signature to inspect: let the call say.
    pass
  shown = f"get_config({variant!r})" if args else "get_config()"
  try:
    config = get_config(*args)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"config file {path}: {shown} raised {type(e).__name__}: "
                      f"{_one_line(e)}") from None
  if _mapping(config) is not None:
    raise ConfigError(f"config file {path}: {shown} returned {type(config).__name__}, not a "
                      "config; return an ml_collections.ConfigDict")
  return config


def parse_value(raw: str) -> Any:
  """A command-line value as a Python literal (``5``, ``(64,)``, ``None``), else the string."""
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return raw


def apply_overrides(config: Any, overrides: Sequence[tuple[str, str]]) -> Any:
  """Sets dotted fields of a config from ``(field, raw_value)`` pairs, in order.

  Only existing fields can be set, and, at the top level, the fields
  :func:`mnemonic_jax.workflow.train` reads (:data:`FIELD_CHECKS`, e.g. ``download`` or
  ``data_dir``) even where the file leaves them out. An ml_collections ConfigDict keeps
  each field's type: an int field takes ``5`` but not ``"five"``. Values are parsed as
  Python literals (:func:`parse_value`).

  Args:
    config: an ml_collections ConfigDict (or a dict), changed in place.
    overrides: ``[("model_kwargs.hidden", "(64, 32)"), ...]``.

  Returns:
    ``config``.

  Raises:
    ConfigError: an unknown field, a field inside something that is not a group of
      fields, or a value of the wrong type.
  """
  for name, raw in overrides:
    *parents, leaf = name.split(".")
    node, walked = config, []
    for part in parents:
      walked.append(part)
      if part not in node:
        raise ConfigError(f"unknown config field {'.'.join(walked)!r} in --config.{name}; "
                          f"known fields: {', '.join(sorted(node.keys()))}")
      node = node[part]
      if not hasattr(node, "keys"):
        raise ConfigError(f"config field {'.'.join(walked)!r} is not a group of fields; "
                          f"cannot set --config.{name}")
    if leaf not in node and not (not parents and leaf in FIELD_CHECKS):
      raise ConfigError(f"unknown config field {name!r} (--config.{name}); known fields"
                        f"{' of ' + '.'.join(parents) if parents else ''}: "
                        f"{', '.join(sorted(node.keys()))}")
    value = parse_value(raw)
    try:
      node[leaf] = value
    except (TypeError, ValueError):
      raise ConfigError(f"--config.{name}={raw}: expected a value of type "
                        f"{type(node[leaf]).__name__}, got {type(value).__name__}") from None
    except AttributeError:  # A locked ConfigDict without this (known) field.
      raise ConfigError(f"--config.{name}: the config file's config is locked and has no "
                        f"field {name!r}; add config.{name} to it") from None
  return config


def load_config(spec: str, overrides: Sequence[tuple[str, str]] = (), *,
                validate: bool = True) -> ml_collections.ConfigDict:
  """Loads, overrides, validates and locks a config: the one loader of every entry point.

  Args:
    spec: ``FILE[:VARIANT]`` (see :func:`load_config_file`).
    overrides: ``(dotted field, raw value)`` pairs, as ``--config.FIELD=VALUE`` gives them
      (see :func:`apply_overrides`).
    validate: check the fields :func:`mnemonic_jax.workflow.train` reads
      (:func:`validate_config`); a runner that only reads some fields may skip it.

  Returns:
    A locked ConfigDict (a mapping returned by ``get_config`` is converted): existing
    fields may be changed (keeping their types), new ones not; use
    ``with config.unlocked():`` to add or delete fields.

  Raises:
    ConfigError: as :func:`load_config_file`, :func:`apply_overrides` and
      :func:`validate_config`; nothing is written by any of them.

  Example:
    >>> config = load_config("experiments/configs/digits_mlp.py:quick",
    ...                      [("epochs", "3")])  # doctest: +SKIP
    >>> config.epochs  # doctest: +SKIP
    3
  """
  config = load_config_file(spec)
  if not isinstance(config, ml_collections.ConfigDict):
    try:
      config = ml_collections.ConfigDict(dict(config))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"config file {split_spec(spec)[0]}: its config cannot be an "
                        f"ml_collections.ConfigDict ({_one_line(e)}); return one") from None
  apply_overrides(config, overrides)
  if validate:
    validate_config(config)
  config.lock()
  return config
