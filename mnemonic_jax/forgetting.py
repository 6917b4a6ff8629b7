"""One-shot forgetting from the mnemonic codes alone (Algorithm 2 of the paper).

1. ``f_F``, ``f_R``: Fisher diagonals on the forgotten and remaining classes' codes.
2. ``eta = f_F / f_R`` per parameter (eq. 6), with the reference numerics.
3. ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` per parameter tensor (eq. 7).
4. Candidates ``w + alpha * eta`` and ``w - alpha * eta`` (eq. 5); keep the one whose
   codes score better: ``(1 - acc on forgotten codes) + acc on remaining codes``.

:func:`forget` runs this with given lambdas, or with ``move="paper"`` and lambdas chosen
from the codes (:mod:`mnemonic_jax.lambda_search`). Its default without lambdas is
:data:`DEFAULT_MOVE`, a rule of :mod:`mnemonic_jax.robust` that meets the goal on the
architectures where the paper's move does not (issue #11).
"""

import dataclasses
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mnemonic_jax import errors
from mnemonic_jax import _jit, _validate
from mnemonic_jax import fisher as fisher_lib

if TYPE_CHECKING:
  from mnemonic_jax.lambda_search import Rule, SearchResult
  from mnemonic_jax.robust import RobustReport

PyTree = Any
EPS = 1e-16  # The reference implementation starts both Fisher accumulators here.
AUTO = "auto"
#: The move of :func:`forget` when neither lambdas nor a move are given (issue #11):
#: lower the forgotten classes' output bias until their codes' logit margin is ``<= -15``
#: (:mod:`mnemonic_jax.robust`). Measured in ``experiments/results/robust.md``: it met
#: E_F = 100 with A_R kept on every held-out run of sigmoid, tanh and GELU MLPs and ViTs,
#: where the paper's move fails on tanh MLPs and ViTs; forgotten classes relearn as slowly
#: as after the paper's move or retraining, and one constant added back to their logits
#: undoes it (as it largely undoes the paper's move on its own sigmoid MLP).
DEFAULT_MOVE = "bias"


def resolve_move(move: "str | None", lambda1: Any, lambda2: Any) -> str:
  """The move :func:`forget` makes: ``move``, or by default :data:`DEFAULT_MOVE` when both
  lambdas are ``"auto"`` and ``"paper"`` when they are numbers.

  Raises:
    ValueError: an unknown move, or a move other than ``"paper"`` with numeric lambdas
      (the lambdas bound the paper's move only).
  """
  auto = all(isinstance(v, str) and v == AUTO for v in (lambda1, lambda2))
  if move is None:
    return DEFAULT_MOVE if auto else "paper"
  from mnemonic_jax import robust  # pylint: disable=import-outside-toplevel
  if move != "paper" and move not in robust.RULES:
    raise errors.BadRequest(f"unknown move {move!r}; use 'paper' or one of {robust.RULES}")
  if move != "paper" and not auto:
    raise errors.BadRequest(f"move={move!r} chooses its own step on the codes; leave lambda1 "
                            "and lambda2 at 'auto'")
  return move


