"""One check of the baselines' config fields, read from their annotations.

Every config dataclass of :mod:`mnemonic_jax.baselines` derives from :class:`Checked`, so
its fields are checked when the config is built (``FinetuneConfig(learning_rate="0.1")``
is refused there, not deep inside :func:`~mnemonic_jax.baselines.unlearn`), each by kind,
then range, with a message naming the method, the field and what it got:
:class:`~mnemonic_jax.errors.BadRequestType` for a value of the wrong kind,
:class:`~mnemonic_jax.errors.BadRequest` for one out of range. Values are checked, never
clamped; a number of another kind (a NumPy scalar, a 0-d NumPy or JAX array) is stored as
the Python ``int`` or ``float`` it holds, as :class:`~mnemonic_jax.FitConfig` does.

What each annotation takes:

* ``bool``: ``True`` or ``False`` (a NumPy bool too); not ``0``, ``"no"`` or ``None``.
* ``int``: a Python or NumPy integer or a 0-d integer array, not a bool (``True`` is no
  count), not ``2.0``; stored as an ``int``.
* ``float``: a Python or NumPy int or float or a 0-d int or float array, finite, not a
  bool; stored as a ``float``.
* ``Literal["a", "b"]``: one of those strings.
* ``tuple[int, ...]``: a tuple or list of integers; each stored as an ``int``.
* ``X | None``: ``None``, or what ``X`` takes.
* ``Annotated[X, Bounds(...)]``: ``X`` within the bounds (the aliases below).

NumPy scalars and concrete 0-d arrays count as numbers (stored as Python numbers: a config
is hashed, the methods' programs and optimisers are cached on it); arrays with dimensions
and values traced by ``jax.jit`` do not.

Example:
  >>> @dataclasses.dataclass(frozen=True)
  ... class MyConfig(Checked):
  ...   epochs: PositiveInt = 3
  ...   learning_rate: PositiveFloat = 0.1
  >>> MyConfig(learning_rate="0.1")
  Traceback (most recent call last):
  mnemonic_jax.errors.BadRequestType: MyConfig: learning_rate must be a finite number > 0, ...
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np

from mnemonic_jax import _validate, errors

__all__ = ["Bounds", "Checked", "NonNegativeFloat", "NonNegativeInt", "PositiveFloat",
           "PositiveInt", "UnitFloat", "check", "method_name", "name_method"]


@dataclasses.dataclass(frozen=True)
class Bounds:
  """The range of a number field: ``[low, high]`` (either end may be None), ``> above``."""

  low: float | None = None
  high: float | None = None
  above: float | None = None

  def holds(self, value: float) -> bool:
    return ((self.low is None or value >= self.low) and (self.high is None or value <= self.high)
            and (self.above is None or value > self.above))

  def __str__(self) -> str:
    parts = []
    if self.low is not None and self.high is not None:
      parts.append(f"in [{self.low:g}, {self.high:g}]")
    elif self.low is not None:
      parts.append(f">= {self.low:g}")
    elif self.high is not None:
      parts.append(f"<= {self.high:g}")
    if self.above is not None:
      parts.append(f"> {self.above:g}")
    return " and ".join(parts)


#: A learning rate, a temperature, a scale: a finite number ``> 0``.
PositiveFloat = Annotated[float, Bounds(above=0)]
#: A momentum, a weight decay, a penalty weight: a finite number ``>= 0``.
NonNegativeFloat = Annotated[float, Bounds(low=0)]
#: A fraction or a mixing weight: a number in ``[0, 1]``.
UnitFloat = Annotated[float, Bounds(low=0, high=1)]
#: A count of epochs, examples or samples: a whole number ``>= 1``.
PositiveInt = Annotated[int, Bounds(low=1)]
#: A count that may be zero (steps, epochs of an optional stage).
NonNegativeInt = Annotated[int, Bounds(low=0)]

#: The registered method of each config class (filled by ``base.register``).
_METHODS: dict[type, str] = {}


def name_method(config_cls: type, method: str) -> None:
  """Records that ``config_cls`` is the config of ``method`` (the first name is kept)."""
  _METHODS.setdefault(config_cls, method)


def method_name(config: Any) -> str:
  """The registered method of ``config``'s class, or the class's name if none."""
  return _METHODS.get(type(config), type(config).__name__)


class Checked:
  """Base of the baselines' config dataclasses: every field is checked when built.

  A subclass with relations between its fields (``max_epochs <= epochs``) extends
  ``__post_init__``, calling ``super().__post_init__()`` first.
  """

  def __post_init__(self) -> None:
    check(self)


def check(config: Any) -> None:
  """Checks every field of the dataclass ``config`` against its annotation, and stores
  each number as the Python ``int`` or ``float`` it holds (a NumPy or 0-d JAX number
  given), each entry of a tuple of counts as an int and a NumPy bool or string as ``bool``
  or ``str``.

  Raises:
    BadRequestType: a field holding a value of the wrong kind (a string or None for a
      number, a bool for a count, a float for a count, a number for a bool, a string that
      is not one of the choices' kind); the message names the method, the field and the
      value.
    BadRequest: a number that is NaN, inf or out of the field's bounds, a string not
      among the field's choices.
    NotImplementedError: an annotation this check does not know (a bug of the config, not
      input).
  """
  owner = method_name(config)
  for name, hint in _hints(type(config)).items():
    value = getattr(config, name)
    checked = _check(owner, name, value, hint)
    if checked is not value:
      object.__setattr__(config, name, checked)  # Frozen dataclasses too.


def check_value(config_cls: type, name: str, value: Any) -> None:
  """Checks ``value`` for the field ``name`` of ``config_cls`` as :func:`check` would (an
  override read before any config is built, e.g. ``--methods ssd@alpha=5``).

  Raises:
    BadRequestType, BadRequest: as :func:`check`.
    KeyError: ``config_cls`` has no field ``name``.
  """
  _check(_METHODS.get(config_cls, config_cls.__name__), name, value, _hints(config_cls)[name])


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
  hints = typing.get_type_hints(cls, include_extras=True)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_none(hint: Any) -> bool:
  return hint is type(None)


def _split(hint: Any) -> tuple[Any, Bounds | None, bool]:
  """``(kind, bounds, or_none)`` of an annotation."""
  or_none = False
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = typing.get_args(hint)
    rest = [a for a in args if not _is_none(a)]
    if len(rest) != 1 or len(rest) == len(args):
      raise NotImplementedError(f"unsupported config annotation {hint!r} (only X | None)")
    hint, or_none = rest[0], True
  bounds = None
  if typing.get_origin(hint) is Annotated:
    hint, *extras = typing.get_args(hint)
    bounds = next((e for e in extras if isinstance(e, Bounds)), None)
  return hint, bounds, or_none


def _wanted(kind: Any, bounds: Bounds | None, or_none: bool) -> str:
  """What a field takes, in words."""
  range_ = f" {bounds}" if bounds is not None and str(bounds) else ""
  if kind is bool:
    said = "True or False"
  elif kind is int:
    said = f"a whole number{range_} (an int)"
  elif kind is float:
    said = f"a finite number{range_}"
  elif typing.get_origin(kind) is Literal:
    said = "one of " + ", ".join(map(repr, typing.get_args(kind)))
  elif typing.get_origin(kind) is tuple and typing.get_args(kind) == (int, Ellipsis):
    said = f"a tuple of whole numbers{range_}"
  else:
    raise NotImplementedError(f"unsupported config annotation {kind!r}")
  return said + (", or None" if or_none else "")


def _integer(value: Any) -> bool:
  """A concrete integer: Python, NumPy, or a 0-d integer array (not a bool or a tracer)."""
  return _validate.is_real(value) and _validate.is_integer(value)


def _real(value: Any) -> bool:
  """A concrete real number: Python or NumPy int or float, or a 0-d int or float array."""
  return _validate.is_real(value)


def _check(owner: str, name: str, value: Any, hint: Any) -> Any:
  """Checks ``value`` for the field; returns it as stored (Python numbers, a tuple)."""
  kind, bounds, or_none = _split(hint)
  wanted = _wanted(kind, bounds, or_none)
  if value is None and or_none:
    return value
  said = f"{owner}: {name} must be {wanted}, got {value!r:.60}"
  if kind is bool:
    right_kind = isinstance(value, (bool, np.bool_))
  elif kind is int:
    right_kind = _integer(value)
  elif kind is float:
    right_kind = _real(value)
  elif typing.get_origin(kind) is Literal:
    right_kind = isinstance(value, str)
  else:  # tuple[int, ...]
    right_kind = (isinstance(value, (tuple, list))
                  and all(_integer(v) for v in value))
  if not right_kind:
    raise errors.BadRequestType(f"{said} ({type(value).__name__})")
  if typing.get_origin(kind) is Literal:
    if value not in typing.get_args(kind):
      raise errors.BadRequest(said)
    return value if type(value) is str else str(value)
  if kind is bool:
    return value if type(value) is bool else bool(value)
  numbers = value if isinstance(value, (tuple, list)) else (value,)
  if kind is float and not all(math.isfinite(float(v)) for v in numbers):
    raise errors.BadRequest(said)
  if bounds is not None and not all(bounds.holds(float(v)) for v in numbers):
    raise errors.BadRequest(said)
  if kind is float:
    return value if type(value) is float else float(value)
  if kind is int:
    return value if type(value) is int else int(value)
  if all(type(v) is int for v in value):
    return value
  return type(value)(int(v) for v in value)


def sweep_ladder(method: str, config_cls: type, base: Any, candidates: Any
                 ) -> list[tuple[dict[str, Any], Any]]:
  """``(overrides, config)`` of each candidate of a sweep's ladder
  (:func:`~mnemonic_jax.baselines.base.sweep`), every one built (and so checked by its
  config) before anything runs. A candidate is a dict of overrides of ``config_cls``'s
  fields, or a ``config_cls`` object (its overrides are the fields that differ from
  ``base``); a candidate whose config equals an earlier one's is a repeat.

  Raises:
    BadRequestType: ``candidates`` not a sequence, a candidate neither a dict nor a
      ``config_cls``; BadRequest: an empty ladder, a field the config lacks, a candidate
      given twice; what the config refuses in a value (naming the candidate).
  """
  if isinstance(candidates, (str, bytes, dict)) or not isinstance(candidates, Sequence):
    raise errors.BadRequestType(f"sweep: candidates must be a list of dicts of "
                                f"{config_cls.__name__} overrides, got {type(candidates).__name__}")
  if not candidates:
    raise errors.BadRequest(f"sweep: no candidate config for {method}")
  fields = [f.name for f in dataclasses.fields(config_cls)]
  ladder = []
  for i, candidate in enumerate(candidates):
    if isinstance(candidate, config_cls):
      candidate = {f: getattr(candidate, f) for f in fields
                   if not _same(getattr(candidate, f), getattr(base, f))}
    if not isinstance(candidate, Mapping):
      raise errors.BadRequestType(
          f"sweep: candidates[{i}] must be a dict of {config_cls.__name__} overrides (e.g. "
          f"{{{fields[0]!r}: ...}}) or a {config_cls.__name__}, got {type(candidate).__name__}")
    unknown = sorted(set(candidate) - set(fields), key=str)
    if unknown:
      raise errors.BadRequest(f"sweep: candidates[{i}] overrides {unknown}, not fields of "
                              f"{config_cls.__name__} ({', '.join(fields)})")
    try:
      config = dataclasses.replace(base, **candidate)
    except (TypeError, ValueError) as e:
      raise type(e)(f"sweep: candidates[{i}] {dict(candidate)}: {e}") from None
    if any(_same(config, earlier) for _, earlier in ladder):  # Defaults written out too.
      raise errors.BadRequest(f"sweep: candidates[{i}] {dict(candidate)} is a config given "
                              "before; give each candidate once")
    ladder.append((dict(candidate), config))
  return ladder


def _same(a: Any, b: Any) -> bool:
  """``a == b`` for option values that may hold arrays (a move's grid): False where the
  comparison is not one bool."""
  try:
    return bool(a == b)
  except (TypeError, ValueError):
    return False
