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



#: The largest standard deviation values in [0, 1] can have (half of them 0, half 1).
MAX_STD = 0.5


def check_normalisation_range(mean: Sequence[float], std: Sequence[float], fix: str = "",
                              names: tuple[str, str] = ("normalisation mean", "normalisation std")
                              ) -> None:
  """Refuses a mean or std that cannot be statistics of images scaled to [0, 1].

  The model's inputs are ``(images / 255 - mean) / std``
  (:func:`mnemonic_jax.bundle.normalize`), so a mean is a mean of values in [0, 1] and a
  std at most :data:`MAX_STD`; a std of exactly 1 (the images are only centred, or only
  scaled with a mean of 0) is the one larger value allowed. Statistics of 0-255 pixels
  (mean 30, std 37) are the usual mistake: above 1, the message says to divide them by
  255, with the values when every mean and std given is above 1 (both in 0-255 units).

  Args:
    mean, std: the per-channel normalisation (non-finite values are left to
      :func:`_check_finite`, a std <= 0 too).
    fix: what the user should do otherwise, ending the message.
    names: how the message names the mean and the std (``("--mean", "--std")`` on the
      command line).

  Raises:
    CheckpointError: a mean outside [0, 1], or a std above :data:`MAX_STD` other than 1.
  """
  means = [float(m) for m in np.ravel(np.asarray(mean, dtype=np.float64))]
  stds = [float(s) for s in np.ravel(np.asarray(std, dtype=np.float64))]
  shown = lambda values, form="g": ",".join(f"{v:{form}}" for v in values)
  bad_mean = [m for m in means if math.isfinite(m) and not 0.0 <= m <= 1.0]
  bad_std = [s for s in stds if math.isfinite(s) and s > MAX_STD and s != 1.0]
  if not bad_mean and not bad_std:
    return
  if bad_mean:
    problem = (f"{names[0]} {shown(means)} is outside [0, 1], but the mean is subtracted "
               "from images scaled to [0, 1]")
  else:
    problem = (f"{names[1]} {shown(stds)} is above {MAX_STD:g}, the largest std of values in "
               "[0, 1] (1 alone is allowed: no scaling)")
  scaled = ([m / 255 for m in means], [s / 255 for s in stds])
  hint = ("; divide statistics of 0-255 pixels by 255"
          if any(v > 1.0 for v in bad_mean + bad_std) else "")
  if (all(1.0 < m <= 255.0 for m in means) and all(1.0 < s <= 255 * MAX_STD for s in stds)):
    hint += (f", here {names[0].split()[-1]} {shown(scaled[0], '.4g')} "
             f"{names[1].split()[-1]} {shown(scaled[1], '.4g')}")
  raise CheckpointError(problem + hint + (f"; {fix}" if fix else ""))

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