def fisher_ratio(f_forget: PyTree, f_remain: PyTree) -> PyTree:
  """``eta = f_F / f_R`` elementwise (paper, eq. 6), with the reference numerics.

  As the reference implementation: the log-ratio ``log f_F - log f_R`` is cleaned in the
  log domain, NaN becoming 0 (``eta = 1``) and ``+inf`` the largest finite log-ratio of
  the same tensor, then exponentiated. ``-inf`` gives ``eta = 0``. Two departures, both
  where the reference would return non-finite parameters:

  * a tensor with no finite log-ratio at all uses 0 (``eta = 1``) for its ``+inf``
    entries (the reference takes the maximum of an empty set);
  * ``eta`` is clipped at the largest float32, so it stays finite (the reference's
    ``exp`` overflows to inf, and ``alpha = lambda2 / inf = 0`` then makes
    ``alpha * eta`` NaN).

  The Fishers are expected as the reference accumulates them, ``(1e-16 + sum) / n``
  (``class_fishers(..., eps=EPS)``), so neither is 0 unless a gradient underflowed.

  Args:
    f_forget: Fisher diagonal on the forgotten classes (pytree of float arrays).
    f_remain: Fisher diagonal on the remaining classes, same structure.

  Returns:
    A finite, non-negative float32 pytree shaped like the inputs.

  Example:
    >>> fisher_ratio({"w": jnp.array([4.0, 0.0])}, {"w": jnp.array([2.0, 0.0])})
    {'w': Array([2., 1.], dtype=float32)}
  """
  top = jnp.finfo(jnp.float32).max

  def ratio(ff, fr):
    log_ratio = jnp.log(ff.astype(jnp.float32)) - jnp.log(fr.astype(jnp.float32))
    log_ratio = jnp.where(jnp.isnan(log_ratio), 0.0, log_ratio)
    finite = jnp.isfinite(log_ratio)
    largest = jnp.max(jnp.where(finite, log_ratio, -jnp.inf), initial=-jnp.inf)
    largest = jnp.where(jnp.isfinite(largest), largest, 0.0)
    log_ratio = jnp.where(log_ratio == jnp.inf, largest, log_ratio)
    return jnp.minimum(jnp.exp(log_ratio), top)

  return jax.tree.map(ratio, f_forget, f_remain)


def step_sizes(eta: PyTree, lambda1: float, lambda2: float) -> PyTree:
  """Per-tensor step ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` (paper, eq. 7).

  ``lambda1`` caps the step; ``lambda2`` bounds the largest move of the tensor,
  ``alpha_l * max(eta_l) <= lambda2``. A tensor with ``max(eta_l) = 0`` gets ``lambda1``
  (it does not move anyway).

  Returns:
    A pytree of scalars, one per tensor of ``eta``.
  """
  _check_lambdas(lambda1, lambda2)
  return jax.tree.map(
      lambda e: jnp.minimum(lambda1, lambda2 / jnp.max(e, initial=0.0)), eta)


def perturbation(f_forget: PyTree, f_remain: PyTree, lambda1: float, lambda2: float
                 ) -> PyTree:
  """The parameter move ``delta = alpha * eta`` of eq. (5), up to its sign.

  Args:
    f_forget: Fisher diagonal on the forgotten classes' codes.
    f_remain: Fisher diagonal on the remaining classes' codes.
    lambda1: upper bound of the per-tensor step (eq. 7).
    lambda2: bound of the largest move per tensor (eq. 7).

  Returns:
    ``delta`` shaped like the Fishers (float32); the candidates are ``params +/- delta``.

  Example:
    >>> f_forget, f_remain = fisher_lib.class_fishers(apply_fn, params, codes, [1], eps=EPS)
    >>> delta = perturbation(f_forget, f_remain, lambda1=1e-3, lambda2=10.0)
    >>> candidate = jax.tree.map(jnp.add, params, delta)
  """
  eta = fisher_ratio(f_forget, f_remain)
  return jax.tree.map(jnp.multiply, step_sizes(eta, lambda1, lambda2), eta)


@chex.dataclass(frozen=True)
class CodeScores:
  """How a model classifies its codes, split into forgotten and remaining classes.

  Attributes:
    forget_accuracy: fraction of forgotten classes whose code is still classified right.
    remain_accuracy: fraction of remaining classes whose code is classified right.
    forget_margin: the largest logit margin (own logit minus best other) over the
      forgotten codes; negative means every forgotten code is misclassified.
    remain_margin: the smallest margin over the remaining codes.
  """

  forget_accuracy: jax.Array
  remain_accuracy: jax.Array
  forget_margin: jax.Array
  remain_margin: jax.Array

  @property
  def criterion(self) -> jax.Array:
    """The paper's selection score: ``(1 - forget_accuracy) + remain_accuracy``."""
    return 1.0 - self.forget_accuracy + self.remain_accuracy


