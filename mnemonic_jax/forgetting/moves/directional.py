"""The directional moves: ``w + t * d`` along a direction built from the codes' Fisher ratio.

The paper moves every parameter one way, ``+/- alpha * eta`` with ``eta >= 0`` (eq. 5).
In a sigmoid MLP the hidden features are positive, so that move of a forgotten class's
head row lowers its logit for every input; with tanh features or a LayerNorm before the
head the features have no sign, and the same move raises the logit of some inputs and
lowers it for others. These moves keep the paper's ingredients (the class Fishers on the
codes, ``eta = f_F / f_R``, a step chosen on the codes alone) and change the direction
``d``; ``t`` is chosen on the codes by :mod:`mnemonic_jax.forgetting.moves.stepping`:

* ``signed``: ``d = -(eta / max_l eta) * sign(grad m_F)`` on every tensor, ``m_F`` the
  forgotten codes' summed margin;
* ``head``: ``signed`` on the layers where the Fisher ratio concentrates
  (:func:`concentrated_layers`; in every model measured, the classifier head);
* ``steps``: ``signed`` in :data:`STEPS` smaller steps, the Fishers and the gradient
  recomputed between them (step ``k`` reaches ``k / STEPS`` of the margin target);
* ``shrink``: ``d = -(eta / max_l eta) * sign(w)`` on the concentrated layers: each
  parameter moved towards 0 (an additive form of dampening; it may pass 0);
* ``shrink+bias``: ``shrink`` until the forgotten codes are just misclassified (margin
  ``<= 0``), then ``bias`` to the full margin.

Where each meets which goal: docs/results.md. This project's moves, research options.
"""

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import options, stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.forgetting.moves.bias import BiasPhase
from mnemonic_jax.pytrees import PyTree

#: Phases of the ``steps`` move.
STEPS = 4
#: A layer "concentrates" the Fisher ratio when its 99th-percentile ``eta`` is at least
#: this fraction of the largest layer's.
CONCENTRATION = 0.5


