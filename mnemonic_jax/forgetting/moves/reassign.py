"""``reassign``: ``erase``, and the forgotten classes' evidence handed to the classes nearest them.

After ``erase`` (:mod:`.erase`) no logit responds to a forgotten class's direction in the
head's input, so on that class's images every remaining logit sits near its average and
the forgotten logit, now the remaining rows' mean, stands level with them: one constant
added to the forgotten logit finds the class again (the one-constant attack of
docs/depth.md). The retrain oracle, never shown the class, behaves otherwise: it
classifies the class's images, confidently, as the classes they resemble.

``reassign`` gives the model that behaviour in closed form. Each forgotten class ``f``'s
direction ``d_f = K[:, f] - mean_r K[:, r]`` (``K`` the ``(F, C)`` output kernel, ``r`` the
remaining classes) is added to the remaining rows in proportion to how close each is to
``f`` in the head, ``q_f = softmax_r(cos(K[:, f], K[:, r]) / temperature)``, centred on the
remaining codes' mean head input ``mu`` so that nothing changes there::

  K'[:, r] = E[:, r] + sum_f q_fr d_f,      b'_r = e_r - sum_f q_fr (mu . d_f)

(``E``, ``e`` the erased kernel and bias), with ``d_f`` scaled by the largest share of
:data:`HAND_OVER` (1, 1/2, 1/4, 0) whose head keeps every remaining code right, with the
rule's guard on their smallest margin (judged on a forward pass of the codes per share;
0 leaves ``erase``'s head). An input carrying class ``f``'s evidence now
raises the logits of the classes that resemble ``f`` instead of ``f``'s own: the
relabelling of each forgotten example with its nearest other class of Boundary Shrink
(Chen et al., "Boundary Unlearning", CVPR 2023), done on the head's rows instead of by
fine-tuning on data. Then the ``bias`` phase lowers the forgotten output bias until the
codes' margin is ``<= -rule.margin``, and the guard of :mod:`.bias` where the model
bounds its head's input. Reads only the weights and the codes; the temperature (0.1) was
chosen on the runs marked "chosen" in experiments/results/deep.md and is held fixed on the
others. This project's move.
"""

import dataclasses
from typing import ClassVar

import jax
import numpy as np

from mnemonic_jax import _validate
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule, keeps_remaining
from mnemonic_jax.forgetting.moves import stepping
from mnemonic_jax.forgetting.moves.base import register
from mnemonic_jax.forgetting.moves.bias import OutputLayerMove
from mnemonic_jax.forgetting.moves.erase import ErasePhase, read_head

#: The softmax temperature of the similarity between head rows (cosine units).
TEMPERATURE = 0.1
#: The fractions of the forgotten classes' evidence handed over, tried largest first: the
#: first that keeps every remaining code right (with the rule's guard) is kept; ``0`` is
#: ``erase``'s head.
HAND_OVER = (1.0, 0.5, 0.25, 0.0)


def nearest_weights(kernel: np.ndarray, in_forget: np.ndarray, in_remain: np.ndarray,
                    temperature: float = TEMPERATURE) -> np.ndarray:
  """How much of each forgotten class's evidence each remaining class receives.

  Args:
    kernel: ``(F, C)`` output kernel.
    in_forget, in_remain: ``(C,)`` bools.
    temperature: softmax temperature of the cosine similarities (> 0).

  Returns:
    ``(n_forget, n_remain)`` float64, rows summing to 1: ``softmax_r(cos(K[:, f], K[:, r]) /
    temperature)``, forgotten and remaining classes in increasing id order.

  Example:
    >>> k = np.array([[1.0, 1.0, 0.0], [0.1, 0.0, 1.0]])  # Class 0 resembles class 1.
    >>> nearest_weights(k, np.array([True, False, False]), np.array([False, True, True])
    ...                 ).round(3)
    array([[1., 0.]])
  """
  k = np.asarray(kernel, np.float64)
  unit = k / np.maximum(np.linalg.norm(k, axis=0, keepdims=True), 1e-30)
  cos = unit[:, in_forget].T @ unit[:, in_remain]
  logits = (cos - cos.max(axis=1, keepdims=True)) / temperature
  weights = np.exp(logits)
  return weights / weights.sum(axis=1, keepdims=True)


def reassigned_head(kernel: np.ndarray, bias: np.ndarray | None, mu: np.ndarray,
                    in_forget: np.ndarray, in_remain: np.ndarray,
                    temperature: float = TEMPERATURE
                    ) -> tuple[np.ndarray, np.ndarray | None]:
  """What ``reassign`` adds to the erased head: ``(dK, db)`` in float64.

  Args:
    kernel: ``(F, C)`` output kernel before the move.
    bias: ``(C,)`` output bias, or None.
    mu: ``(F,)`` the remaining codes' mean head input.
    in_forget, in_remain: ``(C,)`` bools.
    temperature: see :func:`nearest_weights`.

  Returns:
    ``dK`` ``(F, C)`` (zero outside the remaining columns: ``D @ q``, ``D`` the forgotten
    classes' directions ``(F, n_forget)``) and ``db`` ``(C,)`` (``-(mu @ D) @ q``; None
    without a bias).
  """
  k = np.asarray(kernel, np.float64)
  directions = k[:, in_forget] - k[:, in_remain].mean(axis=1, keepdims=True)
  q = nearest_weights(k, in_forget, in_remain, temperature)
  dk = np.zeros_like(k)
  dk[:, in_remain] = directions @ q
  if bias is None:
    return dk, None
  db = np.zeros(k.shape[1])
  db[in_remain] = -(np.asarray(mu, np.float64) @ directions) @ q
  return dk, db