def code_margins(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per code: its margin (own logit minus the best other) and whether it is right.

  Args:
    logits: ``(N, C)`` logits of ``N`` codes.
    labels: ``(N,)`` each code's class.

  Returns:
    ``(margin, correct)``, both ``(N,)`` float32.
  """
  logits = logits.astype(jnp.float32)
  rows = jnp.arange(logits.shape[0])
  own = logits[rows, labels]
  others = logits.at[rows, labels].set(-jnp.inf)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return own - jnp.max(others, axis=-1), correct


def code_scores(apply_fn, params: PyTree, codes: chex.Array, in_forget: chex.Array,
                in_remain: chex.Array | None = None) -> CodeScores:
  """Scores the codes (traceable). ``in_forget``, ``in_remain``: boolean masks ``(C,)``.

  ``in_remain`` defaults to ``~in_forget``; classes in neither mask are not scored.
  """
  margin, correct = code_margins(apply_fn(params, codes), jnp.arange(codes.shape[0]))
  return scores_from_margins(margin, correct, in_forget,
                             ~in_forget if in_remain is None else in_remain)


def scores_from_margins(margin: jax.Array, correct: jax.Array, in_forget: chex.Array,
                        in_remain: chex.Array) -> CodeScores:
  """:class:`CodeScores` from per-code margins and correctness (traceable)."""
  mean = lambda v, m: jnp.sum(jnp.where(m, v, 0.0)) / jnp.maximum(jnp.sum(m), 1)
  return CodeScores(
      forget_accuracy=mean(correct, in_forget),
      remain_accuracy=mean(correct, in_remain),
      forget_margin=jnp.max(jnp.where(in_forget, margin, -jnp.inf)),
      remain_margin=jnp.min(jnp.where(in_remain, margin, jnp.inf)))


@dataclasses.dataclass(frozen=True)
class ForgetReport:
  """What :func:`forget` did.

  Attributes:
    classes: the forgotten classes, sorted.
    lambda1, lambda2: the step bounds used (chosen by the search for ``"auto"``).
    sign: +1 if ``params + delta`` was kept, -1 for ``params - delta``.
    alpha: per-tensor step sizes (pytree of floats shaped like params).
    before: code scores of the input parameters.
    after: code scores of the kept candidate.
    rejected: code scores of the other candidate.
    seconds: wall-clock seconds of the forgetting computation, compilation excluded
      (the search included for ``"auto"``).
    compile_seconds: seconds spent compiling it (0 when it was compiled before).
    exclude: classes left out of both the forgotten and the remaining codes.
    search: the data-free search's result for ``"auto"``, else None.
  """

  classes: tuple[int, ...]
  lambda1: float
  lambda2: float
  sign: int
  alpha: PyTree
  before: CodeScores
  after: CodeScores
  rejected: CodeScores
  seconds: float
  compile_seconds: float
  exclude: tuple[int, ...] = ()
  search: "SearchResult | None" = None

  @property
  def met(self) -> bool | None:
    """Whether the data-free search met its rule (None with given lambdas: no rule), as
    :attr:`mnemonic_jax.robust.RobustReport.met` for the robust moves."""
    return None if self.search is None else bool(self.search.met)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary (for checkpoint history and reports)."""
    scores = lambda s: {k: float(v) for k, v in s.items()}
    out = {
        "classes": list(self.classes), "lambda1": self.lambda1, "lambda2": self.lambda2,
        "sign": self.sign, "seconds": self.seconds, "compile_seconds": self.compile_seconds,
        "before": scores(self.before), "after": scores(self.after),
        "rejected": scores(self.rejected),
    }
    if self.exclude:
      out["exclude"] = list(self.exclude)
    return out


def forget(
    apply_fn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    lambda1: float | str = AUTO,
    lambda2: float | str = AUTO,
    *,
    exclude: Sequence[int] = (),
    rule: "Rule | None" = None,
    microbatch_size: int | None = None,
    method: str = "auto",
    mesh: Mesh | None = None,
    move: str | None = None,
) -> tuple[PyTree, "ForgetReport | RobustReport"]:
  """Forgets whole classes in one shot, from the codes alone.

  Needs no training data. Three ways, by ``move`` and the lambdas:

  * the default (no lambdas, no move): :data:`DEFAULT_MOVE`, the ``"bias"`` rule of
    :mod:`mnemonic_jax.robust` (lower the forgotten classes' output bias until every
    forgotten code's margin is ``<= -rule.margin``), which holds where the paper's move
    does not (tanh MLPs, ViTs, several classes at once; ``experiments/results/robust.md``);
  * ``move="paper"``: the paper's move (Algorithm 2, eq. 5) with the step bounds from the
    data-free search (:func:`mnemonic_jax.lambda_search.forget_auto`);
  * numbers for the lambdas: the paper's Algorithm 2 as published, which keeps the
    candidate ``params +/- alpha * eta`` with the better ``(1 - acc on forgotten codes) +
    acc on remaining codes``. On a tie of that criterion the lower forgotten-code margin
    wins (the criterion saturates once every forgotten code is misclassified, the margin
    still says how firmly), and on a tie of both ``params - alpha * eta``, as the
    reference implementation keeps on any tie.

  The paper's move is compiled once: the program is cached per ``apply_fn``,
  ``microbatch_size``, ``method`` and ``mesh``, and jax compiles it once per shapes and dtypes of
  ``params`` and ``codes``; the classes and the lambdas are traced, so a second call,
  whatever its classes and lambdas, runs the compiled program (``report.compile_seconds
  == 0``).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)``, nothing updated (BatchNorm in
      inference mode, e.g. :func:`mnemonic_jax.inference_apply_fn`).
    params: trained parameters, a pytree of float arrays of any float dtype; the result
      has the same dtypes (the move is computed in float32, then cast).
    codes: ``(C, *input_shape)`` float mnemonic codes the model was trained with.
    forget: integer class ids to forget; not empty, no duplicates.
    lambda1: upper bound of the per-tensor step (paper: 1e-3 MNIST, 1e-5 CIFAR-10), or
      ``"auto"``.
    lambda2: bound of the largest move per tensor (paper: 10 MNIST, 1e4 CIFAR-10), or
      ``"auto"``.
    exclude: classes neither forgotten nor remaining, e.g. those an earlier request
      forgot (:attr:`mnemonic_jax.Bundle.forgotten_classes`): their codes are scored and
      weighed in neither set.
    rule: the data-free rule for ``"auto"`` lambdas and for the robust moves (default
      :data:`mnemonic_jax.lambda_search.DEFAULT_RULE`).
    microbatch_size, method, mesh: passed to the Fisher (see :func:`fisher_diagonal`); the
      paper's move only.
    move: ``None`` (see above), ``"paper"`` (the paper's move ``params +/- alpha * eta``,
      eq. 5) or a rule of :mod:`mnemonic_jax.robust` (``"bias"``, ``"head"``,
      ``"shrink"``, ``"signed"``, ``"steps"``, ``"dampen"``, ``"shrink+bias"``), which
      chooses its own step on the codes by ``rule``'s margin and guard: the lambdas must
      then be ``"auto"`` (see ``experiments/results/robust.md`` for where each rule meets
      the goal).

  Returns:
    ``(new_params, report)``: a :class:`ForgetReport`, or for a rule of
    :mod:`mnemonic_jax.robust` its :class:`mnemonic_jax.robust.RobustReport`.

  Raises:
    TypeError: class ids that are not integers, a lambda that is not a number or
      ``"auto"``, non-float params or codes, or an ``apply_fn`` that does not return one
      logits array.
    ValueError: bad classes (out of range, duplicated, none, or nothing left to remain);
      one lambda ``"auto"`` and not the other; a lambda that is not finite and > 0,
      exceeds the params' dtype or rounds to 0; NaN or inf in params or codes; codes
      that do not fit the model or a number of logits that differs from the number of
      codes; a model that updates state; a result that is not finite; an unknown move,
      or a robust move with numeric lambdas.

  Example:
    >>> new_params, report = forget(apply_fn, params, codes, [1], 1e-2, 10.0)
    >>> report.classes, report.sign in (1, -1)
    ((1,), True)
    >>> new_params, report = forget(apply_fn, params, codes, [1])  # The "bias" move.
    >>> report.rule, report.after.forget_accuracy
    ('bias', 0.0)
  """
  auto = (lambda1 == AUTO if isinstance(lambda1, str) else False,
          lambda2 == AUTO if isinstance(lambda2, str) else False)
  if any(auto) and not all(auto):
    raise errors.BadRequest("lambda1 and lambda2 are either both 'auto' or both numbers")
  move = resolve_move(move, lambda1, lambda2)
  if move != "paper":
    from mnemonic_jax import robust  # pylint: disable=import-outside-toplevel
    kwargs = {} if rule is None else {"margin": rule.margin, "guard": rule.guard}
    return robust.forget_robust(apply_fn, params, codes, forget, rule=move, exclude=exclude,
                                **kwargs)
  if all(auto):
    from mnemonic_jax import lambda_search  # It builds on this module.
    kwargs = {} if rule is None else {"rule": rule}
    return lambda_search.forget_auto(
        apply_fn, params, codes, forget, exclude=exclude, microbatch_size=microbatch_size,
        method=method, mesh=mesh, **kwargs)
  request = validate_request(apply_fn, params, codes, forget, exclude)
  lambda1, lambda2 = _validate.lambdas(lambda1, lambda2, params)
  static, arrays = _jit.split_callable(apply_fn)

  def make():
    def program(arrays, params, codes, in_forget, in_remain, lambdas):
      apply = _jit.merge_callable(static, arrays)
      f_forget, f_remain = fisher_lib.masked_class_fishers(
          apply, params, codes, in_forget, in_remain, eps=EPS,
          microbatch_size=microbatch_size, method=method, mesh=mesh)
      alpha, plus, minus = candidates(params, fisher_ratio(f_forget, f_remain), *lambdas)
      before, s_plus, s_minus = (code_scores(apply, p, codes, in_forget, in_remain)
                                 for p in (params, plus, minus))
      take_plus = (s_plus.criterion > s_minus.criterion) | (
          (s_plus.criterion == s_minus.criterion)
          & (s_plus.forget_margin < s_minus.forget_margin))
      choose = lambda a, b: jax.tree.map(lambda u, v: jnp.where(take_plus, u, v), a, b)
      new = choose(plus, minus)
      # Everything small in one float32 vector: one transfer to the host.
      small = jnp.stack([all_finite(new), take_plus, *jax.tree.leaves(alpha),
                         *_score_leaves(before), *_score_leaves(choose(s_plus, s_minus)),
                         *_score_leaves(choose(s_minus, s_plus))]).astype(jnp.float32)
      return new, small
    return jax.jit(program)

  program = _jit.cached(("forget", static, microbatch_size, method, mesh), make)
  lambdas = (np.float32(lambda1), np.float32(lambda2))
  out, seconds, compile_seconds = _jit.timed(
      program, arrays, params, request.codes, request.in_forget, request.in_remain, lambdas)
  new_params, small = out
  small = [float(v) for v in np.asarray(small)]
  check_finite_result(small[0], lambda1, lambda2)
  treedef = jax.tree.structure(params)
  alpha, rest = small[2:2 + treedef.num_leaves], small[2 + treedef.num_leaves:]
  before, after, rejected = (CodeScores(**dict(zip(_SCORE_FIELDS, rest[i:i + 4])))
                             for i in (0, 4, 8))
  report = ForgetReport(
      classes=request.classes, lambda1=lambda1, lambda2=lambda2,
      sign=1 if small[1] else -1, alpha=treedef.unflatten(alpha),
      before=before, after=after, rejected=rejected, seconds=seconds,
      compile_seconds=compile_seconds, exclude=request.exclude)
  return new_params, report


_SCORE_FIELDS = ("forget_accuracy", "remain_accuracy", "forget_margin", "remain_margin")


def _score_leaves(scores: CodeScores) -> list[jax.Array]:
  return [scores[k] for k in _SCORE_FIELDS]


class Request(NamedTuple):
  """A checked forgetting request (see :func:`validate_request`)."""

  codes: jax.Array
  classes: tuple[int, ...]
  exclude: tuple[int, ...]
  in_forget: jax.Array
  in_remain: jax.Array


def validate_request(apply_fn, params: PyTree, codes: chex.Array, forget: Sequence[int],
                     exclude: Sequence[int] = ()) -> Request:
  """Checks a forgetting request before any work (shared by every forgetting entry point).

  Returns:
    The request with the codes as a jax array, the sorted classes and excluded classes,
    and the boolean masks ``(C,)`` of the forgotten and of the remaining classes.

  Raises:
    TypeError, ValueError: see :func:`forget` (everything but the lambdas).
  """
  _validate.params_tree(params)
  if not hasattr(codes, "shape") or not jnp.issubdtype(jnp.result_type(codes), jnp.floating):
    raise errors.BadRequestType("codes must be a float array (C, *input_shape), got "
                                f"{getattr(codes, 'dtype', type(codes).__name__)}")
  codes = jnp.asarray(codes)
  num_classes = codes.shape[0]
  _validate.model_outputs(apply_fn, params, codes, num_classes)
  classes, exclude = _validate.forget_request(forget, num_classes, exclude)
  _validate.finite(params=params, codes=codes)
  in_forget, in_remain = fisher_lib.class_masks(classes, exclude, num_classes)
  return Request(codes, classes, exclude, in_forget, in_remain)


def candidates(params: PyTree, eta: PyTree, lambda1, lambda2
               ) -> tuple[PyTree, PyTree, PyTree]:
  """The candidates of eq. (5): ``(alpha, params + alpha * eta, params - alpha * eta)``.

  The move is computed in float32 and cast to each parameter's dtype before the add, so
  the candidates keep the parameters' dtypes.
  """
  alpha = step_sizes(eta, lambda1, lambda2)
  return (alpha, move(params, alpha, eta, 1.0), move(params, alpha, eta, -1.0))


def move(params: PyTree, alpha: PyTree, eta: PyTree, sign) -> PyTree:
  """``params + sign * alpha * eta``, in each parameter's dtype (traceable)."""
  return jax.tree.map(lambda p, a, e: p + (sign * a * e).astype(p.dtype), params, alpha, eta)


def all_finite(tree: PyTree) -> jax.Array:
  """Whether every entry of a pytree of float arrays is finite (traceable, one bool)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def check_finite_result(finite: jax.Array, lambda1: float, lambda2: float) -> None:
  """Raises if a forgetting result is not finite (it is then never returned)."""
  if not bool(finite):
    raise errors.BadRequest(f"lambda1={lambda1:g}, lambda2={lambda2:g} made parameters non-finite "
                            "(NaN or inf); use smaller lambdas")


def _check_lambdas(lambda1, lambda2):
  """The lambda checks of :func:`forget` for concrete values (traced ones pass)."""
  if not any(isinstance(v, jax.core.Tracer) for v in (lambda1, lambda2)):
    _validate.lambdas(lambda1, lambda2, {})
