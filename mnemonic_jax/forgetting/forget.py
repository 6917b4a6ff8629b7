"""The front door: ``forget`` checks the request, makes the move, returns one report type.

Every move of :data:`mnemonic_jax.forgetting.moves.MOVES` goes through :func:`forget`,
and every one returns a :class:`ForgetReport`; what is particular to a move is in its
typed ``details``.
"""

import dataclasses
import time
import warnings
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax.forgetting import moves as moves_lib
from mnemonic_jax.forgetting.moves import model_checks
from mnemonic_jax.forgetting.primitives import CodeScores, validate_request
from mnemonic_jax.pytrees import ApplyFn, PyTree
from mnemonic_jax.timing import CompileClock

#: The move of :func:`forget` when neither a move nor lambdas are given: ``reassign``,
#: which erases the forgotten classes' directions from every row of the classifier head,
#: hands each one's evidence to the remaining classes nearest it in the head, then lowers
#: their output bias until their codes' logit margin is <= -15 (and, where the model
#: bounds its head's input, until no input can give them a margin above -1). It met the
#: most depth goals on held-out models of the rules measured
#: (experiments/results/deep.md); still an output-layer change (docs/depth.md).
DEFAULT_MOVE = "reassign"
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class ForgetReport:
  """What :func:`forget` did, whatever the move.

  Attributes:
    move: the move's registry name.
    acts_on: what the move changes (:data:`mnemonic_jax.forgetting.moves.ACTS_ON`).
    classes: the forgotten classes, sorted.
    exclude: classes left out of both the forgotten and the remaining codes.
    before: code scores of the input parameters.
    after: code scores of the result.
    met: whether the move's rule was met (None: a move without a rule, Algorithm 2 with
      given lambdas).
    verified: what the result was checked on: ``"every input"`` where the model bounds
      its head's input (a sigmoid or tanh layer, or a LayerNorm, before the head;
      :mod:`mnemonic_jax.models.bounds`) and under that bound no input at all can be
      classified as a forgotten class; else ``"codes"``: ``met`` was checked on the
      mnemonic codes alone and E_F on real images is not guaranteed (an image may hold
      its class with a larger margin than any code).
    seconds: wall-clock seconds of the move, compilation excluded.
    compile_seconds: seconds JAX spent compiling inside it (0 when compiled before).
    details: the move's own typed record (e.g.
      :class:`~mnemonic_jax.forgetting.moves.algorithm2.Algorithm2Details`,
      :class:`~mnemonic_jax.forgetting.moves.paper.PaperDetails`,
      :class:`~mnemonic_jax.forgetting.moves.stepping.StepDetails`).
    changed: whether any parameter entry differs from the input's. False when the move's
      step is 0 or rounds to 0 in the parameters' dtype (lambdas too small for float16):
      nothing was forgotten, and :func:`forget` warns
      (:class:`mnemonic_jax.errors.NothingMovedWarning`).
  """

  move: str
  acts_on: str
  classes: tuple[int, ...]
  exclude: tuple[int, ...]
  before: CodeScores
  after: CodeScores
  met: bool | None
  verified: str
  seconds: float
  compile_seconds: float
  details: Any
  changed: bool = True

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able record (the bundle's history entry is built on it; ``changed`` is in it
    only when False)."""
    scores = lambda s: {k: float(v) for k, v in s.items()}
    out = {"move": self.move, "acts_on": self.acts_on, "classes": list(self.classes),
           "met": self.met, "verified": self.verified, "seconds": self.seconds,
           "compile_seconds": self.compile_seconds, "before": scores(self.before),
           "after": scores(self.after), **self.details.to_dict()}
    if self.exclude:
      out["exclude"] = list(self.exclude)
    if not self.changed:
      out["changed"] = False
    return out


def resolve_move(move: "str | moves_lib.Move | None" = None, lambda1: Any = None,
                 lambda2: Any = None) -> moves_lib.Move:
  """The move :func:`forget` makes.

  ``move`` by name or object; without one, :data:`DEFAULT_MOVE`; with both lambdas given
  as numbers the paper's Algorithm 2 with them (``move`` may then be ``"algorithm2"``, or
  ``"paper"`` or ``moves.Paper()``, whose Fisher options it keeps:
  :meth:`~mnemonic_jax.forgetting.moves.Move.with_lambdas`), and with ``"auto"`` lambdas
  the paper's move with its data-free search of them (``move`` may then be ``"paper"``
  or a ``Paper`` object). ``None`` means not given.

  Raises:
    ValueError: an unknown move; one lambda without the other, or a number beside
      ``"auto"`` (or ``"Auto"``); lambdas with a move that chooses its own step, with an
      ``Algorithm2`` object (it holds its own), or with a ``Paper`` object that sets its search.
    TypeError: a lambda that is not a number; a move neither a name nor a move object (a
      move class: pass an instance).
  """
  moves_lib.base.check_move(move)
  for label, value in (("lambda1", lambda1), ("lambda2", lambda2)):
    typo = isinstance(value, str) and value != AUTO and value.strip().lower() == AUTO
    if typo or isinstance(value, str) and value != AUTO and AUTO in (lambda1, lambda2):
      raise (errors.BadRequest if typo else errors.BadRequestType)(  # Not "both ... 'auto'".
          f"{label} must be a positive number or {AUTO!r} (lower case), got {value!r}")
  name = move.name if isinstance(move, moves_lib.Move) else move
  auto = [isinstance(v, str) and v == AUTO for v in (lambda1, lambda2)]
  given = [v is not None and not a for v, a in zip((lambda1, lambda2), auto)]
  if any(auto):
    if any(given):
      raise errors.BadRequest("lambda1 and lambda2 are either both numbers or both 'auto'")
    if name not in (None, "paper"):
      raise errors.BadRequest(f"lambdas 'auto' ask for the paper's move and its search of "
                              f"them (move='paper'), not move={name!r}")
    return moves_lib.get("paper" if move is None else move)
  if any(given) and not all(given):
    raise errors.BadRequest("give both lambda1 and lambda2, or neither")
  if not any(given):
    return moves_lib.get(DEFAULT_MOVE if move is None else move)
  if move is None or move == "algorithm2":
    return moves_lib.Algorithm2(lambda1=lambda1, lambda2=lambda2)
  # By name or object alike, the move says what numbers beside it mean (Move.with_lambdas):
  # Algorithm 2 with them for the paper's move, a refusal saying what to pass otherwise.
  return moves_lib.get(move).with_lambdas(lambda1, lambda2)


def forget(apply_fn: ApplyFn, params: PyTree, codes: chex.Array, forget: Sequence[int],
           lambda1: float | str | None = None, lambda2: float | str | None = None, *,
           move: "str | moves_lib.Move | None" = None, exclude: Sequence[int] = ()
           ) -> tuple[PyTree, ForgetReport]:
  """Forgets whole classes in one shot, from the mnemonic codes alone (no training data).

  Yamashita, Yamada, Shibata, "One-Shot Machine Unlearning with Mnemonic Code", ACML
  2024. The move is :data:`DEFAULT_MOVE` (``reassign``) unless ``move`` names another of
  :data:`mnemonic_jax.forgetting.moves.MOVES` (or is a move object with its options,
  e.g. ``moves.Paper(rule=Rule(margin=10))``); numbers for ``lambda1`` and ``lambda2``
  run the paper's Algorithm 2 exactly as published (``moves.Algorithm2``).

  Compiled once: every move's programs are module-level ``jax.jit`` functions taking the
  ``apply_fn`` as a pytree argument, so a second call with equal model, shapes and
  dtypes, whatever its classes and lambdas, compiles nothing (``report.compile_seconds
  == 0``).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)``, nothing updated (BatchNorm in
      inference mode, e.g. :func:`mnemonic_jax.inference_apply_fn`).
    params: trained parameters, a pytree of float arrays of any float dtype; the result
      has the same structure and dtypes.
    codes: ``(C, *input_shape)`` float mnemonic codes the model was trained with.
    forget: integer class ids to forget; not empty, no duplicates, not every class.
    lambda1: upper bound of the per-tensor step (eq. 7; paper: 1e-3 MNIST, 1e-5
      CIFAR-10), with ``lambda2``; ``None`` for the move's own choice; ``"auto"`` (either
      or both, the other ``None``) for the paper's move with its data-free search of the
      lambdas. With ``move="paper"`` numbers run them (``report.move == "algorithm2"``).
    lambda2: bound of the largest move per tensor (eq. 7; paper: 10 MNIST, 1e4 CIFAR-10).
    move: a registered name or a :class:`~mnemonic_jax.forgetting.moves.Move`.
    exclude: classes neither forgotten nor remaining (e.g. those an earlier request
      forgot, :meth:`mnemonic_jax.Bundle.earlier_forgotten`): scored in neither set.

  Returns:
    ``(new_params, report)``, a :class:`ForgetReport`. A move that did not meet its rule
    (``report.met`` False) also warns, with
    :class:`mnemonic_jax.errors.RuleNotMetWarning`; given lambdas that leave fewer
    remaining codes right than before warn with its subclass
    :class:`mnemonic_jax.errors.RemainingCodesLostWarning`, and a move that left every
    parameter unchanged (its step rounds to 0 in their dtype; ``report.changed`` False)
    with its subclass :class:`mnemonic_jax.errors.NothingMovedWarning`.

  Raises:
    TypeError: class ids that are not integers, a lambda that is not a number, non-float
      params or codes, an ``apply_fn`` that does not return one logits array.
    ValueError: bad classes (out of range, duplicated, none, or nothing left to remain);
      NaN or inf in params or codes; codes that do not fit the model or a number of
      logits that differs from the number of codes; a model that updates state, whose
      logits for one code change with the other codes of the batch, that returns
      probabilities, or whose logits on the codes are not finite (before or after the
      move); a Flax variables dict with other collections as params; a class both in
      ``forget`` and ``exclude``; an
      unknown move, lambdas with a move that chooses its own step (or ``"auto"`` with
      ``move="algorithm2"``, or ``move="algorithm2"`` without lambdas), a lambda that is
      not finite and > 0 or that the params' dtype cannot carry (beyond its largest value,
      below its smallest positive one: ``_validate.lambdas``); a result that is not
      finite; a model without output bias for the moves that lower it (``bias``,
      ``erase``, ``project``, ``reassign``, ``shrink+bias``: those whose class sets
      ``needs_output_bias``).

  Example:
    >>> new_params, report = forget(apply_fn, params, codes, [1], 1e-2, 10.0)
    >>> report.move, report.classes, report.details.sign in (1, -1)
    ('algorithm2', (1,), True)
    >>> new_params, report = forget(apply_fn, params, codes, [1])  # The "reassign" move.
    >>> report.move, report.acts_on, report.after.forget_accuracy
    ('reassign', 'output layer', 0.0)
  """
  chosen = resolve_move(move, lambda1, lambda2)
  request = validate_request(apply_fn, params, codes, forget, exclude)
  start = time.perf_counter()
  with CompileClock() as clock:
    model_checks.check_model(request, params)
    moved = chosen(params, request)
    new_params = jax.block_until_ready(moved.params)
    changed = not _unchanged(params, new_params)
  total = time.perf_counter() - start
  model_checks.check_result(moved.after)
  report = ForgetReport(
      move=chosen.name, acts_on=chosen.acts_on, classes=request.classes,
      exclude=request.exclude, before=jax.tree.map(float, moved.before),
      after=jax.tree.map(float, moved.after), met=moved.met,
      verified=("every input" if moves_lib.outputs.ruled_out_everywhere(request, new_params)
                else "codes"), seconds=max(total - clock.seconds, 0.0),
      compile_seconds=clock.seconds, details=moved.details, changed=changed)
  if not changed:
    dtypes = sorted({jnp.dtype(x.dtype).name for x in jax.tree.leaves(new_params)})
    remedy = ("use larger lambdas, or none (a data-free move)" if report.move == "algorithm2"
              else "try another move (docs/depth.md compares them)")
    missed = (" did not meet its rule on the codes (report.met is False) and"
              if report.met is False else "")
    warnings.warn(
        f"move {report.move!r}{missed} left every parameter unchanged (its step is 0 or "
        f"rounds to 0 in the parameters' {', '.join(dtypes)}), so nothing was forgotten: "
        f"{_sides(report.before, report.after)}; {remedy}", errors.NothingMovedWarning,
        stacklevel=2)
  elif report.met is False:
    warnings.warn(
        f"move {report.move!r} did not meet its rule on the codes (report.met is False): "
        f"{_sides(report.before, report.after)}; another move may (docs/depth.md compares "
        "them)", errors.RuleNotMetWarning, stacklevel=2)
  elif report.met is None and report.after.remain_accuracy < report.before.remain_accuracy:
    warnings.warn(
        f"move {report.move!r} with the given lambdas cost the remaining classes: "
        f"{_sides(report.before, report.after)}; smaller lambdas, or move='paper' (which "
        "searches them on the codes), keep them", errors.RemainingCodesLostWarning,
        stacklevel=2)
  return new_params, report


@jax.jit
def _equal_flags(old: list, new: list) -> jax.Array:
  """Per leaf pair, whether every entry is equal (jitted: one program per structure)."""
  return jnp.stack([jnp.all(a == b) for a, b in zip(old, new)])


def _unchanged(old: PyTree, new: PyTree) -> bool:
  """Whether every entry of ``new`` equals ``old``'s (the same structure). Leaves that are
  the same object are skipped; arrays in host memory are compared in place (no program),
  others by one jitted comparison and one transfer of its flags."""
  pairs = [(a, b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)) if a is not b]
  if not pairs:
    return True
  if all(_validate.on_host(a) and _validate.on_host(b) for a, b in pairs):
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs)
  return bool(np.all(np.asarray(_equal_flags([a for a, _ in pairs], [b for _, b in pairs]))))


def _sides(before: Any, after: Any) -> str:
  """Both sides of a rule, after the move against before: which one gave way shows."""
  return (f"the forgotten classes' codes {100 * after.forget_accuracy:.0f}% right, margin "
          f"{after.forget_margin:.3g} (before {100 * before.forget_accuracy:.0f}%, "
          f"{before.forget_margin:.3g}); the remaining classes' codes "
          f"{100 * after.remain_accuracy:.0f}% right, smallest margin "
          f"{after.remain_margin:.3g} (before {100 * before.remain_accuracy:.0f}%, "
          f"{before.remain_margin:.3g})")
