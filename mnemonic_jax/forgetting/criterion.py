"""One rule for choosing a forgetting step from the codes' scores, one ``select``.

Every data-free move of this package scores candidate steps on the mnemonic codes alone
(never real data) and keeps one by :class:`Rule`: the **first** candidate in the move's
order (the smallest move) that

* pushes every forgotten code's logit margin (own logit minus the best other) to
  ``<= -margin``;
* keeps every remaining code that was classified right before still right;
* keeps the smallest remaining-code margin at ``>= guard`` times its value before (when
  that value was positive).

The paper's selection score, ``(1 - acc on forgotten codes) + acc on remaining codes``,
saturates once every forgotten code is misclassified; a margin still says how firmly.

If no candidate meets the rule, ``Rule.fallback`` names what gives way first, the other
fallback second, and the best paper criterion (then the lowest forgotten margin) last:

* ``"guard"``: among the candidates that reach the margin target with every remaining
  code still right, the one with the largest smallest-remaining-code margin;
* ``"target"``: among the candidates that keep the remaining codes as the rule asks, the
  one with the lowest forgotten-code margin;
* ``"criterion"``: the best paper criterion (only when neither fallback had a candidate).

Ties go to the smaller move. The choice is pure NumPy, so one set of scores can be
re-judged under several rules.
"""

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from mnemonic_jax import _validate
from mnemonic_jax.forgetting.primitives import CodeScores

#: What gives way when no candidate meets the rule, in :class:`Rule`'s ``fallback``.
FALLBACKS = ("guard", "target")
#: Orders of a 2-D lambda grid (a 1-D step grid has one order: its own).
ORDERS = ("size", "max", "lambdas")


@dataclasses.dataclass(frozen=True)
class Rule:
  """How a move picks its step from the codes' scores (see the module docstring).

  Attributes:
    margin: every forgotten code's margin must reach ``<= -margin`` (logits, >= 0).
    guard: the smallest remaining-code margin must stay ``>= guard *`` its value before
      forgetting, in ``[0, 1]`` (``0`` only asks that it stays positive; ignored if it
      was not positive).
    order: for the paper's 2-D lambda grid: ``"size"`` (L2 norm of the move, the
      default), ``"max"`` (largest single parameter move) or ``"lambdas"``
      (lexicographic ``(lambda1, lambda2)``). On a 1-D step grid every order is the
      grid's own (a larger step is a larger move).
    fallback: ``"guard"`` or ``"target"``, what gives way first when no candidate meets
      the rule.

  Raises:
    TypeError: ``margin`` or ``guard`` not a real number (a string, None, a bool, an
      array), ``order`` or ``fallback`` not a string; the message names the field.
    ValueError: a negative or non-finite margin, a guard outside ``[0, 1]``, an unknown
      order or fallback.
  """

  margin: float = 15.0
  guard: float = 0.4
  order: str = "size"
  fallback: str = "guard"

  def __post_init__(self):
    # Checked; kept as given (run caches key on them) but 0-d arrays, made numbers.
    _validate.number(self.margin, "Rule margin", low=0.0,
                     hint="the forgotten codes' target margin, in logits")
    _validate.number(self.guard, "Rule guard", low=0.0, high=1.0,
                     hint="the share of the smallest remaining-code margin kept")
    _validate.choice(self.order, "Rule order", ORDERS, what="order")
    _validate.choice(self.fallback, "Rule fallback", FALLBACKS, what="fallback")
    for field in ("margin", "guard"):  # A 0-d array: its number (hashable, JSON-able).
      object.__setattr__(self, field, _validate.stored_number(getattr(self, field)))


#: The default rule (margin 15, guard 0.4, guard gives way first): chosen by a sweep of
#: margins 8-20 and guards 0-0.8 on Fashion-MNIST and digits MLPs (docs/results.md).
DEFAULT_RULE = Rule()


class Selection(NamedTuple):
  """The candidate a rule chose: its ``index``, whether it ``met`` the rule, and the
  ``fallback`` that chose it (None when met; ``"guard"``, ``"target"`` or
  ``"criterion"`` otherwise)."""

  index: int
  met: bool
  fallback: str | None


