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
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.forgetting.moves import stepping
from mnemonic_jax.forgetting.moves.base import register
from mnemonic_jax.forgetting.moves.bias import OutputLayerMove
from mnemonic_jax.forgetting.moves.outputs import output_kernel


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


class ProjectPhase(stepping.DeltaPhase):
  """Projects the forgotten columns of the output kernel (one step, ``t = 1``)."""

  name = "project"

  def delta(self, params, request):
    mask = output_kernel(request.apply_fn, params, request.codes)
    in_f, in_r = np.asarray(request.in_forget), np.asarray(request.in_remain)
    d = jax.tree.map(
        lambda w, m: jnp.asarray(projected(np.asarray(w), in_f, in_r) - np.asarray(w))
        if m else jnp.zeros_like(w), params, mask)
    return d, mask, 1.0


@register
@dataclasses.dataclass(frozen=True)
class Project(OutputLayerMove):
  """The forgotten head rows projected onto the others' span, then the ``bias`` phase.

  Attributes:
    rule: the bias phase's rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the bias phase's step grid ``t`` (logits).
  """

  name: ClassVar[str] = "project"
  baseline: ClassVar[str] = "mnemonic-project"
  summary: ClassVar[str] = ("project the forgotten head rows onto the remaining rows' span, "
                            "then lower their output bias by t logits to the rule's margin")

  def first_phases(self):
    return [(ProjectPhase(), 0.0)]
