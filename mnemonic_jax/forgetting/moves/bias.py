"""``bias``: lower the forgotten classes' output bias until their codes are forgotten.

Lowering the output bias of class ``c`` by ``t`` lowers logit ``c`` by ``t`` for every
input, so the step is chosen from one forward pass of the codes: the smallest ``t`` of
the step grid that pushes every forgotten code's margin to ``<= -rule.margin`` with the
remaining codes kept (:mod:`mnemonic_jax.forgetting.criterion`). This project's move.

What it is: an output-level change. The features are bit for bit the original's, and
one constant added back to the forgotten logits restores the class (docs/depth.md).
Lowering a logit never makes a remaining-class input wrong, so "E_F = 100 and A_R kept"
holds for it by construction; it is not evidence of unlearning.
"""

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.pytrees import PyTree


def output_bias(apply_fn, params: PyTree, codes: jax.Array) -> PyTree:
  """Which tensor is the output bias: the ``(C,)`` vector whose entry ``c`` adds to logit ``c``.

  Found from the model itself (no names assumed): each 1-D tensor of ``C`` entries is
  tried by adding ``1`` to its first entry and checking that the codes' logits move by
  ``(1, 0, ..., 0)``, within the rounding of the logits' dtype (bfloat16 included).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)``.
    params: parameters.
    codes: ``(C, *input_shape)`` codes (any inputs would do).

  Returns:
    A pytree of Python bools, True at the output bias only.

  Raises:
    ValueError: no tensor behaves as an output bias.
  """
  num_classes = codes.shape[0]
  base_logits = stepping.logits(apply_fn, params, codes)
  base = np.asarray(base_logits, np.float64)
  eps = float(jnp.finfo(base_logits.dtype).eps)
  atol = max(1e-3, 4 * eps * (1.0 + float(np.max(np.abs(base), initial=0.0))))
  leaves, treedef = jax.tree.flatten(params)
  hot = np.eye(num_classes)[0]
  found = []
  for i, leaf in enumerate(leaves):
    if leaf.ndim != 1 or leaf.shape[0] != num_classes:
      found.append(False)
      continue
    moved, bumped = list(leaves), np.array(leaf)  # On the host: no program to compile.
    bumped[0] += 1
    moved[i] = bumped
    diff = np.asarray(stepping.logits(apply_fn, treedef.unflatten(moved), codes),
                      np.float64) - base
    found.append(bool(np.allclose(diff, hot[None], atol=atol, rtol=0)))
  if not any(found):
    raise errors.BadRequest(
        "the model has no output bias (a (C,) vector added to the logits), which the 'bias' "
        "move needs; use a move that acts on the weights, e.g. move='paper' (--move paper)")
  return treedef.unflatten(found)


@jax.jit
def _shifted_scores(logits, in_forget, in_remain, ts):
  """Code scores before the move and at each step ``ts`` (lowering the forgotten logits
  by ``t``: one forward pass scores the whole grid)."""
  logits = logits.astype(jnp.float32)
  labels = jnp.arange(logits.shape[0])

  def scores(shift):
    margin, correct = prim.code_margins(logits - shift * in_forget, labels)
    return prim.scores_from_margins(margin, correct, in_forget, in_remain)

  grid = jax.vmap(scores)(ts)
  return scores(0.0), (grid.forget_accuracy, grid.remain_accuracy, grid.forget_margin,
                       grid.remain_margin)


class BiasPhase(stepping.Phase):
  """Lowers the forgotten entries of the output bias by ``t``."""

  def scores(self, params, request, ts):
    mask = output_bias(request.apply_fn, params, request.codes)
    logits = stepping.logits(request.apply_fn, params, request.codes)
    before, grid = _shifted_scores(logits, request.in_forget, request.in_remain, ts)
    return before, grid, mask, mask

  def apply(self, params, request, t, state):
    shift = -t * np.asarray(request.in_forget, np.float32)  # On the host.
    return jax.tree.map(
        lambda w, m: jnp.asarray(np.asarray(w) + shift.astype(np.asarray(w).dtype)) if m else w,
        params, state)


@register
@dataclasses.dataclass(frozen=True)
class Bias(Move):
  """Lowers the forgotten classes' output bias until their codes' margin is
  ``<= -rule.margin`` (an output-level move; see the module docstring).

  Attributes:
    rule: the step rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the step grid ``t`` (logits), ordered from the smallest.
  """

  name: ClassVar[str] = "bias"
  acts_on: ClassVar[str] = "output layer"
  baseline: ClassVar[str] = "mnemonic-bias"
  summary: ClassVar[str] = ("lower the forgotten classes' output bias until their codes' "
                            "margin is <= -15 (output-level)")

  rule: Rule = DEFAULT_RULE
  grid: Sequence[float] = stepping.STEP_GRID

  def __post_init__(self):
    stepping.check_grid(self.grid)

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    return stepping.run_phases(params, request, [(BiasPhase(), self.rule.margin)], self.rule,
                               self.grid)
