"""The checks of the moves' options, shared by the move objects and :func:`select_lambdas`.

A move's options are checked when the move is built (``moves.Paper(chunk=0)`` is refused
there, not at the first ``forget``), each by kind, then range, with a message naming the
option: :class:`~mnemonic_jax.errors.BadRequestType` for a value of the wrong kind,
:class:`~mnemonic_jax.errors.BadRequest` for one out of range. Values are checked, never
converted or clamped: a move keeps the options it was given.
"""

from typing import Any

import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax import parallel
from mnemonic_jax.forgetting.criterion import Rule


def rule(value: Any, name: str = "rule") -> None:
  """Checks that ``value`` is a :class:`~mnemonic_jax.forgetting.criterion.Rule` (whose
  own fields :class:`Rule` checks when it is built).

  Raises:
    BadRequestType: anything else; a dict or None gets a hint on how to write it.
  """
  if isinstance(value, Rule):
    return
  hint = ""
  if isinstance(value, dict):
    hint = f"; write {name.rsplit('.', 1)[-1]}=Rule(**{value!r:.60})"
  elif value is None:
    hint = "; leave it out for the default Rule()"
  raise errors.BadRequestType(
      f"{name} must be a Rule (mnemonic_jax.forgetting.Rule(margin=..., guard=...)), got "
      f"{type(value).__name__}{hint}")


def step_grid(value: Any, name: str = "grid", *, descending: bool = False) -> np.ndarray:
  """The step grid ``t`` as float32, checked: a non-empty sequence of finite positive
  numbers (a tuple, a list or a 1-d array), ordered from the smallest move: increasing
  ``t`` (equal neighbours allowed), or decreasing with ``descending`` (``dampen``'s
  thresholds, weak to strong). A move keeps the first step of the grid that meets its
  rule, so the order is the order of the moves' sizes: it is checked, never sorted.

  Raises:
    BadRequestType: not a sequence of real numbers (a string, a single number, None).
    BadRequest: empty, holding a value that is not finite and positive (in float32), or
      not ordered as said.
  """
  ts = _validate.real_sequence(value, name, what="positive numbers (the step grid)")
  with np.errstate(over="ignore"):  # Beyond float32: inf, refused below.
    ts = ts.astype(np.float32)
  if ts.size == 0:
    raise errors.BadRequest(f"{name}: the step grid must hold finite positive numbers, got an "
                            "empty grid; give at least one step, or leave it out for the "
                            "default")
  if not np.all(np.isfinite(ts)) or not np.all(ts > 0):
    raise errors.BadRequest(f"{name}: the step grid must hold finite positive numbers, got "
                            f"{len(ts)} value(s) from {ts.min():g} to {ts.max():g}")
  steps = np.diff(ts)
  if np.any(steps > 0 if descending else steps < 0):
    at = int(np.flatnonzero(steps > 0 if descending else steps < 0)[0])
    wanted, fix = (("decreasing (from weak to strong: the largest threshold first)",
                    "sorted(grid, reverse=True)") if descending else
                   ("increasing (from the smallest step: the first that meets the rule is "
                    "taken)", "sorted(grid)"))
    raise errors.BadRequest(f"{name}: the step grid must be {wanted}, but {ts[at]:g} comes "
                            f"before {ts[at + 1]:g}; pass {fix}")
  return ts


def lambda_grid(value: Any, name: str = "grid") -> tuple[np.ndarray, np.ndarray]:
  """The paper's lambda grid ``(lambda1 values, lambda2 values)`` as float64, checked.

  Raises:
    BadRequestType: not a pair of sequences of real numbers.
    BadRequest: an empty sequence, or a lambda that is not finite and positive.
  """
  if (isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list))
      or len(value) != 2):
    raise errors.BadRequestType(
        f"{name} must be a pair (lambda1 values, lambda2 values), e.g. ((1e-3, 1e-2), "
        f"(10.0,)), got {type(value).__name__} {value!r:.60}")
  grids = tuple(_validate.real_sequence(v, f"{name}[{i}] ({which} values)")
                for i, (v, which) in enumerate(zip(value, ("lambda1", "lambda2"))))
  if any(g.size == 0 for g in grids):
    raise errors.BadRequest(f"{name}: the lambda grids must not be empty")
  if not all(np.all(g > 0) and np.all(np.isfinite(g)) for g in grids):
    raise errors.BadRequest(f"{name}: every lambda on the grid must be positive and finite")
  return grids


def chunk(value: Any, name: str = "chunk") -> None:
  """Checks the candidates scored at once: a positive int, or None for the default.

  Raises:
    BadRequestType: not an int (``3.5``, ``"4"``, ``True``).
    BadRequest: zero or negative.
  """
  _validate.positive_int(value, name, or_none=True,
                         hint="the number of candidates scored at once (None: by backend "
                              "and model size)")


def fisher(microbatch_size: Any, method: Any, mesh: Any, prefix: str = "") -> None:
  """Checks the Fisher's options a move passes to :func:`mnemonic_jax.fisher_diagonal`.

  Raises:
    BadRequestType: ``microbatch_size`` not an int or None, ``method`` not a string,
      ``mesh`` not a ``jax.sharding.Mesh`` or None.
    BadRequest: ``microbatch_size < 1``, an unknown ``method``, a ``mesh`` of no device or
      without a ``data`` axis (the one mesh check, :func:`mnemonic_jax.parallel.check_mesh`).
  """
  _validate.positive_int(microbatch_size, f"{prefix}microbatch_size", or_none=True,
                         hint="examples per vectorised chunk of the Fisher")
  _validate.choice(method, f"{prefix}method", fisher_lib.METHODS, what="Fisher method")
  parallel.check_mesh(mesh, f"{prefix}mesh")
