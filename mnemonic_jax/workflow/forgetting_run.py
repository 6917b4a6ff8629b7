"""Forget classes from a bundle: the move, the checks, the history record, the warnings."""

import math
import warnings
from typing import Any, Mapping, NamedTuple, Sequence

import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax import _validate, checkpointing
from mnemonic_jax import forgetting
from mnemonic_jax.bundle import ATTACH_CODES_EVENT, IMPORT_EVENT, Bundle
from mnemonic_jax.checkpointing.bundle_format import check_bundle


AUTO = "auto"


def check_lambdas(params: Any, lambda1: float, lambda2: float) -> None:
  """Refuses forgetting lambdas the parameters' floating-point type cannot carry: beyond
  its largest finite value, or below its smallest positive (subnormal) one, e.g. 6e-8 for
  float16 (float32 counts too: the move is computed in it).

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


#: What the codes alone cannot tell, and how to find out (ends the warnings below).
_MEASURE = ("measure E_F on images of the class ('mnemonic-jax forget --dataset NAME' or "
            "'evaluate')")
_ATTACH = ("attach codes first ('mnemonic-jax attach-codes', a few epochs of fine-tuning) and "
           "forget from that model")


class _Untrained(NamedTuple):
  """Why the codes may not stand for the classes: ``kind`` (``"unseen"``: trained with
  ``t_mix = 0`` and nothing attached; ``"unlearned"``: codes misclassified before;
  ``"undertrained"``: the same, by a model trained here with these codes;
  ``"again"``: classes forgotten before), ``why`` (the fact) and ``fix``."""
  kind: str
  why: str
  fix: str

  def sentence(self) -> str:
    """The warning :func:`untrained_codes_warnings` gives, from the codes alone."""
    if self.kind == "again":
      return self.why
    return (f"{self.why}, so the codes cannot tell whether the class is forgotten (the "
            f"move's step was chosen on them); {_MEASURE}, or {self.fix}")


def _untrained_codes(bundle: Bundle, request: Mapping[str, Any] | None) -> _Untrained | None:
  """What :func:`untrained_codes_warnings` finds, or None."""
  t_mix = (bundle.config or {}).get("t_mix")
  attached = any(e.get("event") == ATTACH_CODES_EVENT for e in bundle.history)
  if isinstance(t_mix, (int, float)) and t_mix == 0 and not attached:
    return _Untrained("unseen", "the model was trained with t_mix = 0 and never saw its "
                      "codes", _ATTACH)
  if request is None:
    return None
  again = sorted(set(request.get("classes") or ()) & set(bundle.forgotten_classes))
  if again:  # Their codes are misclassified on purpose: the check below cannot judge.
    return _Untrained("again", f"class(es) {again} were already forgotten by an earlier "
                      "request; forgetting them again moves the parameters further", "")
  right, scored = codes_right_before(request, bundle.num_classes)
  imported = any(e.get("event") == IMPORT_EVENT for e in bundle.history)
  if right < scored and not attached and not imported and _trained_with_codes(bundle.config):
    # Trained here, with these very codes (train and the demo record their config): not
    # foreign codes, too little training (walk5 G8).
    epochs = bundle.config.get("epochs")
    return _Untrained("undertrained", f"before forgetting, the model classified only {right} "
                      f"of {scored} of the codes it was trained with as their class: it is "
                      f"under-trained ({_epochs(epochs)} with t_mix "
                      f"{bundle.config['t_mix']:g})", "train it for more epochs")
  if right < scored:
    fix = ("attach codes for more epochs ('mnemonic-jax attach-codes --epochs N')"
           if attached else "forget with the codes the model was trained with, or attach "
           "codes first ('mnemonic-jax attach-codes')")
    return _Untrained("unlearned", f"before forgetting, the model classified only {right} "
                      f"of {scored} codes as their class: the checkpoint was probably not "
                      "trained with these codes (a model trained with its codes classifies "
                      "all of them right)", fix)
  return None


def _trained_with_codes(config: Mapping[str, Any] | None) -> bool:
  """Whether a training config records codes mixed in (``t_mix > 0``)."""
  t_mix = (config or {}).get("t_mix")
  return isinstance(t_mix, (int, float)) and not isinstance(t_mix, bool) and t_mix > 0


def _epochs(epochs: Any) -> str:
  """``"3 epochs"``, ``"1 epoch"``, or ``"its epochs unrecorded"``."""
  if isinstance(epochs, int) and not isinstance(epochs, bool):
    return f"{epochs} epoch" + ("" if epochs == 1 else "s")
  return "its epochs unrecorded"


def untrained_codes_warnings(bundle: Bundle,
                             request: Mapping[str, Any] | None = None) -> list[str]:
  """A warning when the bundle's codes do not look like the codes its model learned.

  Two signs, one warning at most:

  * its training config records ``t_mix = 0`` and no codes were attached since
    (:mod:`mnemonic_jax.attach`, a history entry with ``event`` ``"attach-codes"``): the
    model never saw its codes. Every move chooses its step on the codes (and the paper's
    move finds the class's parameters through them), so the codes cannot tell whether
    images of the class are forgotten: with the paper's move on Fashion-MNIST, E_F was
    100 on 2 of 10 classes (``experiments/results/attach_codes.md``); the default move
    (a lowered output bias) may still reach it. Measured on images,
    :func:`warnings_from_images` replaces the warning by what they show;
  * otherwise, with ``request``: a class asked for was forgotten before (said as such);
    or before forgetting the model did not classify every code
    (forgotten and remaining; classes forgotten earlier aside) as its class. A model
    trained with its codes classifies all of them right, so the checkpoint was probably
    not trained with these codes (an imported model, codes from another run, or too few
    epochs of attaching); where its own config records training with these codes
    (``t_mix > 0``, neither imported nor attached), it is under-trained instead, and
    said so.

  Args:
    bundle: the bundle forgotten from.
    request: its forgetting request as :func:`forget_bundle` records it (``classes``,
      ``exclude`` and ``before``, the scores of the codes before forgetting).

  Returns:
    One sentence, or nothing.
  """
  found = _untrained_codes(bundle, request)
  return [found.sentence()] if found is not None else []


def warnings_from_images(bundle: Bundle, forgotten: Bundle, per_class: Sequence[float],
                         data: str) -> Bundle:
  """``forgotten`` with its last request's warning about untrained codes settled by images.

  The codes of a model that never learned them cannot tell whether a class is forgotten
  (:func:`untrained_codes_warnings`); images can. Measured on images of every class
  forgotten by the request, the warning is dropped when none of them is classified as its
  class any more (the class is gone from those images), and otherwise says how many still
  are. A class the data hold no image of (NaN accuracy) leaves the warning as it was.

  Args:
    bundle: the bundle forgotten from (before the request).
    forgotten: what :func:`forget_bundle` returned for it (its last history entry is the
      request).
    per_class: ``forgotten``'s per-class accuracy (%) on the images, indexed by class.
    data: what the images are, for the sentence (e.g. ``"digits test"``).

  Returns:
    ``forgotten`` with that entry's ``warnings`` revised (the same bundle if nothing
    changes); its parameters are untouched.
  """
  record = forgotten.history[-1]
  found = _untrained_codes(bundle, record)
  if found is None or found.kind == "again":
    return forgotten
  classes = [int(c) for c in record.get("classes") or ()]
  accuracy = {c: float(per_class[c]) for c in classes}
  if not classes or any(math.isnan(a) for a in accuracy.values()):
    return forgotten
  still = {c: a for c, a in accuracy.items() if a > 0}
  warnings = [w for w in record.get("warnings") or () if w != found.sentence()]
  if still:
    shown = ", ".join(f"{a:.1f}% of class {c}" for c, a in still.items())
    warnings.append(f"{found.why}, and on {data} images {shown} are still classified as "
                    f"their class: the forgetting reached the codes, not the class; "
                    f"{found.fix}")
  if warnings == list(record.get("warnings") or ()):
    return forgotten
  return forgotten.replace(history=forgotten.history[:-1] + ({**record,
                                                               "warnings": warnings},))


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
  name = forgetting.DEFAULT_MOVE
  default = f"the default '{name}' move (--move {name}), which always reaches the codes' margin"
  move = request.get("move", "algorithm2")
  if move == "algorithm2":
    return f"try larger lambdas, no lambdas (a data-free move), or {default}"
  if move in forgetting.MOVES and issubclass(forgetting.MOVES[move],
                                             forgetting.moves.bias.OutputLayerMove):
    # They end by lowering the output bias.
    return "try forgetting fewer classes at a time"
  return f"try forgetting fewer classes at a time, or {default}"


def _lost_remedy(request: Mapping[str, Any]) -> str:
  """What to try when a move met each phase's rule but turned remaining codes wrong."""
  move = forgetting.MOVES.get(request.get("move", ""))
  if (move is not None and issubclass(move, forgetting.moves.bias.OutputLayerMove)
      and move.name != "bias"):  # Its head change cost the codes; bias changes no row.
    return ("try --move bias (it only lowers the forgotten classes' output bias, which "
            "never turns a remaining code wrong; docs/depth.md says what it leaves)")
  return _remedy(request)


