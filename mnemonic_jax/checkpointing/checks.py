"""Bounds on what a checkpoint may declare, and the checks of shapes and
normalisation every reader and writer applies before allocating or writing anything."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mnemonic_jax.checkpointing._common import CheckpointError, PyTree
from mnemonic_jax.checkpointing.trees import nonfinite_leaves

#: Bounds on what a file may declare, checked before anything is read or allocated.
MAX_META_BYTES = 64 << 20  #: A bundle's JSON metadata.
MAX_INPUT_RANK = 4  #: Dimensions of one input.
MAX_INPUT_DIM = 1 << 16  #: Each dimension of one input.
MAX_CODE_ELEMENTS = 1 << 31  #: num_classes * prod(input_shape), the codes' size.
#: A params file (import, pretrained weights) may hold at most this many times the
#: model's own number of elements (optimizer states and the like), plus a little.
PARAMS_FILE_FACTOR = 16
#: The most bytes a params file may hold when the model it is for is not known.
MAX_PARAMS_FILE_BYTES = 64 << 30


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float | None:
  """A number (or, as older bundles may hold, a numeric string) as float; else None."""
  if isinstance(value, (bool, np.bool_)):
    return None
  if isinstance(value, (int, float, np.integer, np.floating)):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      return None
  return None


def _short(value: Any, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _input_shape_problem(input_shape: Any, num_classes: int) -> str | None:
  """Why an input shape (with ``num_classes``) is not supported, or None."""
  if (not isinstance(input_shape, (list, tuple)) or not 1 <= len(input_shape) <= MAX_INPUT_RANK
      or not all(_is_int(d) and 1 <= d <= MAX_INPUT_DIM for d in input_shape)):
    return (f"is {_short(input_shape)}, not 1 to {MAX_INPUT_RANK} integers in "
            f"[1, {MAX_INPUT_DIM}]")
  elements = int(num_classes) * math.prod(int(d) for d in input_shape)
  if elements > MAX_CODE_ELEMENTS:
    return (f"is {tuple(int(d) for d in input_shape)}: with {num_classes} classes the codes "
            f"would hold {elements} elements, more than the {MAX_CODE_ELEMENTS} supported")
  return None


def check_input_shape(input_shape: Any, num_classes: int, what: str = "input_shape") -> None:
  """Refuses an input shape (and class count) whose codes would be absurdly large.

  Args:
    input_shape: the shape of one input.
    num_classes: the number of classes (codes are ``(num_classes, *input_shape)``).
    what: how the message names the shape.

  Raises:
    CheckpointError: the shape is not 1 to :data:`MAX_INPUT_RANK` integers in
      ``[1, MAX_INPUT_DIM]``, or the codes would hold more than
      :data:`MAX_CODE_ELEMENTS` elements.
  """
  problem = _input_shape_problem(input_shape, num_classes)
  if problem:
    raise CheckpointError(f"{what} {problem}")


def check_normalisation(mean: Sequence[float], std: Sequence[float], channels: int,
                        where: str = "", fix: str = "") -> None:
  """Refuses a mean or std that has neither one value nor one per channel.

  Args:
    mean, std: the per-channel normalisation.
    channels: the number of channels of one input (its last dimension).
    where: a path (or empty) that starts the message.
    fix: what the user should do, ending the message.

  Raises:
    CheckpointError: ``len(mean)`` or ``len(std)`` is neither 1 nor ``channels``.
  """
  where = f"{where}: " if where else ""
  for field, values in (("mean", mean), ("std", std)):
    count = len(np.ravel(np.asarray(values, dtype=object)))
    if count not in (1, int(channels)):
      raise CheckpointError(
          f"{where}normalisation {field} has {count} values but the inputs have {channels} "
          f"channel{'s' if channels != 1 else ''}; give one value, or one per channel"
          + (f"; {fix}" if fix else ""))



def _check_finite(where: str, fix: str, *, params: PyTree = None, batch_stats: PyTree = None,
                  codes: Any = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> None:
  """Refuses non-finite arrays and normalisation (one line naming the field and ``fix``).

  ``where`` (a path, or empty) starts the message.

  Raises:
    CheckpointError: an array of ``params``, ``batch_stats`` or ``codes`` holds NaN or inf,
      ``mean`` or ``std`` holds a non-finite value, or ``std`` a value that is not > 0.
  """
  where = f"{where}: " if where else ""
  for field, tree in (("params", params), ("batch_stats", batch_stats), ("codes", codes)):
    if tree is None:
      continue
    bad = nonfinite_leaves({field: tree})
    if bad:
      total = sum(count for _, count in bad)
      raise CheckpointError(
          f"{where}{bad[0][0]} holds {bad[0][1]} non-finite value(s) (NaN or inf)"
          + (f", {total} in {len(bad)} {field} arrays" if len(bad) > 1 else "") + f"; {fix}")
  for field, values in (("mean", mean), ("std", std)):
    if values is None:
      continue
    values = [float(v) for v in np.ravel(np.asarray(values, dtype=np.float64))]
    if not values or not all(np.isfinite(values)):
      raise CheckpointError(
          f"{where}normalisation {field} {values} must hold finite numbers; {fix}")
    if field == "std" and not all(v > 0 for v in values):
      raise CheckpointError(
          f"{where}normalisation std {values} must be positive (images are divided by "
          f"it); {fix}")

