"""Forget classes from a bundle: the move, the checks, the history record, the warnings."""

import math
from typing import Any, Mapping, Sequence

import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax import _validate, checkpointing
from mnemonic_jax import forgetting
from mnemonic_jax.bundle import ATTACH_CODES_EVENT, Bundle


AUTO = "auto"


def check_lambdas(params: Any, lambda1: float, lambda2: float) -> None:
  """Refuses forgetting lambdas the parameters' floating-point type cannot carry.

  Raises:
    TypeError, ValueError: see :func:`mnemonic_jax._validate.lambdas`.
  """
  _validate.lambdas(lambda1, lambda2, params)


def _check_finite_bundle(bundle: Bundle) -> None:
  """Refuses a bundle whose params, batch_stats or codes hold NaN or inf."""
  for field in ("params", "batch_stats", "codes"):
    bad = checkpointing.nonfinite_leaves({field: getattr(bundle, field)})
    if bad:
      raise errors.BadRequest(
          f"the bundle's {bad[0][0]} holds {bad[0][1]} non-finite value(s) (NaN or inf); "
          "forgetting from it would do nothing meaningful; re-create the bundle")


def _finite_scores(scores: forgetting.CodeScores) -> bool:
  return all(math.isfinite(float(v)) for v in scores.values())


def untrained_codes_warnings(bundle: Bundle,
                             request: Mapping[str, Any] | None = None) -> list[str]:
  """A warning when the bundle's codes do not look like the codes its model learned.

  Two signs, one warning at most:

  * its training config records ``t_mix = 0`` and no codes were attached since
    (:mod:`mnemonic_jax.attach`, a history entry with ``event`` ``"attach-codes"``): the
    model never saw its codes. The search can then move the codes' logits while the class
    itself stays known (on Fashion-MNIST, E_F 100 on 2 of 10 classes; see
    ``experiments/results/attach_codes.md``);
  * otherwise, with ``request``: a class asked for was forgotten before (said as such);
    or before forgetting the model did not classify every code
    (forgotten and remaining; classes forgotten earlier aside) as its class. A model
    trained with its codes classifies all of them right, so the checkpoint was probably
    not trained with these codes (an imported model, codes from another run, or too few
    epochs of attaching).

  Args:
    bundle: the bundle forgotten from.
    request: its forgetting request as :func:`forget_bundle` records it (``classes``,
      ``exclude`` and ``before``, the scores of the codes before forgetting).

  Returns:
    One sentence, or nothing.
  """
  t_mix = (bundle.config or {}).get("t_mix")
  attached = any(e.get("event") == ATTACH_CODES_EVENT for e in bundle.history)
  if isinstance(t_mix, (int, float)) and t_mix == 0 and not attached:
    return ["the model was trained with t_mix = 0 and never saw its codes, so the class "
            "may still be known although its code is forgotten; attach codes first "
            "('mnemonic-jax attach-codes', a few epochs of fine-tuning) and forget from "
            "that model"]
  if request is None:
    return []
  again = sorted(set(request.get("classes") or ()) & set(bundle.forgotten_classes))
  if again:  # Their codes are misclassified on purpose: the check below cannot judge.
    return [f"class(es) {again} were already forgotten by an earlier request; forgetting "
            "them again moves the parameters further"]
  right, scored = codes_right_before(request, bundle.num_classes)
  if right < scored:
    fix = ("attach codes for more epochs ('mnemonic-jax attach-codes --epochs N')"
           if attached else "forget with the codes the model was trained with, or attach "
           "codes first ('mnemonic-jax attach-codes')")
    return [f"before forgetting, the model classified only {right} of {scored} codes as "
            "their class: the checkpoint was probably not trained with these codes (a "
            "model trained with its codes classifies all of them right), so the class may "
            f"still be known although its code is forgotten; {fix}"]
  return []


def codes_right_before(request: Mapping[str, Any], num_classes: int) -> tuple[int, int]:
  """``(codes classified as their class, codes scored)`` before a forgetting request.

  Args:
    request: a history entry as :func:`forget_bundle` writes it.
    num_classes: the model's classes.

  Returns:
    The counts over the forgotten and remaining classes (classes excluded because earlier
    requests forgot them are not scored).
  """
  before = request.get("before") or {}
  forgotten = len(request.get("classes") or ())
  remaining = num_classes - forgotten - len(request.get("exclude") or ())
  right = (float(before.get("forget_accuracy", 1.0)) * forgotten
           + float(before.get("remain_accuracy", 1.0)) * remaining)
  return int(round(right)), forgotten + remaining


def _remedy(request: Mapping[str, Any]) -> str:
  """What to try when a request left forgotten codes classified as their class."""
  bias = "the 'bias' move (--move bias), which always reaches the codes' margin"
  move = request.get("move", "algorithm2")
  if move == "algorithm2":
    return f"try larger lambdas, no lambdas (a data-free move), or {bias}"
  if move == "bias":
    return "try forgetting fewer classes at a time"
  return f"try forgetting fewer classes at a time, or {bias}"


