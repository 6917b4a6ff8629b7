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
from jax.extend import core as jcore

from mnemonic_jax import errors
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import options, outputs, stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.forgetting.moves.bias import BiasPhase
from mnemonic_jax.pytrees import PyTree

#: Phases of the ``steps`` move.
STEPS = 4
#: A layer "concentrates" the Fisher ratio when its 99th-percentile ``eta`` is at least
#: this fraction of the largest layer's.
CONCENTRATION = 0.5


def concentrated_layers(eta: PyTree, fraction: float = CONCENTRATION,
                        modules: PyTree | None = None) -> PyTree:
  """Which tensors belong to the layers where the Fisher ratio concentrates.

  A tensor's concentration is the 99th percentile of its ``eta`` (its maximum for tensors
  of fewer than 100 entries). The tensors whose concentration is at least ``fraction``
  times the largest are selected, together with every tensor of the same module (the
  bias of a selected kernel, for instance).

  Args:
    eta: Fisher ratio (pytree of float arrays, e.g. from
      :func:`mnemonic_jax.forgetting.fisher_ratio`).
    fraction: in ``(0, 1]``.
    modules: each tensor's module, shaped like ``eta`` (hashable ids), as
      :func:`layer_modules` reads it from the model whatever the container of the params
      (what the moves pass). None: the module is read from the key paths, the tensors
      under one parent (a Flax module's ``kernel`` and ``bias``) being one module, and a
      tensor at the root of the tree (a flat dict's or a list's) a module of its own.

  Returns:
    A pytree of Python bools shaped like ``eta``'s structure.

  Raises:
    ValueError: ``fraction`` outside ``(0, 1]``; ``modules`` not shaped like ``eta``.

  Example:
    >>> concentrated_layers({"a": {"w": jnp.ones(200)}, "b": {"w": 9 * jnp.ones(200)}})
    {'a': {'w': False}, 'b': {'w': True}}
  """
  if not 0 < fraction <= 1:
    raise errors.BadRequest(f"fraction must be in (0, 1], got {fraction}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(eta)
  if modules is None:
    owner = [tuple(path[:-1]) if len(path) > 1 else ("leaf", i)
             for i, (path, _) in enumerate(flat)]
  else:
    owner = treedef.flatten_up_to(modules) if _same_structure(modules, treedef) else None
    if owner is None:
      raise errors.BadRequest("modules must be shaped like eta (one module id per tensor)")
  conc = []
  for _, e in flat:
    e = np.asarray(e, np.float64).ravel()
    conc.append(float(np.percentile(e, 99)) if e.size >= 100 else float(e.max(initial=0)))
  top = max(conc)
  chosen = {m for m, c in zip(owner, conc) if c >= fraction * top}
  return treedef.unflatten([m in chosen for m in owner])


def _same_structure(tree: PyTree, treedef) -> bool:
  try:
    return len(treedef.flatten_up_to(tree)) == treedef.num_leaves
  except (ValueError, TypeError):
    return False


#: Operations that pass a tensor on unchanged but for its shape or dtype.
_RESHAPES = frozenset({"reshape", "broadcast_in_dim", "convert_element_type", "squeeze",
                       "expand_dims", "transpose", "copy", "copy_p", "reduce_precision"})
#: Products: a layer's weights applied to its input (a kernel, a norm's scale).
_PRODUCTS = frozenset({"dot_general", "conv_general_dilated", "mul"})
_SUMS = frozenset({"add", "add_any", "sub"})


def _pairs(jaxpr, tags: list) -> tuple[list, list[tuple[int, frozenset]]]:
  """Walks ``jaxpr`` (nested calls included) with each input's tag: ``("w", i)`` for
  parameter ``i`` (reshaped or cast at most), ``("x", S)`` for a product that involves
  the parameters ``S`` and has nothing added yet, None otherwise. Returns the outputs'
  tags and the ``(i, S)`` pairs found: parameter ``i`` added to such a product (a bias to
  its kernel's output, a norm's offset to its scaled input)."""
  env, pairs = dict(zip(jaxpr.invars, tags)), []
  read = lambda v: None if isinstance(v, jcore.Literal) else env.get(v)
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    name, outs = eqn.primitive.name, [None] * len(eqn.outvars)
    subs = [j for j in jcore.jaxprs_in_params(eqn.params) if len(j.invars) == len(ins)]
    if len(subs) == 1 and name not in ("cond", "while"):  # A call: pjit, custom_jvp, remat.
      sub_outs, sub_pairs = _pairs(subs[0], ins)
      pairs += sub_pairs
      if len(sub_outs) == len(outs):
        outs = sub_outs
    elif name in _RESHAPES and ins and ins[0] is not None:
      outs = [ins[0]]
    elif name in _PRODUCTS:
      used = frozenset().union(*({t[1]} if t[0] == "w" else t[1] for t in ins if t))
      outs = [("x", used) if used else None]
    elif name in _SUMS and len(ins) == 2:
      for a, b in (ins, ins[::-1]):
        if a and b and a[0] == "w" and b[0] == "x" and a[1] not in b[1]:
          pairs.append((a[1], b[1]))
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars], pairs


