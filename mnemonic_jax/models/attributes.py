"""Checks of a model's attributes, run when the model is built, before ``init`` traces it.

The built-in models call these from ``__post_init__``, and
:func:`mnemonic_jax.models.create_model` checks ``num_classes`` for every registered
factory, so that ``create_model("mlp", 10.0)`` or ``hidden=3`` is refused by name at once,
not by Flax's initialisers from inside ``init`` (``TypeError: Shapes must be 1D sequences
of concrete values of integer type``).

Each check raises :class:`~mnemonic_jax.errors.BadRequestType` (a value of the wrong
kind) or :class:`~mnemonic_jax.errors.BadRequest` (the right kind, out of range), with a
one-line message naming the owner and the attribute. (Not :mod:`mnemonic_jax._validate`,
which imports the bundle, which imports the models.)
"""

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnemonic_jax import errors

__all__ = ["choice", "int_sequence", "num_classes", "whole_number"]


def _is_int(value: Any) -> bool:
  """A Python or NumPy int (NumPy's are ``numbers.Integral``); not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def whole_number(owner: str, name: str, value: Any, minimum: int = 1) -> None:
  """Refuses anything but an int (Python or NumPy; not a bool or ``2.0``) >= ``minimum``.

  Raises:
    BadRequestType: not an int.
    BadRequest: below ``minimum``.
  """
  if not _is_int(value):
    raise errors.BadRequestType(f"{owner}: {name} must be an int >= {minimum}, got {value!r} "
                                f"({type(value).__name__})")
  if value < minimum:
    raise errors.BadRequest(f"{owner}: {name} must be an int >= {minimum}, got {value}")


def num_classes(owner: str, value: Any) -> None:
  """Refuses a number of output logits that is not a positive int.

  Raises:
    BadRequestType, BadRequest: as :func:`whole_number` (``10.0``, ``True``, ``0``, ``-3``).
  """
  whole_number(owner, "num_classes", value)


def int_sequence(owner: str, name: str, value: Any) -> None:
  """Refuses anything but a tuple or list (may be empty) of ints >= 1, such as an MLP's
  hidden widths.

  Raises:
    BadRequestType: a bare number or a string (``hidden=32``: write ``(32,)``), a NumPy
      array (it would make the model unhashable, so that it shares no compiled program:
      write ``tuple(widths.tolist())``), or an element that is not an int.
    BadRequest: an element below 1.
  """
  what = f"{owner}: {name} must be a tuple of ints >= 1, e.g. (256,), got {value!r}"
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
    raise errors.BadRequestType(what)
  if not all(_is_int(item) for item in value):
    raise errors.BadRequestType(what)
  if not all(item >= 1 for item in value):
    raise errors.BadRequest(what)


def choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> None:
  """Refuses a value that is not one of ``choices``.

  Raises:
    BadRequest: naming the choices.
  """
  if not isinstance(value, str) or value not in choices:
    raise errors.BadRequest(f"{owner}: unknown {name} {value!r}; choose from "
                            f"{', '.join(map(repr, choices))}")
