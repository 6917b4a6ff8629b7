"""The command line's argument values: each parser turns one option's text into its value
or raises ``argparse.ArgumentTypeError``, which the parser reports as one line, exit 2.

Strict on purpose: class ids are ASCII digits only (``int`` would also take ``'٣'``),
paths are never empty (an unset shell variable must not mean the current directory).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from typing import Any


def _digits(text: str) -> bool:
  """Whether ``text`` is ASCII digits only (``str.isdigit`` also takes ``'٣'`` and ``'²'``)."""
  return text.isascii() and text.isdigit()


def _integer(text: str) -> int:
  """``int(text)`` of ASCII digits with an optional sign only (``int`` also takes ``'1_0'``
  and ``'٣'``), so that every integer option reads digits as ``--classes`` does.

  Raises:
    ValueError: anything else.
  """
  body = text.strip().removeprefix("-")
  if not _digits(body):
    raise ValueError(text)
  return int(text)


def _number(text: str) -> float:
  """``float(text)`` without the digit separators ``float`` takes (``'1_0'`` is 10.0).

  Raises:
    ValueError: not a number.
  """
  if "_" in text:
    raise ValueError(text)
  return float(text)


def class_list(text: str) -> list[int]:
  """Parses ``"3,7"`` into ``[3, 7]``, strictly (every item a non-negative integer).

  Raises:
    argparse.ArgumentTypeError: an item is empty or not an integer.
  """
  items = [item.strip() for item in text.split(",")]
  negative = [item for item in items if item.startswith("-") and _digits(item[1:])]
  if negative:
    raise argparse.ArgumentTypeError(
        f"class ids are 0 or more, got {', '.join(negative)}; write e.g. --classes 3,7")
  if not all(_digits(item) for item in items):
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of class ids; write e.g. --classes 3,7")
  return [int(item) for item in items]


def int_tuple(text: str) -> tuple[int, ...]:
  """Parses ``"28,28,1"`` into ``(28, 28, 1)`` (positive integers)."""
  items = [item.strip() for item in text.split(",")]
  if not all(_digits(item) and int(item) > 0 for item in items):
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of positive integers; write e.g. 28,28,1")
  return tuple(int(item) for item in items)


def float_tuple(text: str) -> tuple[float, ...]:
  """Parses ``"0.1307"`` or ``"0.49,0.48,0.45"`` into a tuple of floats."""
  try:
    values = tuple(_number(item) for item in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of numbers; write e.g. 0.49,0.48,0.45"
    ) from None
  if not all(math.isfinite(v) for v in values):
    raise argparse.ArgumentTypeError(f"{text!r} must hold finite numbers")
  return values


def _ranged(text: str, convert, noun: str, ok, span: str):
  """``convert(text)`` if ``ok`` of it, else an ``ArgumentTypeError`` naming ``span``."""
  try:
    value = convert(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
  if not ok(value):
    raise argparse.ArgumentTypeError(f"must be {noun} in {span}, got {text}")
  return value


def mix_rate(text: str) -> float:
  """Parses a code-mixing probability: a number in (0, 1]."""
  return _ranged(text, _number, "a number", lambda v: 0.0 < v <= 1.0, "(0, 1]")


def seed_value(text: str) -> int:
  """Parses a seed: an integer in [0, 2^63)."""
  return _ranged(text, _integer, "an integer", lambda v: 0 <= v < 2 ** 63, "[0, 2^63)")


def lambda_value(text: str) -> float | str:
  """Parses a forgetting lambda: ``auto`` or a finite number > 0."""
  if text.strip().lower() == "auto":
    return "auto"
  return positive_float(text)


def positive_float(text: str) -> float:
  """Parses a finite number > 0."""
  try:
    value = _number(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not (math.isfinite(value) and value > 0):
    raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
  return value


def _path(text: str, hint: str) -> pathlib.Path:
  if not text:
    raise argparse.ArgumentTypeError(f"is empty (an unset shell variable?); {hint}")
  return pathlib.Path(text)


def path_value(text: str) -> pathlib.Path:
  """Parses a path to read or a directory to work in; an empty one (an unset shell
  variable) is refused, never taken as the current directory (give ``.`` for that)."""
  return _path(text, "give a path, or '.' for the current directory")


def output_value(text: str) -> pathlib.Path:
  """Parses the bundle to write (``--output``): as :func:`path_value`, but the message
  does not suggest ``.``: the current directory is never replaced."""
  return _path(text, "give the directory to write, a new one such as runs/out (the "
                     "current directory is never replaced)")


def file_value(text: str) -> pathlib.Path:
  """Parses the path of a file (``--codes``): as :func:`path_value`, without ``.``."""
  return _path(text, "give the path of the file")


def _name(text: str, example: str) -> str:
  if not text.strip():
    raise argparse.ArgumentTypeError(f"is empty (an unset shell variable?); give a name, e.g. "
                                     f"{example}")
  return text


def class_names_value(text: str) -> str:
  """Parses import's ``--class-names`` (split at its commas later): any text but an empty
  or blank one (an unset shell variable must not mean one empty name)."""
  return _name(text, "zero,one,two (one name per class, comma-separated)")


def name_value(text: str) -> str:
  """Parses a dataset's name (``--dataset``): any text but an empty or blank one (an unset
  shell variable must not mean the default, or no name)."""
  return _name(text, "digits")


def split_name(text: str) -> str:
  """Parses ``--split``'s name as :func:`name_value` (its example a split: test)."""
  return _name(text, "test")