def _tests(remain_accuracy, forget_margin, remain_margin, before: CodeScores, rule: Rule
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per candidate: its remaining codes as right as before (``correct``), that and the
  guard on their smallest margin (``keeps``), and every forgotten code at ``<=
  -rule.margin`` (``forgets``)."""
  finite = np.isfinite(forget_margin) & np.isfinite(remain_margin)
  correct = (remain_accuracy >= float(before.remain_accuracy) - 1e-6) & finite
  keeps = correct.copy()
  if float(before.remain_margin) > 0:
    keeps &= remain_margin >= rule.guard * float(before.remain_margin)
  return correct, keeps, forget_margin <= -rule.margin


def _judged(after: CodeScores, before: CodeScores, rule: Rule) -> tuple[bool, bool]:
  """``(keeps, forgets)`` of :func:`_tests` for one set of scores."""
  _, keeps, forgets = _tests(*(np.asarray([float(v)]) for v in (
      after.remain_accuracy, after.forget_margin, after.remain_margin)), before, rule)
  return bool(keeps[0]), bool(forgets[0])


def meets(after: CodeScores, before: CodeScores, rule: Rule) -> bool:
  """Whether the code scores ``after`` a move meet ``rule`` against those ``before`` it:
  every forgotten code's margin ``<= -rule.margin``, every remaining code that was right
  still right, and their smallest margin at least ``rule.guard`` times its value before
  (where it was positive); the test :func:`select` applies to each candidate."""
  return all(_judged(after, before, rule))


def keeps_remaining(after: CodeScores, before: CodeScores, rule: Rule) -> bool:
  """The remaining half of :func:`meets`: every remaining code that was right ``before``
  still right ``after``, their smallest margin at least ``rule.guard`` times its value
  before (where it was positive); the forgotten codes are not looked at."""
  return _judged(after, before, rule)[0]


def select(*, forget_accuracy: np.ndarray, remain_accuracy: np.ndarray,
           forget_margin: np.ndarray, remain_margin: np.ndarray, size: np.ndarray,
           before: CodeScores, rule: Rule, order: Sequence[np.ndarray] | None = None
           ) -> Selection:
  """The candidate ``rule`` picks from per-candidate code scores.

  Args:
    forget_accuracy, remain_accuracy, forget_margin, remain_margin: ``(T,)`` host arrays,
      the code scores of each candidate (see :class:`CodeScores`; NaN where not scored).
    size: ``(T,)`` the size of each candidate's move (ties go to the smaller).
    before: the code scores before forgetting.
    rule: the rule.
    order: the keys ordering the candidates for the rule, most significant first
      (default ``(size,)``); the lowest forgotten margin breaks their ties.

  Returns:
    The :class:`Selection`.
  """
  order = (size,) if order is None else tuple(order)
  correct, keeps, forgets = _tests(remain_accuracy, forget_margin, remain_margin, before, rule)
  met = keeps & forgets
  if met.any():
    idx = np.flatnonzero(met)
    keys = (*order, forget_margin)
    # np.lexsort sorts by its last key first.
    return Selection(int(idx[np.lexsort(tuple(k[idx] for k in reversed(keys)))[0]]), True, None)
  pools = {"guard": (np.flatnonzero(correct & forgets), lambda p: (size[p], -remain_margin[p])),
           "target": (np.flatnonzero(keeps), lambda p: (size[p], forget_margin[p]))}
  for fallback in (rule.fallback, *(f for f in FALLBACKS if f != rule.fallback)):
    pool, keys = pools[fallback]
    if pool.size:
      return Selection(int(pool[np.lexsort(keys(pool))[0]]), False, fallback)
  criterion = 1.0 - forget_accuracy + remain_accuracy
  margin = np.where(np.isfinite(forget_margin), forget_margin, np.inf)
  return Selection(int(np.lexsort((size, margin, -criterion))[0]), False, "criterion")
