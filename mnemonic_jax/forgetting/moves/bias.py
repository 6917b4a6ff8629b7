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
import numpy as np

from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.models import bounds
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import options, outputs, stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.forgetting.moves.outputs import output_bias
from mnemonic_jax.pytrees import PyTree


class BiasPhase(stepping.Phase):
  """Lowers the forgotten entries of the output bias by ``t``."""

  name = "bias"

  def scores(self, params, request, ts):
    mask = output_bias(request.apply_fn, params, request.codes)
    logits = np.asarray(stepping.logits(request.apply_fn, params, request.codes), np.float32)
    # Lowering the forgotten logits by t: one forward pass scores the whole grid, on the host.
    lowered = np.asarray(request.in_forget, np.float32)
    score = lambda t: stepping.host_scores(logits - np.float32(t) * lowered, request.in_forget,
                                           request.in_remain)
    grid = [score(t) for t in ts]
    columns = tuple(np.asarray([g[f] for g in grid]) for f in prim.SCORE_FIELDS)
    return score(0.0), columns, mask, mask

  def apply(self, params, request, t, state):
    shift = -t * np.asarray(request.in_forget, np.float32)  # On the host.
    return jax.tree.map(
        lambda w, m: jax.device_put(np.asarray(w) + shift.astype(np.asarray(w).dtype)) if m else w,
        params, state)


#: What the guard phase leaves every input, in logits: no forgotten class's margin above
#: ``-GUARD_MARGIN`` for any input the model's bound allows.
GUARD_MARGIN = 1.0


class GuardPhase(stepping.DeltaPhase):
  """Lowers each forgotten output bias further, where the model bounds its head's input
  (:mod:`mnemonic_jax.models.bounds`), until no input at all can give the class a
  margin above ``-GUARD_MARGIN`` (one step, ``t = 1``; nothing moves where the bound
  already holds). Its :class:`~mnemonic_jax.forgetting.moves.stepping.Step` records the
  largest extra lowering, in logits.

  Attributes:
    bound: the head input's bound the model declares.
  """

  name = "guard"

  def __init__(self, bound: bounds.FeatureBound):
    self.bound = bound

  def delta(self, params, request):
    k_index, b_index = outputs.head_tensors(request.apply_fn, params, request.codes)
    leaves, treedef = jax.tree.flatten(params)
    in_f = np.asarray(request.in_forget, bool)
    worst = bounds.worst_margins(self.bound, params, np.asarray(leaves[k_index], np.float32),
                                 np.asarray(leaves[b_index], np.float32), in_f,
                                 np.asarray(request.in_remain, bool))
    shift = np.where(in_f, np.maximum(np.nan_to_num(worst) + GUARD_MARGIN, 0.0), 0.0)
    delta = jax.tree.leaves(stepping.host_zeros(leaves))
    delta[b_index] = jax.device_put(np.asarray(-shift, np.float32))
    mask = treedef.unflatten([i == b_index for i in range(len(leaves))])
    return treedef.unflatten(delta), mask, float(shift.max())  # The largest extra lowering.


def guarded(request: prim.Request) -> list[tuple[stepping.Phase, float]]:
  """``[(GuardPhase, 0)]`` where the model declares a bound on its head's input, else
  ``[]``: the last phase of the moves that end by lowering the output bias (the move's
  ``met`` is its rule's on the phases before)."""
  bound = bounds.declared(request.apply_fn)
  return [] if bound is None else [(GuardPhase(bound), 0.0)]


@dataclasses.dataclass(frozen=True)
class OutputLayerMove(Move):
  """The moves that end by lowering the output bias: their own first phases, then the
  ``bias`` phase to ``rule.margin``, then the guard where the model bounds its head's
  input (:func:`guarded`).

  Attributes:
    rule: the bias phase's rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the bias phase's step grid ``t`` (logits), ordered from the smallest.

  Raises:
    BadRequestType: a ``rule`` that is not a Rule, a ``grid`` that is not a sequence of
      numbers (named as ``<Move>.rule``, ``<Move>.grid``).
    BadRequest: an empty grid, one with a value not finite and > 0, or one not increasing
      (an unordered grid would take a larger step than the rule needs).
  """

  acts_on: ClassVar[str] = "output layer"
  needs_output_bias: ClassVar[bool] = True

  rule: Rule = DEFAULT_RULE
  grid: Sequence[float] = stepping.STEP_GRID

  def __post_init__(self):
    options.rule(self.rule, f"{type(self).__name__}.rule")
    stepping.check_grid(self.grid, f"{type(self).__name__}.grid")

  def first_phases(self) -> list[tuple[stepping.Phase, float]]:
    """The phases before the bias phase (none for ``bias`` itself)."""
    return []

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    return stepping.run_phases(
        params, request, [*self.first_phases(), (BiasPhase(), self.rule.margin),
                          *guarded(request)], self.rule, self.grid)


@register
@dataclasses.dataclass(frozen=True)
class Bias(OutputLayerMove):
  """Lowers the forgotten classes' output bias until their codes' margin is
  ``<= -rule.margin`` (an output-level move; see the module docstring).

  Attributes:
    rule: the step rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the step grid ``t`` (logits), ordered from the smallest.
  """

  name: ClassVar[str] = "bias"
  baseline: ClassVar[str] = "mnemonic-bias"
  summary: ClassVar[str] = ("lower the forgotten classes' output bias by t logits until "
                            "their codes' margin reaches the rule's (-15)")