def model_name(text: str) -> str:
  """Parses ``--model``'s name as :func:`name_value` (its example a model: mlp)."""
  return _name(text, "mlp")


def config_spec(text: str) -> str:
  """Parses ``--config``'s ``NAME[:VARIANT]`` or ``FILE[:VARIANT]``: neither empty (an unset
  shell variable, which named the current directory) nor a variant without a config."""
  if not text.strip():
    raise argparse.ArgumentTypeError(
        "is empty (an unset shell variable?); give a packaged config such as "
        "digits_mlp:quick, or a python file defining get_config()")
  if text.startswith(":"):
    raise argparse.ArgumentTypeError(
        f"{text!r} names a variant but no config; write NAME{text}, e.g. digits_mlp{text}")
  return text


def positive_int(text: str) -> int:
  """Parses an integer >= 1."""
  try:
    value = _integer(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
  return value


def class_id(text: str) -> int:
  """Parses one class id (ASCII digits, 0 or more), as an item of :func:`class_list`."""
  if not _digits(text.strip()):
    raise argparse.ArgumentTypeError(f"{text!r} is not a class id (0 or more); write e.g. 3")
  return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
  """A JSON object's members as a dict; a key given twice is refused (the last one would
  win silently, as a ``--config.FIELD`` given twice is refused)."""
  keys = [key for key, _ in pairs]
  twice = sorted({key for key in keys if keys.count(key) > 1})
  if twice:
    raise ValueError(f"key {', '.join(map(repr, twice))} given twice")
  return dict(pairs)


def json_object(text: str) -> dict[str, Any]:
  """Parses a JSON object such as ``'{"hidden": [1000]}'`` (each key once, at any depth)."""
  try:
    value = json.loads(text, object_pairs_hook=_unique_keys)
  except json.JSONDecodeError as e:
    raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({e.msg})") from None
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"{text!r}: {e}; give each key once") from None
  if not isinstance(value, dict):
    raise argparse.ArgumentTypeError(
        f"{text!r} must be a JSON object, e.g. '{{\"hidden\": [1000]}}'")
  return value


#: ``evaluate --depth``'s attack groups (E_F and A_R are always reported).
DEPTH_GROUPS = ("logits", "features", "relearning", "weights")


def depth_attacks(text: str) -> tuple[str, ...]:
  """Parses ``--depth``'s ``"all"`` or ``"logits,features"`` into groups of
  :data:`DEPTH_GROUPS`, in that order."""
  items = {item.strip() for item in text.split(",")}
  if items == {"all"}:
    return DEPTH_GROUPS
  unknown = sorted(items - set(DEPTH_GROUPS))
  if unknown:
    raise argparse.ArgumentTypeError(
        f"unknown attack group {', '.join(map(repr, unknown))}; use all or a comma-separated "
        f"list of {', '.join(DEPTH_GROUPS)}")
  return tuple(g for g in DEPTH_GROUPS if g in items)