def _lost(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
  """Whether fewer remaining codes are classified right after the move than before."""
  return float(after.get("remain_accuracy", 1.0)) < float(before.get("remain_accuracy", 0.0))


def forget_warnings(request: Mapping[str, Any]) -> list[str]:
  """Why a forgetting request may not have done what was asked (empty if nothing).

  Args:
    request: a history entry as :func:`forget_bundle` writes it (``after``, ``classes`` and,
      for the data-free search, ``met``, ``fallback``, ``rule``, ``search``).

  Returns:
    One sentence per problem: the move left every parameter unchanged (then that one
    alone: it says why the rest follows), the search did not meet its rule (and which
    fallback was used), or forgotten classes' codes are still classified as their class.
  """
  warnings = []
  before, after = request.get("before") or {}, request.get("after") or {}
  if request.get("changed") is False:
    how = ("larger lambdas, or none (a data-free move)" if request.get("move", "algorithm2")
           == "algorithm2" else f"the default '{forgetting.DEFAULT_MOVE}' move")
    return [f"the move left every parameter unchanged: its step is 0 or rounds to 0 in the "
            f"parameters' dtype, so nothing was forgotten; try {how}"]
  if request.get("met") is False:
    rule, search = request.get("rule") or {}, request.get("search") or request
    how = {"guard": "the guard gave way: the least disturbing candidate that reaches the "
                    "margin target",
           "target": "the target gave way: the candidate with the lowest forgotten-code "
                     "margin that keeps the remaining codes",
           "criterion": "neither fallback had a candidate: the best paper criterion",
           "margin": "neither fallback had a step: the lowest forgotten-code margin"}
    fallback = request.get("fallback")
    stated = (f"the move's rule (every forgotten code's margin <= "
              f"-{rule.get('margin', float('nan')):g}, remaining codes kept with guard "
              f"{rule.get('guard', float('nan')):g})")
    if fallback is None and _lost(before, after):  # Each step met its rule; one cost the rest.
      warnings.append(
          f"{stated} is not met: remaining codes classified right fell from "
          f"{100 * float(before['remain_accuracy']):.1f}% to "
          f"{100 * float(after['remain_accuracy']):.1f}% during the move; "
          + _lost_remedy(request))
    else:
      warnings.append(
          f"no step met {stated}; the fallback {fallback!r} ({how.get(fallback, 'unknown')}) "
          f"was used, reaching a forgotten-code margin of "
          f"{search.get('forget_margin', float('nan')):.3g}")
  elif "met" in request and request["met"] is None and _lost(before, after):
    warnings.append(  # Given lambdas: no rule, but the rest fell.
        f"the given lambdas cost the remaining classes: their codes classified right fell "
        f"from {100 * float(before['remain_accuracy']):.1f}% to "
        f"{100 * float(after['remain_accuracy']):.1f}%; smaller lambdas, or --move paper "
        "(which searches them on the codes), keep them")
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
  :func:`mnemonic_jax.forgetting.forget`). A class asked for again is forgotten again
  (the parameters move further) with a
  :class:`~mnemonic_jax.errors.ForgottenAgainWarning` (its sentence is also in the
  entry's ``warnings``); ``baselines.unlearn`` refuses it.

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
      :func:`check_lambdas`); a bundle whose fields do not describe its params (see
      :func:`~mnemonic_jax.checkpointing.bundle_format.check_bundle`) or whose params,
      batch_stats or codes are not finite;
      or a move that made the parameters (or the model's outputs on the codes)
      non-finite. No bundle is returned then.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)
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
  again = _untrained_codes(bundle, record)
  if again is not None and again.kind == "again":  # As the moves warn of their outcome.
    warnings.warn(again.sentence(), errors.ForgottenAgainWarning, stacklevel=2)
  return bundle.replace(params=params, history=bundle.history + (record,)), report
