"""What the step-grid moves share: one scalar step ``t`` chosen on the codes, in phases.

A step-grid move (``bias``, the directional family, ``dampen``) changes the parameters
by a family ``w(t)`` of candidates, ``t`` on a log grid ordered from the smallest move;
the codes score every ``t`` in one jitted program and
:func:`mnemonic_jax.forgetting.criterion.select` keeps the first that meets the
:class:`~mnemonic_jax.forgetting.criterion.Rule`. A move may run several phases, each
with its own margin target (``steps``: four quarter-targets; ``shrink+bias``: shrink to
margin 0, then the bias to the full margin). Never real data: only the codes.
"""

import abc
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import Rule, meets, select
from mnemonic_jax.forgetting.moves import options
from mnemonic_jax.forgetting.moves.base import Moved
from mnemonic_jax.pytrees import PyTree

#: Step grid ``t`` (log-spaced): a tensor's largest move is ``t`` for the additive moves.
STEP_GRID = tuple(float(v) for v in np.logspace(-4, 2.5, 53))


@dataclasses.dataclass(frozen=True)
class Step:
  """One phase's chosen step: the ``phase`` (its name), ``t``, whether it ``met`` the rule
  at ``target`` (the margin the forgotten codes had to reach), the ``fallback`` that
  chose otherwise, and the codes' margins there."""

  phase: str
  t: float
  met: bool
  fallback: str | None
  target: float
  forget_margin: float
  remain_margin: float


@dataclasses.dataclass(frozen=True)
class StepDetails:
  """What a step-grid move did: its ``steps`` (one per phase), the tensors it moved
  (``layers``, key paths) and the ``rule`` the steps were chosen by."""

  steps: tuple[Step, ...]
  layers: tuple[str, ...]
  rule: Rule

  def to_dict(self) -> dict[str, Any]:
    """JSON-able; ``t``, ``fallback`` and the margins of the last step chosen on the step
    grid (not the ``guard`` of :mod:`.bias`, which adds what a feature bound needs) at the
    top."""
    last = [s for s in self.steps if s.phase != "guard"][-1]
    return {"steps": [dataclasses.asdict(s) for s in self.steps], "layers": list(self.layers),
            "rule": dataclasses.asdict(self.rule), "t": last.t, "fallback": last.fallback,
            "forget_margin": last.forget_margin, "remain_margin": last.remain_margin}


class Phase(abc.ABC):
  """One phase of a step-grid move: scores its grid, then applies the chosen ``t``."""

  #: The phase's name in :class:`Step` records.
  name: str = "step"
  #: The phase's own step grid (None: the move's).
  grid: tuple[float, ...] | None = None

  @abc.abstractmethod
  def scores(self, params: PyTree, request: prim.Request, ts: np.ndarray
             ) -> tuple[prim.CodeScores, tuple[jax.Array, ...], PyTree, Any]:
    """``(before, grid, mask, state)``: the code scores before, the grid's
    ``(forget_acc, remain_acc, forget_margin, remain_margin)`` per ``t``, a pytree of
    bools True at the tensors the phase moves, and what :meth:`apply` needs."""

  @abc.abstractmethod
  def apply(self, params: PyTree, request: prim.Request, t: float, state: Any) -> PyTree:
    """The parameters moved by the chosen step ``t``."""

  def size(self, t: float, state: Any) -> float:
    """The step recorded in :class:`Step` (by default the chosen ``t``)."""
    del state
    return t


class DeltaPhase(Phase):
  """A one-step phase (``t = 1``): ``params + d`` for a ``d`` computed on the host from
  the current parameters (``project``, ``erase``, ``reassign``, the bias guard)."""

  grid = (1.0,)

  @abc.abstractmethod
  def delta(self, params: PyTree, request: prim.Request) -> tuple[PyTree, PyTree, float]:
    """``(d, mask, size)``: the change (float32, shaped like ``params``), a pytree of
    bools True at the tensors it moves, and the step recorded in :class:`Step`."""

  def scores(self, params, request, ts):
    d, mask, size = self.delta(params, request)
    eta = host_zeros(params)  # Unused by the additive candidate.
    # A few steps (one by default): scored by the programs every move compiles anyway.
    score = lambda p: final_scores(request.apply_fn, p, request.codes, request.in_forget,
                                   request.in_remain)[0]
    moved = [score(apply_candidate(params, eta, d, np.float32(t), candidate=additive))
             for t in ts]
    grid = tuple(np.asarray([float(s[field]) for s in moved], np.float32)
                 for field in prim.SCORE_FIELDS)
    return score(params), grid, mask, (eta, d, size)

  def apply(self, params, request, t, state):
    eta, d, _ = state
    return apply_candidate(params, eta, d, np.float32(t), candidate=additive)

  def size(self, t, state):
    return t * state[2]


def host_zeros(params: PyTree) -> PyTree:
  """Zeros shaped like ``params`` in their dtypes, made on the host and placed with
  ``jax.device_put`` (no program compiled for them, unlike ``jnp.zeros_like`` or
  ``jnp.asarray``)."""
  return jax.tree.map(lambda w: jax.device_put(np.zeros(w.shape, w.dtype)), params)


def check_grid(grid: Sequence[float], name: str = "grid", *, descending: bool = False
               ) -> np.ndarray:
  """The step grid as float32, checked (:func:`.options.step_grid`): increasing, or
  decreasing with ``descending``.

  Raises:
    TypeError: not a sequence of real numbers (a string, a single number, None).
    ValueError: an empty grid, one with a non-finite or non-positive value, or one not
      ordered from the smallest move.
  """
  return options.step_grid(grid, name, descending=descending)