class ReassignPhase(ErasePhase):
  """``erase``'s head, plus a fraction of each forgotten class's direction given to the
  remaining rows nearest it (:func:`reassigned_head`; one step): the largest fraction of
  :data:`HAND_OVER` that keeps every remaining code as the rule asks, recorded as the
  step's ``t`` (``0``: nothing handed over, ``erase``'s head).

  Attributes:
    temperature: see :func:`nearest_weights`.
    rule: whose remaining-code test (:func:`~mnemonic_jax.forgetting.criterion.
      keeps_remaining`) each fraction must pass.
  """

  name = "reassign"

  def __init__(self, temperature: float = TEMPERATURE, rule: Rule = DEFAULT_RULE):
    self.temperature = temperature
    self.rule = rule

  def new_head(self, kernel, bias, mu, in_forget, in_remain, fraction: float = 1.0):
    erased_k, erased_b = super().new_head(kernel, bias, mu, in_forget, in_remain)
    dk, db = reassigned_head(kernel, bias, mu, in_forget, in_remain, self.temperature)
    new_k = (np.asarray(erased_k, np.float64) + fraction * dk).astype(
        np.asarray(kernel).dtype)
    if erased_b is None:
      return new_k, None
    return new_k, (np.asarray(erased_b, np.float64) + fraction * db).astype(
        np.asarray(bias).dtype)

  def delta(self, params, request):
    head = read_head(params, request)
    scores = lambda p: jax.tree.map(float, stepping.final_scores(
        request.apply_fn, p, request.codes, request.in_forget, request.in_remain)[0])
    before, unused = scores(params), stepping.host_zeros(params)

    def change(fraction):
      return head.change(*self.new_head(head.kernel, head.bias, head.mu, head.in_forget,
                                        head.in_remain, fraction))

    def kept(fraction):
      moved = stepping.apply_candidate(params, unused, change(fraction)[0], np.float32(1),
                                       candidate=stepping.additive)
      return keeps_remaining(scores(moved), before, self.rule)

    fraction = next((f for f in HAND_OVER[:-1] if kept(f)), HAND_OVER[-1])
    return (*change(fraction), fraction)


@register
@dataclasses.dataclass(frozen=True)
class Reassign(OutputLayerMove):
  """``erase``, with each forgotten class's evidence handed to the remaining classes
  nearest it in the head, then ``bias`` (the module docstring has the formulas).

  Changes only the output layer: the output kernel ``K`` ``(F, C)`` (``F`` head inputs,
  ``C`` classes) and the output bias ``b`` ``(C,)``, found from the model itself, in their
  own dtypes. With ``d_f = K[:, f] - mean_r K[:, r]`` per forgotten class ``f``: ``d_f`` is
  erased from every column around the remaining codes' mean head input ``mu`` ``(F,)``
  (LEACE, Belrose et al., NeurIPS 2023), added back to the remaining columns weighted by
  ``softmax_r(cos(K[:, f], K[:, r]) / temperature)`` (the nearest-class relabelling of
  Boundary Shrink, Chen et al., CVPR 2023, in closed form), and the forgotten biases are
  lowered by the smallest ``t`` of ``grid`` that takes every forgotten code's margin to
  ``<= -rule.margin``, then (where the model bounds its head's input) until no input can
  give them a margin above -1. The share of each ``d_f`` handed over is the largest of
  :data:`HAND_OVER` that keeps every remaining code right with the rule's guard, recorded
  as the first step's ``t``. Reads the weights and the codes, no data. ``met`` is False
  when the erasure itself turned a remaining code wrong.

  Attributes:
    rule: the bias phase's rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the bias phase's step grid ``t`` (logits).
    temperature: softmax temperature of the head rows' cosine similarity (> 0): small
      hands a class's evidence to its single nearest class, large spreads it evenly.

  Raises:
    BadRequestType: a ``rule`` that is not a Rule, a ``grid`` that is not a sequence of
      numbers, a ``temperature`` that is not a real number.
    BadRequest: an empty grid or one with a value not finite and > 0; a temperature that
      is not finite and > 0.
  """

  name: ClassVar[str] = "reassign"
  baseline: ClassVar[str] = "mnemonic-reassign"
  summary: ClassVar[str] = ("erase the forgotten classes' directions from the classifier "
                            "head and hand the largest share of each one's evidence (all, "
                            "1/2, 1/4 or none) that keeps the remaining codes right to the "
                            "remaining classes nearest it, then lower their output bias by "
                            "t logits until their codes' margin reaches the rule's (-15)")

  temperature: float = TEMPERATURE

  def __post_init__(self):
    super().__post_init__()
    _validate.number(self.temperature, "Reassign.temperature", above=0.0,
                     hint="the softmax temperature of the head rows' similarity")
    object.__setattr__(self, "temperature", _validate.stored_number(self.temperature))

  def first_phases(self):
    return [(ReassignPhase(float(self.temperature), self.rule), 0.0)]