def layer_modules(apply_fn, params: PyTree, x: jax.Array) -> PyTree:
  """Each parameter tensor's module, read from the model's computation, not its names.

  The model is traced once on abstract values (nothing runs or compiles): a tensor added
  to the output of a product with other tensors is one module with them (a ``Dense``'s or
  a ``Conv``'s bias with its kernel, a LayerNorm's or an inference BatchNorm's offset with
  its scale); every other tensor is a module of its own. So a flat dict, a list, a tuple,
  a FrozenDict or nested dicts holding the same model give the same modules.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: the parameters (their shapes and dtypes are used).
    x: ``(N, *input_shape)`` inputs (their shape and dtype are used).

  Returns:
    A pytree shaped like ``params``: per tensor, the smallest leaf index of its module.
  """
  leaves, treedef = jax.tree.flatten(params)
  spec = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype)
  closed = jax.make_jaxpr(lambda ls, xs: apply_fn(treedef.unflatten(ls), xs))(
      [spec(a) for a in leaves], spec(x))
  tags = [("w", i) for i in range(len(leaves))] + [None] * (len(closed.jaxpr.invars)
                                                            - len(leaves))
  _, pairs = _pairs(closed.jaxpr, tags)
  parent = list(range(len(leaves)))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i
  for i, used in pairs:
    for j in used:
      a, b = sorted((root(i), root(j)))
      parent[b] = a
  return treedef.unflatten([root(i) for i in range(len(leaves))])


#: :func:`layer_modules` by model and parameter structure (the modules are where they are
#: whatever the values), so that later requests trace the model no more.
_MODULES: dict = {}
_MODULES_KEPT = 32


def _modules(apply_fn, params: PyTree, codes: jax.Array) -> PyTree:
  """:func:`layer_modules`, remembered per model and parameter structure."""
  key = outputs._structure(apply_fn, params, codes)  # pylint: disable=protected-access
  if key is not None and key in _MODULES:
    return _MODULES[key]
  found = layer_modules(apply_fn, params, codes)
  if key is not None:
    if len(_MODULES) >= _MODULES_KEPT:
      del _MODULES[next(iter(_MODULES))]  # The oldest.
    _MODULES[key] = found
  return found


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
    mask = (concentrated_layers(eta, modules=_modules(request.apply_fn, params, request.codes))
            if self.concentrated else jax.tree.map(lambda _: True, eta))
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
    BadRequest: an empty grid, one with a value not finite and > 0, or one not increasing
      (an unordered grid would take a larger step than the rule needs).
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
  needs_output_bias: ClassVar[bool] = True

  def phases(self):
    return [(DirectionPhase(concentrated=True, sign_from_weights=True), 0.0),
            (BiasPhase(), self.rule.margin)]