def concentrated_layers(eta: PyTree, fraction: float = CONCENTRATION) -> PyTree:
  """Which tensors belong to the layers where the Fisher ratio concentrates.

  A tensor's concentration is the 99th percentile of its ``eta`` (its maximum for tensors
  of fewer than 100 entries). The tensors whose concentration is at least ``fraction``
  times the largest are selected, together with every tensor of the same module (the
  bias of a selected kernel, for instance).

  Args:
    eta: Fisher ratio (pytree of float arrays, e.g. from
      :func:`mnemonic_jax.forgetting.fisher_ratio`).
    fraction: in ``(0, 1]``.

  Returns:
    A pytree of Python bools shaped like ``eta``'s structure.

  Raises:
    ValueError: ``fraction`` outside ``(0, 1]``.

  Example:
    >>> concentrated_layers({"a": {"w": jnp.ones(200)}, "b": {"w": 9 * jnp.ones(200)}})
    {'a': {'w': False}, 'b': {'w': True}}
  """
  if not 0 < fraction <= 1:
    raise errors.BadRequest(f"fraction must be in (0, 1], got {fraction}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(eta)
  conc = []
  for _, e in flat:
    e = np.asarray(e, np.float64).ravel()
    conc.append(float(np.percentile(e, 99)) if e.size >= 100 else float(e.max(initial=0)))
  top = max(conc)
  modules = {tuple(path[:-1]) for (path, _), c in zip(flat, conc) if c >= fraction * top}
  return treedef.unflatten([tuple(path[:-1]) in modules for path, _ in flat])


@jax.jit
def direction(eta: PyTree, signs: PyTree, mask: PyTree) -> PyTree:
  """``d = -(eta / max_l eta) * sign(signs)`` on the masked tensors, 0 elsewhere (jitted).

  Args:
    eta: Fisher ratio, float32 pytree.
    signs: shaped like ``eta``: the gradient of the forgotten codes' summed margin, or
      the weights (``shrink``).
    mask: pytree of bools (one per tensor).

  Returns:
    A float32 pytree shaped like ``eta``; each masked tensor's largest entry is 1 in
    absolute value (0 if its ``eta`` is 0).
  """
  def one(e, g, m):
    top = jnp.max(e, initial=0.0)
    d = -jnp.where(top > 0, e / jnp.where(top > 0, top, 1.0), 0.0) * jnp.sign(g)
    return jnp.where(m, d, jnp.zeros_like(e))
  return jax.tree.map(one, eta, signs, mask)


@dataclasses.dataclass(frozen=True)
class DirectionPhase(stepping.Phase):
  """``w + t * d``: ``d`` from the gradient's signs (or the weights' for ``shrink``), on
  every tensor or only on the concentrated layers."""

  concentrated: bool
  sign_from_weights: bool = False

  @property
  def name(self) -> str:
    return "shrink" if self.sign_from_weights else "signed"

  def scores(self, params, request, ts):
    eta, grad, margin, correct = stepping.prepare(
        request.apply_fn, params, request.codes, request.in_forget, request.fisher_weights)
    before = stepping.scores_from_margins(margin, correct, request.in_forget,
                                          request.in_remain)
    mask = (concentrated_layers(eta) if self.concentrated
            else jax.tree.map(lambda _: True, eta))
    d = direction(eta, params if self.sign_from_weights else grad, mask)
    grid = stepping.score_grid(request.apply_fn, params, eta, d, request.codes,
                               request.in_forget, request.in_remain, ts,
                               candidate=stepping.additive)
    return before, grid, mask, (eta, d)

  def apply(self, params, request, t, state):
    eta, d = state
    return stepping.apply_candidate(params, eta, d, np.float32(t), candidate=stepping.additive)


@dataclasses.dataclass(frozen=True)
class _Directional(Move):
  """Shared options: ``rule`` (the step rule) and ``grid`` (the step grid ``t``, each
  moved tensor's largest change, ordered from the smallest).

  Raises:
    BadRequestType: a ``rule`` that is not a Rule, a ``grid`` that is not a sequence of
      numbers (named as ``<Move>.rule``, ``<Move>.grid``).
    BadRequest: an empty grid, or one with a value not finite and > 0.
  """

  rule: Rule = DEFAULT_RULE
  grid: Sequence[float] = stepping.STEP_GRID

  def __post_init__(self):
    options.rule(self.rule, f"{type(self).__name__}.rule")
    stepping.check_grid(self.grid, f"{type(self).__name__}.grid")

  def phases(self) -> list[tuple[stepping.Phase, float]]:
    raise NotImplementedError

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    return stepping.run_phases(params, request, self.phases(), self.rule, self.grid)


@register
@dataclasses.dataclass(frozen=True)
class Signed(_Directional):
  """``w - t * (eta / max eta) * sign(grad m_F)`` on every tensor."""

  name: ClassVar[str] = "signed"
  acts_on: ClassVar[str] = "all layers"
  baseline: ClassVar[str] = "mnemonic-signed"
  summary: ClassVar[str] = "every tensor along eta, signs from the codes' margin gradient"

  def phases(self):
    return [(DirectionPhase(concentrated=False), self.rule.margin)]


@register
@dataclasses.dataclass(frozen=True)
class Head(_Directional):
  """``signed`` on the layers where the Fisher ratio concentrates."""

  name: ClassVar[str] = "head"
  acts_on: ClassVar[str] = "concentrated layers"
  baseline: ClassVar[str] = "mnemonic-head"
  summary: ClassVar[str] = "'signed' on the layers where the Fisher ratio concentrates"

  def phases(self):
    return [(DirectionPhase(concentrated=True), self.rule.margin)]


@register
@dataclasses.dataclass(frozen=True)
class Steps(_Directional):
  """``signed`` in :data:`STEPS` phases, the Fishers recomputed between them."""

  name: ClassVar[str] = "steps"
  acts_on: ClassVar[str] = "all layers"
  baseline: ClassVar[str] = "mnemonic-steps"
  summary: ClassVar[str] = f"'signed' in {STEPS} smaller steps, Fishers recomputed"

  def phases(self):
    return [(DirectionPhase(concentrated=False), self.rule.margin * k / STEPS)
            for k in range(1, STEPS + 1)]


@register
@dataclasses.dataclass(frozen=True)
class Shrink(_Directional):
  """The concentrated layers' parameters moved towards 0 by ``t * eta / max eta``."""

  name: ClassVar[str] = "shrink"
  acts_on: ClassVar[str] = "concentrated layers"
  baseline: ClassVar[str] = "mnemonic-shrink"
  summary: ClassVar[str] = "the concentrated layers' weights moved towards 0 along eta"

  def phases(self):
    return [(DirectionPhase(concentrated=True, sign_from_weights=True), self.rule.margin)]


@register
@dataclasses.dataclass(frozen=True)
class ShrinkBias(_Directional):
  """``shrink`` to a forgotten-code margin of 0, then ``bias`` to the full margin."""

  name: ClassVar[str] = "shrink+bias"
  acts_on: ClassVar[str] = "concentrated layers"
  baseline: ClassVar[str] = "mnemonic-shrink+bias"
  summary: ClassVar[str] = "'shrink' until the codes are misclassified, then 'bias'"

  def phases(self):
    return [(DirectionPhase(concentrated=True, sign_from_weights=True), 0.0),
            (BiasPhase(), self.rule.margin)]
