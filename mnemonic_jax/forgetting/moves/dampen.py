"""``dampen``: Selective-Synaptic-Dampening-like scaling of the parameters, on the codes.

SSD (Foster, Schoepf and Brintrup, AAAI 2024) multiplies a parameter by
``min(1, lambda * I_D / I_f)`` where its forget-set importance ``I_f`` exceeds ``alpha``
times its importance ``I_D`` on the training data. Here the importances are the codes'
class Fishers (no data): with ``eta = f_F / f_R``, ``w * min(1, a / eta)`` wherever
``eta > a``; the threshold ``a`` is the step, chosen on the codes from
:data:`DAMPEN_GRID` (weak to strong dampening). This project's move, a research option.
"""

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import options, stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.pytrees import PyTree

#: Threshold grid (from weak to strong dampening: large to small ``a``).
DAMPEN_GRID = tuple(float(v) for v in np.logspace(5, -1, 49))


def dampened(params: PyTree, eta: PyTree, d: PyTree, a) -> PyTree:
  """``w * min(1, a / eta)`` where ``eta > a``, ``w`` elsewhere (traceable; ``d`` unused)."""
  del d
  return jax.tree.map(
      lambda w, e: w * jnp.where(e > a, jnp.minimum(1.0, a / e), 1.0).astype(w.dtype),
      params, eta)


class DampenPhase(stepping.Phase):
  """Dampens every tensor where the codes' Fisher ratio exceeds the threshold."""

  name = "dampen"

  def scores(self, params, request, ts):
    eta, _, margin, correct = stepping.prepare(
        request.apply_fn, params, request.codes, request.in_forget, request.fisher_weights)
    before = stepping.scores_from_margins(margin, correct, request.in_forget,
                                          request.in_remain)
    grid = stepping.score_grid(request.apply_fn, params, eta, eta, request.codes,
                               request.in_forget, request.in_remain, ts, candidate=dampened)
    return before, grid, jax.tree.map(lambda _: True, eta), eta

  def apply(self, params, request, t, state):
    return stepping.apply_candidate(params, state, state, np.float32(t), candidate=dampened)


@register
@dataclasses.dataclass(frozen=True)
class Dampen(Move):
  """SSD-like dampening on the codes' Fisher ratio (see the module docstring).

  Attributes:
    rule: the step rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the thresholds ``a``, from weak to strong dampening (decreasing ``a``).

  Raises:
    BadRequestType: a ``rule`` that is not a Rule, a ``grid`` that is not a sequence of
      numbers (named as ``<Move>.rule``, ``<Move>.grid``).
    BadRequest: an empty grid, one with a value not finite and > 0, or one not decreasing
      (an unordered grid would take a stronger dampening than the rule needs).
  """

  name: ClassVar[str] = "dampen"
  acts_on: ClassVar[str] = "all layers"
  baseline: ClassVar[str] = "mnemonic-dampen"
  summary: ClassVar[str] = "SSD-like: w * min(1, a / eta) where eta > a, a chosen on the codes"

  rule: Rule = DEFAULT_RULE
  grid: Sequence[float] = DAMPEN_GRID

  def __post_init__(self):
    options.rule(self.rule, "Dampen.rule")
    stepping.check_grid(self.grid, "Dampen.grid", descending=True)

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    return stepping.run_phases(params, request, [(DampenPhase(), self.rule.margin)], self.rule,
                               self.grid, descending=True)
