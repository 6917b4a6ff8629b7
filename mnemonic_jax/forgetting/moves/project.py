"""``project``: the forgotten classes' head rows projected onto the span of the others'.

A head-level removal instead of an offset (DEPTH.md's "reset or project the forgotten
rows onto the span of the remaining rows"): with ``W_R`` the output kernel's columns of
the remaining classes, each forgotten column ``w_c`` becomes its least-squares
projection ``W_R (W_R^+ w_c)``. Afterwards a forgotten logit is a fixed combination of
the remaining logits (plus a constant): nothing in the features speaks for the class
alone any more, and the remaining logits are untouched, so every remaining input keeps
its prediction. Then the ``bias`` phase lowers the forgotten output bias until the codes'
margin is ``<= -rule.margin``. Reads only the weights and the codes. This project's
move (a research option; where it meets the depth goals: docs/depth.md).
"""

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.forgetting.moves.bias import BiasPhase, guarded
from mnemonic_jax.forgetting.moves.outputs import output_kernel
from mnemonic_jax.pytrees import PyTree


def projected(kernel: np.ndarray, in_forget: np.ndarray, in_remain: np.ndarray) -> np.ndarray:
  """``kernel`` with each forgotten column replaced by its least-squares projection onto
  the span of the remaining columns (float64 on the host, cast back).

  Example:
    >>> k = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    >>> projected(k, np.array([False, False, True]), np.array([True, True, False]))[:, 2]
    array([1., 1., 0.])
  """
  k = np.asarray(kernel, np.float64)
  basis = k[:, in_remain]
  coef, *_ = np.linalg.lstsq(basis, k[:, in_forget], rcond=None)
  out = k.copy()
  out[:, in_forget] = basis @ coef
  return out.astype(np.asarray(kernel).dtype)


class ProjectPhase(stepping.Phase):
  """Projects the forgotten columns of the output kernel (one step, ``t = 1``)."""

  name = "project"
  grid = (1.0,)

  def scores(self, params, request, ts):
    mask = output_kernel(request.apply_fn, params, request.codes)
    in_f, in_r = np.asarray(request.in_forget), np.asarray(request.in_remain)
    d = jax.tree.map(
        lambda w, m: jnp.asarray(projected(np.asarray(w), in_f, in_r) - np.asarray(w))
        if m else jnp.zeros_like(w), params, mask)
    eta = jax.tree.map(jnp.zeros_like, params)  # Unused by the additive candidate.
    grid = stepping.score_grid(request.apply_fn, params, eta, d, request.codes,
                               request.in_forget, request.in_remain, ts,
                               candidate=stepping.additive)
    before, _ = stepping.final_scores(request.apply_fn, params, request.codes,
                                      request.in_forget, request.in_remain)
    return before, grid, mask, (eta, d)

  def apply(self, params, request, t, state):
    eta, d = state
    return stepping.apply_candidate(params, eta, d, np.float32(t), candidate=stepping.additive)


@register
@dataclasses.dataclass(frozen=True)
class Project(Move):
  """The forgotten head rows projected onto the others' span, then the ``bias`` phase.

  Attributes:
    rule: the bias phase's rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the bias phase's step grid ``t`` (logits).
  """

  name: ClassVar[str] = "project"
  acts_on: ClassVar[str] = "output layer"
  baseline: ClassVar[str] = "mnemonic-project"
  summary: ClassVar[str] = ("project the forgotten head rows onto the remaining rows' span, "
                            "then lower their output bias by t logits to the rule's margin")

  rule: Rule = DEFAULT_RULE
  grid: Sequence[float] = stepping.STEP_GRID

  def __post_init__(self):
    stepping.check_grid(self.grid)

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    return stepping.run_phases(
        params, request, [(ProjectPhase(), 0.0), (BiasPhase(), self.rule.margin),
                          *guarded(request)], self.rule, self.grid)