def forget_warnings(request: Mapping[str, Any]) -> list[str]:
  """Why a forgetting request may not have done what was asked (empty if nothing).

  Args:
    request: a history entry as :func:`forget_bundle` writes it (``after``, ``classes`` and,
      for the data-free search, ``met``, ``fallback``, ``rule``, ``search``).

  Returns:
    One sentence per problem: the search did not meet its rule (and which fallback was
    used), or forgotten classes' codes are still classified as their class.
  """
  warnings = []
  if request.get("met") is False:
    rule, search = request.get("rule") or {}, request.get("search") or request
    how = {"guard": "the guard gave way: the least disturbing candidate that reaches the "
                    "margin target",
           "target": "the target gave way: the candidate with the lowest forgotten-code "
                     "margin that keeps the remaining codes",
           "criterion": "neither fallback had a candidate: the best paper criterion",
           "margin": "neither fallback had a step: the lowest forgotten-code margin"}
    fallback = request.get("fallback")
    warnings.append(
        f"no step met the move's rule (every forgotten code's margin <= "
        f"-{rule.get('margin', float('nan')):g}, remaining codes kept with guard "
        f"{rule.get('guard', float('nan')):g}); the fallback {fallback!r} "
        f"({how.get(fallback, 'unknown')}) was used, reaching a forgotten-code margin of "
        f"{search.get('forget_margin', float('nan')):.3g}")
  after = request.get("after") or {}
  classes = list(request.get("classes") or [])
  still = after.get("forget_accuracy", 0.0)
  if still > 0:
    count = int(round(still * len(classes)))
    warnings.append(
        f"{count} of {len(classes)} forgotten class code(s) are still classified as their "
        f"class after forgetting ({100.0 * still:.0f}%): the "
        f"class{'es' if len(classes) > 1 else ''} may not be forgotten; "
        + _remedy(request))
  return warnings


def forget_bundle(bundle: Bundle, classes: Sequence[int], lambda1: float | None = None,
                  lambda2: float | None = None, *,
                  move: "str | forgetting.Move | None" = None
                  ) -> tuple[Bundle, forgetting.ForgetReport]:
  """Forgets ``classes`` from a bundle, data-free; the request is appended to its history.

  The history entry is the report's ``to_dict()`` (``move``, ``acts_on``, ``met``,
  ``verified``, the code scores and the move's details) plus ``lambdas`` (``"given"``
  or ``"auto"``), ``codes_forgotten`` (whether every forgotten class's code is
  misclassified afterwards) and ``warnings`` (see :func:`forget_warnings`).

  Classes that earlier requests in the history forgot are excluded from this one: they
  count neither as forgotten nor as remaining (``exclude=`` of
  :func:`mnemonic_jax.forgetting.forget`).

  Args:
    bundle: the trained bundle (not modified).
    classes: class ids to forget.
    lambda1, lambda2: the step bounds of eq. (7) for the paper's Algorithm 2, or ``None``
      (``"auto"``) for a data-free move.
    move: a move of :data:`mnemonic_jax.forgetting.MOVES` by name or object (default
      :data:`mnemonic_jax.forgetting.DEFAULT_MOVE`, or Algorithm 2 with lambdas).

  Returns:
    ``(new_bundle, report)``: a :class:`~mnemonic_jax.forgetting.ForgetReport`.

  Raises:
    TypeError: class ids that are not integers, or a lambda that is not a number.
    ValueError: bad classes; one lambda without the other; a lambda that is not > 0,
      exceeds what the parameters' dtype can hold or rounds to 0 (see
      :func:`check_lambdas`); a bundle whose params, batch_stats or codes are not finite;
      or a move that made the parameters (or the model's outputs on the codes)
      non-finite. No bundle is returned then.
  """
  _validate.bundle(bundle)
  chosen = forgetting.resolve_move(move, lambda1, lambda2)
  if isinstance(chosen, forgetting.moves.Algorithm2):
    check_lambdas(bundle.params, chosen.lambda1, chosen.lambda2)
  _check_finite_bundle(bundle)
  earlier = bundle.earlier_forgotten(_validate.class_ids(classes, bundle.num_classes))
  params, report = forgetting.forget(bundle.apply_fn(), bundle.params,
                                     jnp.asarray(bundle.codes), classes, move=chosen,
                                     exclude=earlier)
  record = report.to_dict()
  what = (f"lambda1={record['lambda1']:g}, lambda2={record['lambda2']:g}" if "lambda1" in record
          else f"move={report.move!r} (step t={record['t']:g})")
  bad = checkpointing.nonfinite_leaves(params)
  if bad:
    count = sum(n for _, n in bad)
    raise errors.BadRequest(f"{what} made {count} parameters non-finite (NaN or inf, first "
                            f"in {bad[0][0]}); use smaller lambdas or another move")
  if not _finite_scores(report.after):
    raise errors.BadRequest(f"{what} made the model's outputs on the codes non-finite "
                            "(overflow); use smaller lambdas or another move")
  record["lambdas"] = "given" if report.move == "algorithm2" else AUTO
  record["codes_forgotten"] = float(report.after.forget_accuracy) == 0.0
  record["warnings"] = forget_warnings(record) + untrained_codes_warnings(bundle, record)
  return bundle.replace(params=params, history=bundle.history + (record,)), report