def run_phases(params: PyTree, request: prim.Request, phases: Sequence[tuple[Phase, float]],
               rule: Rule, grid: Sequence[float], *, descending: bool = False) -> Moved:
  """Runs ``(phase, margin target)`` pairs in order; each keeps the step ``rule`` picks,
  the grid's order being the order of the moves' sizes (``grid`` increasing, or
  decreasing with ``descending``; a phase's own grid increasing).

  Raises:
    ValueError: a bad grid, or a result that is not finite.
  """
  move_ts = check_grid(grid, descending=descending)
  steps, layers, current = [], set(), params
  for phase, target in phases:
    ts = move_ts if phase.grid is None else check_grid(phase.grid)
    before, grid_scores, mask, state = phase.scores(current, request, ts)
    fa, ra, fm, rm = (np.asarray(v, np.float64) for v in grid_scores)
    chosen = select(forget_accuracy=fa, remain_accuracy=ra, forget_margin=fm,
                    remain_margin=rm, size=np.arange(ts.size, dtype=np.float64), before=before,
                    rule=dataclasses.replace(rule, margin=target))
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    layers.update(jax.tree_util.keystr(p) for p, m in flat if m)
    t = float(ts[chosen.index])
    steps.append(Step(phase=phase.name, t=phase.size(t, state), met=chosen.met,
                      fallback=chosen.fallback, target=float(target),
                      forget_margin=float(fm[chosen.index]),
                      remain_margin=float(rm[chosen.index])))
    current = phase.apply(current, request, t, state)
  before, _ = final_scores(request.apply_fn, params, request.codes, request.in_forget,
                           request.in_remain)
  after, finite = final_scores(request.apply_fn, current, request.codes, request.in_forget,
                               request.in_remain)
  if not bool(finite):
    raise errors.BadRequest("the move made parameters non-finite; use a smaller step grid")
  details = StepDetails(steps=tuple(steps), layers=tuple(sorted(layers)), rule=rule)
  # Met: the last ruled phase's rule (the guard only adds to it), judged on the result
  # against the codes before the whole move, not before that phase alone: an earlier phase
  # that turned a remaining code wrong leaves the rule unmet.
  target = [s for s in steps if s.phase != "guard"][-1].target
  before, after = jax.tree.map(float, before), jax.tree.map(float, after)
  return Moved(current, before, after,
               meets(after, before, dataclasses.replace(rule, margin=target)), details)


def final_scores(apply_fn, params, codes, in_forget, in_remain) -> tuple[prim.CodeScores, bool]:
  """Code scores of ``params`` and whether every parameter is finite: one jitted forward
  pass of the codes, scored on the host (:func:`host_scores`), and one jitted check."""
  return host_scores(logits(apply_fn, params, codes), in_forget, in_remain), prim.finite(params)


def host_scores(logits_: Any, in_forget: Any, in_remain: Any) -> prim.CodeScores:
  """:class:`~mnemonic_jax.forgetting.primitives.CodeScores` of the codes' ``(C, C)``
  logits, computed with NumPy on the host: the values the traced scoring gives (float32),
  without a program to compile for each way a move scores its candidates."""
  margin, correct = prim.code_margins(np.asarray(logits_), np.arange(len(logits_)), xp=np)
  return prim.scores_from_margins(margin, correct, np.asarray(in_forget),
                                  np.asarray(in_remain), xp=np)


@jax.jit
def logits(apply_fn, params, x):
  """``apply_fn(params, x)`` (jitted)."""
  return apply_fn(params, x)


@jax.jit
def prepare(apply_fn, params, codes, in_forget, fisher_weights):
  """``(eta, grad m_F, margins, correct)``: the codes' Fisher ratio (eq. 6), the gradient
  of the forgotten codes' summed margin, and every code's margin and correctness."""
  f_forget, f_remain = fisher_lib.weighted_class_fishers(apply_fn, params, codes,
                                                         fisher_weights)
  eta = prim.fisher_ratio(f_forget, f_remain)
  labels = jnp.arange(codes.shape[0])

  def forget_margin(p):
    margin, _ = prim.code_margins(apply_fn(p, codes), labels)
    return jnp.sum(jnp.where(in_forget, margin, 0.0))

  grad = jax.grad(forget_margin)(params)
  margin, correct = prim.code_margins(apply_fn(params, codes), labels)
  return eta, grad, margin, correct


scores_from_margins = jax.jit(prim.scores_from_margins)


@functools.partial(jax.jit, static_argnames="candidate")
def score_grid(apply_fn, params, eta, d, codes, in_forget, in_remain, ts, *, candidate):
  """Code scores of ``candidate(params, eta, d, t)`` for every ``t`` of ``ts`` (jitted;
  ``candidate`` a module-level function, static)."""

  def one(t):
    scores = prim.code_scores(apply_fn, candidate(params, eta, d, t), codes, in_forget,
                              in_remain)
    return (scores.forget_accuracy, scores.remain_accuracy, scores.forget_margin,
            scores.remain_margin)

  return jax.lax.map(one, ts, batch_size=min(8, ts.shape[0]))


@functools.partial(jax.jit, static_argnames="candidate")
def apply_candidate(params, eta, d, t, *, candidate):
  """``candidate(params, eta, d, t)`` (jitted)."""
  return candidate(params, eta, d, t)


def additive(params: PyTree, eta: PyTree, d: PyTree, t) -> PyTree:
  """``params + t * d`` in each parameter's dtype (traceable; ``eta`` unused)."""
  del eta
  return jax.tree.map(lambda w, v: w + (t * v).astype(w.dtype), params, d)
