"""Data-free choice of the forgetting step bounds ``lambda1``, ``lambda2`` (``"auto"``).

The paper hand-picks ``(lambda1, lambda2)`` per dataset, and a fixed pair is not equally
reliable on every class, seed and architecture. This module chooses them from the
mnemonic codes alone, never real data:

1. The class Fishers ``f_F``, ``f_R`` and ``eta = f_F / f_R`` are computed **once**.
2. Every pair of a log grid, with both signs, gives a candidate
   ``params +/- alpha(lambda1, lambda2) * eta`` (paper, eqs. 5-7), scored on the codes
   by jitted ``lax.map`` programs: every candidate on every code (``strategy="full"``),
   or, by default, only as many candidates and codes as it takes to be sure of the
   choice (``strategy="pruned"``, the same choice; see :func:`select_lambdas`).
3. :class:`Rule` picks the candidate with the **smallest perturbation** that

   * pushes every forgotten code's logit margin (own logit minus the best other) to
     ``<= -margin``;
   * keeps every remaining code that was classified right before still right;
   * keeps the smallest remaining-code margin at ``>= guard`` times its value before
     (by default ``margin = 15``, ``guard = 0.4``).

   The size of a perturbation is its L2 norm ``||alpha * eta||``. Since ``alpha`` grows
   with both lambdas, this order agrees with "smaller lambdas" wherever two pairs are
   comparable, and breaks the ties the 2-D grid leaves.

The defaults (margin 15, guard 0.4, guard gives way first) come from a sweep over
margins 8-20 and guards 0-0.8 on Fashion-MNIST (paper MNIST settings, 100 epochs) and the
bundled digits, 3 seeds each, every class and the set {0, 1, 2}: they met "E_F = 100 and
A_R at most 1 point below before" on all 66 class x seed cases, against 50 of 66 for the
paper's fixed lambdas on the same models (``experiments/results/``). Margins below 12
left some classes at E_F 90-99.9; guards of 0.5 and more, or no guard, each missed the
multi-class set on one seed (E_F 84 or A_R -1.4). These models were also the ones the
rule was chosen on: treat the numbers as in-sample. Held out (Fashion-MNIST at the
paper's 200 epochs, 3 seeds, not used to choose the rule): 30/30 single classes and 1/3
multi-class sets, against 18/30 and 0/3 for the paper's lambdas. Forgetting {0, 1, 2}
from those models is the known weak spot: on two seeds no grid candidate met the rule
(the fallback left E_F at 71.7 on one, and cost 2.6 points of A_R on the other).

Why margins and not the paper's accuracy-on-codes criterion: the criterion saturates
(every candidate misclassifying the forgotten codes scores the same), while the margin of
a forgotten code still says how firmly it is forgotten, which tracks forgetting on real
data; the remaining codes' margin says how much the rest was disturbed.

If no candidate meets the rule, ``Rule.fallback`` decides (``SearchResult.met`` is then
``False``):

* ``"guard"`` (default): relax the guard, not the target. Among the candidates that
  reach the margin target with every remaining code still right, take the one with the
  largest smallest-remaining-code margin (the least disturbed rest).
* ``"target"``: relax the target, not the guard. Among the candidates that keep the
  remaining codes as the rule asks, take the one with the lowest forgotten-code margin.

If neither set has a member, the other fallback is tried, then the best paper criterion
(then the lowest forgotten margin).

Example:
  >>> result = select_lambdas(apply_fn, params, codes, [1])
  >>> new_params, report = forget_auto(apply_fn, params, codes, [1])
  >>> (report.lambda1, report.lambda2) == (result.lambda1, result.lambda2)
  True
"""

import dataclasses
import functools
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mnemonic_jax import errors
from mnemonic_jax import _jit, forgetting
from mnemonic_jax import fisher as fisher_lib

PyTree = Any

#: Default grid: 3 points per decade, ``lambda1`` in [1e-7, 1], ``lambda2`` in [1e-3, 1e5].
LAMBDA1_GRID = tuple(float(v) for v in np.logspace(-7, 0, 22))
LAMBDA2_GRID = tuple(float(v) for v in np.logspace(-3, 5, 25))

#: ``"pruned"`` (the default) and ``"full"`` choose the same candidate; ``"boundary"``
#: the same wherever the rule's tests are monotone in the lambdas; see
#: :func:`select_lambdas`.
STRATEGIES = ("pruned", "full", "boundary")


@dataclasses.dataclass(frozen=True)
class Rule:
  """How :func:`select_lambdas` picks a candidate from the codes' scores.

  Attributes:
    margin: every forgotten code's margin must reach ``<= -margin``.
    guard: the smallest remaining-code margin must stay ``>= guard *`` its value before
      forgetting (``0`` only asks that it stays positive; ignored if it was not positive).
    order: ``"size"`` (L2 norm of the move, the default), ``"max"`` (largest single
      parameter move) or ``"lambdas"`` (lexicographic ``(lambda1, lambda2)``).
    fallback: ``"guard"`` or ``"target"``: what gives way when no candidate meets the
      rule (see the module docstring).
  """

  margin: float = 15.0
  guard: float = 0.4
  order: str = "size"
  fallback: str = "guard"

  def __post_init__(self):
    if not self.margin >= 0:
      raise errors.BadRequest(f"margin must be >= 0, got {self.margin}")
    if not 0 <= self.guard <= 1:
      raise errors.BadRequest(f"guard must be in [0, 1], got {self.guard}")
    if self.order not in ("size", "max", "lambdas"):
      raise errors.BadRequest(f"unknown order {self.order!r}; use 'size', 'max' or 'lambdas'")
    if self.fallback not in ("guard", "target"):
      raise errors.BadRequest(f"unknown fallback {self.fallback!r}; use 'guard' or 'target'")


DEFAULT_RULE = Rule()


@chex.dataclass(frozen=True)
class GridScores:
  """Code scores of every candidate of a grid (host numpy arrays, one entry per candidate).

  Attributes:
    lambda1, lambda2: the pair of each candidate.
    sign: +1 for ``params + delta``, -1 for ``params - delta``.
    forget_accuracy, remain_accuracy, forget_margin, remain_margin: as in
      :class:`mnemonic_jax.forgetting.CodeScores`.
    size: ``||delta||_2`` over all parameters.
    max_move: ``max |delta|`` over all parameters.
    before: :class:`CodeScores` of the unmodified parameters.
  """

  lambda1: np.ndarray
  lambda2: np.ndarray
  sign: np.ndarray
  forget_accuracy: np.ndarray
  remain_accuracy: np.ndarray
  forget_margin: np.ndarray
  remain_margin: np.ndarray
  size: np.ndarray
  max_move: np.ndarray
  before: forgetting.CodeScores


def _grid_arrays(grid1: Sequence[float], grid2: Sequence[float]):
  grid1 = np.asarray(grid1, np.float64).ravel()
  grid2 = np.asarray(grid2, np.float64).ravel()
  if grid1.size == 0 or grid2.size == 0:
    raise errors.BadRequest("the lambda grids must not be empty")
  if not (np.all(grid1 > 0) and np.all(grid2 > 0) and np.all(np.isfinite(grid1))
          and np.all(np.isfinite(grid2))):
    raise errors.BadRequest("every lambda on the grid must be positive and finite")
  l1, l2, sign = np.meshgrid(grid1, grid2, np.array([1.0, -1.0]), indexing="ij")
  return l1.ravel(), l2.ravel(), sign.ravel()


def _default_chunk(params: PyTree, budget_bytes: int = 2**28) -> int:
  """Candidates vectorised at once so that their parameter copies fit ``budget_bytes``."""
  nbytes = sum(4 * int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  return int(max(1, min(256, budget_bytes // max(nbytes, 1))))


def _pruned_chunk(params: PyTree) -> int:
  """The pruned search's default ``chunk``: 1 (one candidate after the other) on a CPU.

  On a CPU, vectorising candidates turns each layer's matrix product into a batched one
  with a different weight per candidate, measured 3-10x slower per candidate than one
  candidate at a time (``experiments/bench_search.py``, 1000 classes), and it computes
  the remaining codes of candidates that miss the target; elsewhere it is
  :func:`_default_chunk`.
  """
  if jax.default_backend() == "cpu":
    return 1
  return _default_chunk(params)


def make_grid_fn(apply_fn, *, chunk: int, microbatch_size: int | None = None,
                 method: str = "auto", mesh: Mesh | None = None):
  """``fn(params, codes, in_forget, in_remain, l1, l2, sign)``
  ``-> (eta, before, scores, size, max_move)``.

  Traceable; the Fishers are computed once and every candidate ``(l1[i], l2[i], sign[i])``
  is scored on the codes with ``lax.map`` in vectorised chunks of ``chunk``.
  """

  def fn(params, codes, in_forget, in_remain, l1, l2, sign):
    f_forget, f_remain = fisher_lib.masked_class_fishers(
        apply_fn, params, codes, in_forget, in_remain, eps=forgetting.EPS,
        microbatch_size=microbatch_size, method=method, mesh=mesh)
    eta = forgetting.fisher_ratio(f_forget, f_remain)
    eta_sq = jax.tree.map(lambda e: jnp.sum(jnp.square(e)), eta)
    eta_max = jax.tree.map(lambda e: jnp.max(e, initial=0.0), eta)
    before = forgetting.code_scores(apply_fn, params, codes, in_forget, in_remain)

    def one(args):
      a1, a2, s = args
      alpha = forgetting.step_sizes(eta, a1, a2)
      candidate = forgetting.move(params, alpha, eta, s)
      scores = forgetting.code_scores(apply_fn, candidate, codes, in_forget, in_remain)
      size = jnp.sqrt(sum(jax.tree.leaves(jax.tree.map(lambda a, q: a * a * q, alpha, eta_sq))))
      max_move = jnp.max(jnp.stack(jax.tree.leaves(
          jax.tree.map(lambda a, m: a * m, alpha, eta_max))))
      return scores, size, max_move

    scores, size, max_move = jax.lax.map(one, (l1, l2, sign), batch_size=chunk)
    return eta, before, scores, size, max_move

  return fn


def select(grid: GridScores, rule: Rule = DEFAULT_RULE) -> tuple[int, bool]:
  """Index of the candidate ``rule`` picks from ``grid``, and whether it met the rule.

  Pure numpy, so one grid can be re-judged under several rules.
  """
  index, met, _ = select_with_fallback(grid, rule)
  return index, met


def select_with_fallback(grid: GridScores, rule: Rule = DEFAULT_RULE
                         ) -> tuple[int, bool, str | None]:
  """:func:`select`, also naming the fallback that chose when the rule was not met.

  Returns:
    ``(index, met, fallback)``: ``fallback`` is None when the rule was met, else
    ``"guard"``, ``"target"`` (see the module docstring) or ``"criterion"`` (the best
    paper criterion, when neither fallback had a candidate).
  """
  before_ok = float(grid.before.remain_margin) > 0
  finite = np.isfinite(grid.forget_margin) & np.isfinite(grid.remain_margin)
  correct = (grid.remain_accuracy >= float(grid.before.remain_accuracy) - 1e-6) & finite
  keeps = correct.copy()
  if before_ok:
    keeps &= grid.remain_margin >= rule.guard * float(grid.before.remain_margin)
  forgets = grid.forget_margin <= -rule.margin
  met = keeps & forgets
  if rule.order == "size":
    key = (grid.size, grid.forget_margin)
  elif rule.order == "max":
    key = (grid.max_move, grid.forget_margin)
  else:
    key = (grid.lambda1, grid.lambda2, grid.forget_margin)
  if met.any():
    idx = np.flatnonzero(met)
    # np.lexsort sorts by its last key first.
    return int(idx[np.lexsort(tuple(k[idx] for k in reversed(key)))[0]]), True, None
  relax_guard = np.flatnonzero(correct & forgets)
  relax_target = np.flatnonzero(keeps)
  for fallback in (rule.fallback, "target" if rule.fallback == "guard" else "guard"):
    if fallback == "guard" and relax_guard.size:
      pool = relax_guard  # Largest remaining margin, then smallest move.
      return (int(pool[np.lexsort((grid.size[pool], -grid.remain_margin[pool]))[0]]), False,
              "guard")
    if fallback == "target" and relax_target.size:
      pool = relax_target  # Lowest forgotten margin, then smallest move.
      return (int(pool[np.lexsort((grid.size[pool], grid.forget_margin[pool]))[0]]), False,
              "target")
  criterion = 1.0 - grid.forget_accuracy + grid.remain_accuracy
  margin = np.where(np.isfinite(grid.forget_margin), grid.forget_margin, np.inf)
  return int(np.lexsort((grid.size, margin, -criterion))[0]), False, "criterion"


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """What :func:`select_lambdas` found.

  Attributes:
    lambda1, lambda2: the chosen step bounds.
    sign: +1 for ``params + delta``, -1 for ``params - delta``.
    index: the chosen candidate's index in ``grid``.
    met: whether the chosen candidate met the rule.
    fallback: None if it did, else the fallback that chose (see
      :func:`select_with_fallback`).
    rule: the rule it judged by.
    grid: the scores of every candidate.
    eta: the Fisher ratio (pytree shaped like params, float32, on device).
    before: code scores of the unmodified parameters.
    classes: the forgotten classes, sorted.
    exclude: the classes left out of both sets.
    seconds: wall-clock seconds of the search, compilation excluded.
    compile_seconds: seconds spent compiling it (0 when it was compiled before).
  """

  lambda1: float
  lambda2: float
  sign: int
  index: int
  met: bool
  fallback: str | None
  rule: Rule
  grid: GridScores
  eta: PyTree
  before: forgetting.CodeScores
  classes: tuple[int, ...]
  exclude: tuple[int, ...]
  seconds: float
  compile_seconds: float

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary (for reports and bundle history)."""
    g, i = self.grid, self.index
    return {
        "lambda1": self.lambda1, "lambda2": self.lambda2, "sign": self.sign,
        "met": bool(self.met), "fallback": self.fallback,
        "rule": dataclasses.asdict(self.rule),
        "forget_margin": float(g.forget_margin[i]), "remain_margin": float(g.remain_margin[i]),
        "remain_margin_before": float(self.before.remain_margin),
        "forget_margin_before": float(self.before.forget_margin),
        "size": float(g.size[i]), "max_move": float(g.max_move[i]),
        "candidates": int(g.lambda1.size), "search_seconds": float(self.seconds),
        "search_compile_seconds": float(self.compile_seconds),
    }

  def scores(self, index: int) -> forgetting.CodeScores:
    """Code scores of candidate ``index`` of the grid."""
    g = self.grid
    return forgetting.CodeScores(
        forget_accuracy=g.forget_accuracy[index], remain_accuracy=g.remain_accuracy[index],
        forget_margin=g.forget_margin[index], remain_margin=g.remain_margin[index])

  @property
  def opposite(self) -> int:
    """Index of the chosen pair's candidate of the other sign."""
    g, i = self.grid, self.index
    return int(np.flatnonzero((g.lambda1 == g.lambda1[i]) & (g.lambda2 == g.lambda2[i])
                              & (g.sign == -g.sign[i]))[0])


def select_lambdas(
    apply_fn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    *,
    exclude: Sequence[int] = (),
    grid: tuple[Sequence[float], Sequence[float]] = (LAMBDA1_GRID, LAMBDA2_GRID),
    rule: Rule = DEFAULT_RULE,
    chunk: int | None = None,
    strategy: str = "pruned",
    microbatch_size: int | None = None,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> SearchResult:
  """Chooses ``(lambda1, lambda2)`` for forgetting ``forget``, from the codes alone.

  Compiled once: the search's programs are cached per ``apply_fn``, ``chunk``,
  ``microbatch_size``, ``method`` and ``mesh``, and compiled once per shapes and dtypes
  of ``params``, ``codes`` and the grid (for ``"pruned"`` and ``"boundary"``, also per
  number of forgotten classes and per size of the remaining-code subset, which takes
  few values); classes and lambdas are traced values.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)`` (BatchNorm in inference mode).
    params: trained parameters.
    codes: ``(C, *input_shape)`` mnemonic codes the model was trained with.
    forget: integer class ids to forget.
    exclude: classes neither forgotten nor remaining (see
      :func:`mnemonic_jax.forgetting.forget`).
    grid: ``(lambda1 values, lambda2 values)``; every pair is tried with both signs.
    rule: how to choose (see :class:`Rule` and the module docstring).
    chunk: candidates scored at once (vectorised). By default, for ``"full"`` as many
      as fit 256 MiB of parameter copies; for ``"pruned"`` 1 on a CPU (one candidate
      after the other: faster there, and it skips work, see below), else the same.
    strategy: ``"pruned"`` (default), ``"full"`` (both choose the same candidate) or
      ``"boundary"``.
      ``"full"`` scores every candidate on every code in one program.  ``"pruned"``
      scores each distinct candidate (pairs whose per-tensor steps coincide are one)
      in the rule's order (smallest move first), :data:`PRUNED_BATCH` per call, and
      stops at the first candidate that meets the rule once verified on every code.
      Each candidate is run on the forgotten codes first; only if they reach the
      margin target (no other can meet the rule) is it also run on the
      :data:`SUBSET_REMAIN` remaining codes of smallest margin before (more, doubling,
      until every remaining code wrong before is in). On the subset the remaining
      codes' scores are optimistic bounds of the full ones (the smallest margin over
      fewer codes, the codes left out counted as right), so a candidate that fails
      there fails; a fallback choice (nothing met the rule) is made once every
      candidate's subset scores are in, and verified the same way until the chosen
      candidate's scores are the full ones. Its ``grid`` holds NaN for scores it never
      computed. Memory: ``chunk`` parameter copies and the activations of ``chunk``
      times the subset's codes, plus those of every code once per verification;
      bounded by the model and the number of classes, not by the grid. Cost at 1000
      classes (MLP 784-1000-1000, 2 shared CPU cores): 1.4-3x the fixed-lambda path,
      against 46x before the forgotten-codes-first order and one candidate at a time,
      and 150-200x for ``"full"`` (``experiments/bench_search.py``,
      ``experiments/results/bench_search.md``).
      ``"boundary"`` (not exact) first finds, per ``lambda2`` and sign, the smallest
      ``lambda1`` whose forgotten codes reach the target, by bisection on all these
      lines at once (forgotten codes only), then scores only those boundary points as
      ``"pruned"`` does, in the rule's order, verified. It chooses what the full grid
      chooses whenever the forgotten-codes test is monotone along ``lambda1`` and
      ``lambda2`` and the remaining-codes test the other way (every per-tensor step
      grows with both lambdas): then the smallest move meeting the rule is a boundary
      point. That is often but not always so: on the digits and Fashion-MNIST MLPs
      (``experiments/bench_search.py --bundles``; 9 bundles) 8 of 189,540 neighbouring
      pairs broke it and the choice was the full grid's in all 90 class cases, scoring
      about 30% of the candidates where ``"pruned"`` scores about 70%; on MLPs fitted
      to their codes alone (``bench_search.py --train-steps 60``) it chose another
      candidate in 1 of 3 or 4 calls at 10 and 100 classes and 2 of 4 at 1000, and was
      no faster there (the choice sits low among the sizes). Hence not the default.
      When no boundary point meets the rule, the ``"pruned"`` search decides (the
      fallbacks are exact).
    microbatch_size, method, mesh: passed to the Fisher.

  Returns:
    A :class:`SearchResult`.

  Raises:
    TypeError, ValueError: as :func:`mnemonic_jax.forgetting.forget` (bad classes,
      params, codes or model), or a bad grid.

  Example:
    >>> result = select_lambdas(apply_fn, params, codes, [1], grid=([1e-3, 1e-2], [10.0]))
    >>> result.lambda1 in (1e-3, 1e-2), result.met in (True, False)
    (True, True)
  """
  if strategy not in STRATEGIES:
    raise errors.BadRequest(f"unknown search strategy {strategy!r}; use one of {STRATEGIES}")
  request = forgetting.validate_request(apply_fn, params, codes, forget, exclude)
  l1, l2, sign = _grid_arrays(*grid)
  if chunk is None:
    chunk = _default_chunk(params) if strategy == "full" else _pruned_chunk(params)
  chunk = min(max(1, int(chunk)), l1.size)
  static, arrays = _jit.split_callable(apply_fn)
  settings = (static, microbatch_size, method, mesh)
  search = {"full": _full_search, "pruned": _pruned_search,
            "boundary": functools.partial(_pruned_search, boundary=True)}[strategy]
  (eta, before, grid_scores, index, met, fallback), seconds, compile_seconds = _jit.timed(
      lambda: search(settings, arrays, params, request, (l1, l2, sign), rule, chunk))
  return SearchResult(
      lambda1=float(l1[index]), lambda2=float(l2[index]), sign=int(sign[index]),
      index=index, met=met, fallback=fallback, rule=rule, grid=grid_scores, eta=eta,
      before=before, classes=request.classes, exclude=request.exclude, seconds=seconds,
      compile_seconds=compile_seconds)


def _full_search(settings, arrays, params, request, candidates, rule, chunk):
  """Every candidate scored on every code, in one program."""
  static, microbatch_size, method, mesh = settings
  l1, l2, sign = candidates

  def make():
    def program(arrays, *args):
      return make_grid_fn(_jit.merge_callable(static, arrays), chunk=chunk,
                          microbatch_size=microbatch_size, method=method, mesh=mesh)(*args)
    return jax.jit(program)

  program = _jit.cached(("search", static, chunk, microbatch_size, method, mesh), make)
  eta, before, scores, size, max_move = program(
      arrays, params, request.codes, request.in_forget, request.in_remain,
      *(np.asarray(v, np.float32) for v in (l1, l2, sign)))
  host = lambda v: np.asarray(v, np.float64)
  grid_scores = GridScores(
      lambda1=l1, lambda2=l2, sign=sign.astype(np.int64),
      forget_accuracy=host(scores.forget_accuracy), remain_accuracy=host(scores.remain_accuracy),
      forget_margin=host(scores.forget_margin), remain_margin=host(scores.remain_margin),
      size=host(size), max_move=host(max_move), before=before)
  return (eta, before, grid_scores, *select_with_fallback(grid_scores, rule))


def _pruned_search(settings, arrays, params, request, candidates, rule, chunk,
                   boundary=False):
  """The same choice as :func:`_full_search`, scoring far fewer candidates and codes.

  Exact, by four facts (see :func:`select_lambdas`): identical candidates are scored
  once; on a subset of the codes that holds every forgotten code and every remaining
  code that was wrong before, the scores are optimistic bounds of the full ones; a
  candidate whose forgotten codes miss the margin target cannot meet the rule whatever
  its remaining codes do, so those are only scored when a fallback needs them; and
  candidates are scored in the rule's order, so the first one that meets the rule on
  the full codes is the rule's choice.
  """
  static, microbatch_size, method, mesh = settings
  l1, l2, sign = candidates
  eta, eta_max, eta_sq, margin, correct, before = _cached_program(
      "search-prepare", settings, lambda apply: _prepare_fn(
          apply, microbatch_size=microbatch_size, method=method, mesh=mesh))(
      arrays, params, request.codes, request.in_forget, request.in_remain)
  eta_max, eta_sq = np.asarray(eta_max, np.float64), np.asarray(eta_sq, np.float64)
  with np.errstate(divide="ignore"):  # max eta 0: the tensor gets lambda1, as step_sizes.
    alpha = np.minimum(l1[:, None], l2[:, None] / eta_max[None])
  size = np.sqrt(np.sum(alpha ** 2 * eta_sq, axis=1))
  max_move = np.max(alpha * eta_max, axis=1)
  # Identical candidates (same step per tensor and sign): score one, copy to the rest.
  keys = np.concatenate([alpha.astype(np.float32).view(np.int32), sign[:, None]], axis=1)
  _, first, owner = np.unique(keys, axis=0, return_index=True, return_inverse=True)
  owner = first[owner.ravel()]
  # The codes scored per candidate: forgotten ones first, then the remaining ones of
  # smallest margin before (every remaining code wrong before among them).
  in_forget, in_remain = np.asarray(request.in_forget), np.asarray(request.in_remain)
  margin, correct = np.asarray(margin, np.float64), np.asarray(correct) > 0.5
  forget_ids = np.flatnonzero(in_forget)
  remain_ids = np.flatnonzero(in_remain)
  remain_ids = remain_ids[np.argsort(margin[remain_ids], kind="stable")]
  # At least SUBSET_REMAIN, doubled until every code wrong before is in: few shapes, so
  # few compilations whatever the number of codes wrong before.
  keep = SUBSET_REMAIN
  while keep < min(int(np.sum(~correct[remain_ids])), len(remain_ids)):
    keep *= 2
  outside = len(remain_ids) - min(keep, len(remain_ids))  # All right before.
  n_remain = len(remain_ids)
  others = np.flatnonzero(~in_forget)  # Every code but the forgotten ones.

  score = _cached_program("search-score", settings, lambda apply: _score_fn(
      apply, chunk=chunk, num_forget=len(forget_ids)), chunk, len(forget_ids))

  def on(ids):  # The codes are gathered inside the program: no eager op to compile.
    ids = np.concatenate([forget_ids, ids])
    return (request.codes, ids, in_forget[ids], in_remain[ids])

  on_subset, on_all = on(remain_ids[:keep]), on(others)

  n = l1.size
  rows = {k: np.full(n, np.nan) for k in _ROWS}
  exact = np.zeros(n, bool)
  grid_scores = lambda: GridScores(
      lambda1=l1, lambda2=l2, sign=sign.astype(np.int64), size=size, max_move=max_move,
      before=before, **{k: rows[k][owner] for k in _ROWS})

  def run(ids, on, target):
    out = score(arrays, params, eta, *on,
                *(np.asarray(v[ids], np.float32) for v in (l1, l2, sign)), np.float32(target))
    return [np.asarray(v, np.float64) for v in out]

  def estimate(ids, target):
    """Subset scores of ``ids``; remaining codes only where the forgotten reach ``target``."""
    f_acc, r_correct, f_margin, r_margin = run(ids, on_subset, target)
    rows["forget_accuracy"][ids] = f_acc
    rows["remain_accuracy"][ids] = (r_correct + outside) / max(n_remain, 1)
    rows["forget_margin"][ids], rows["remain_margin"][ids] = f_margin, r_margin

  def verify(i):
    f_acc, r_correct, f_margin, r_margin = run(np.array([i]), on_all, np.inf)
    rows["forget_accuracy"][i] = f_acc[0]
    rows["remain_accuracy"][i] = r_correct[0] / max(n_remain, 1)
    rows["forget_margin"][i], rows["remain_margin"][i] = f_margin[0], r_margin[0]
    exact[i] = True

  def padded(ids):
    return np.pad(ids, (0, PRUNED_BATCH - len(ids)), mode="edge")

  def in_order(ids):
    return ids[np.lexsort(tuple(reversed(_order_keys(rule, l1, l2, size, max_move, ids))))]

  def first_met(ids):
    """Estimates ``ids`` batch by batch, in order, verifying the rule's choice on every
    code, until a verified candidate meets the rule; its grid index, or None."""
    for start in range(0, len(ids), PRUNED_BATCH):
      estimate(padded(ids[start:start + PRUNED_BATCH]), -rule.margin)
      while True:
        index, met, _ = select_with_fallback(grid_scores(), rule)
        if not met or exact[owner[index]]:
          break
        verify(owner[index])
      if met:
        return index
    return None

  if boundary:
    points = _boundary_points(l1, l2, sign, owner, rows["forget_margin"], -rule.margin,
                              lambda ids: estimate(padded(ids), -np.inf))
    index = first_met(in_order(np.unique(owner[points])))
    if index is not None:
      return eta, before, grid_scores(), index, True, None
    # No boundary point met the rule: the exact search decides (below).

  order = in_order(np.unique(owner))
  index = first_met(order)
  if index is not None:
    return eta, before, grid_scores(), index, True, None
  # No candidate met the rule: the fallbacks need every candidate's remaining codes.
  missing = order[np.isnan(rows["remain_margin"][order])]
  for start in range(0, len(missing), PRUNED_BATCH):
    estimate(padded(missing[start:start + PRUNED_BATCH]), np.inf)
  while True:  # The fallbacks, on verified scores.
    index, met, fallback = select_with_fallback(grid_scores(), rule)
    if exact[owner[index]]:
      return eta, before, grid_scores(), index, met, fallback
    verify(owner[index])


def _boundary_points(l1, l2, sign, owner, forget_margin, target, score):
  """Per ``(lambda2, sign)``, the smallest ``lambda1`` whose forgotten codes reach ``target``.

  Bisection on each line of the grid at once (``ceil(log2(len(lambda1 values) + 1))``
  rounds), assuming the forgotten codes' margin test is monotone in ``lambda1`` along the
  line (every per-tensor step grows with ``lambda1``).

  Args:
    l1, l2, sign: ``(n,)`` the candidates (a full grid).
    owner: ``(n,)`` the scored candidate standing for each (identical ones share one).
    forget_margin: ``(n,)`` scores so far (NaN: not scored); filled by ``score``.
    target: the margin the forgotten codes must reach (``<=``).
    score: ``score(ids)`` fills ``forget_margin[ids]`` (``len(ids) <= PRUNED_BATCH``).

  Returns:
    The candidate ids of the boundary points (lines where no ``lambda1`` reaches the
    target have none).
  """
  values = np.unique(l1)
  _, line = np.unique(np.stack([l2, sign], 1), axis=0, return_inverse=True)
  line = line.ravel()
  table = np.full((line.max() + 1, len(values)), -1)
  table[line, np.searchsorted(values, l1)] = np.arange(len(l1))
  if (table < 0).any():
    raise errors.BadRequest("the boundary search needs the full grid of pairs")
  lo, hi = np.full(len(table), -1), np.full(len(table), len(values))
  while (hi - lo > 1).any():
    active = np.flatnonzero(hi - lo > 1)
    mid = (lo[active] + hi[active]) // 2
    ids = owner[table[active, mid]]
    todo = np.unique(ids[np.isnan(forget_margin[ids])])
    for start in range(0, len(todo), PRUNED_BATCH):
      score(todo[start:start + PRUNED_BATCH])
    reached = forget_margin[ids] <= target
    hi[active[reached]] = mid[reached]
    lo[active[~reached]] = mid[~reached]
  found = np.flatnonzero(hi < len(values))
  return table[found, hi[found]]


_ROWS = ("forget_accuracy", "remain_accuracy", "forget_margin", "remain_margin")

#: Remaining codes scored per candidate by the pruned search (those of smallest margin).
SUBSET_REMAIN = 64

#: Candidates the pruned search scores per call (in the rule's order; it stops after the
#: first call that holds the choice).
PRUNED_BATCH = 32


def _order_keys(rule, l1, l2, size, max_move, ids):
  if rule.order == "size":
    return (size[ids],)
  if rule.order == "max":
    return (max_move[ids],)
  return (l1[ids], l2[ids])


def _cached_program(name, settings, build, *extra):
  """The jitted ``build(apply_fn)``, cached per ``name``, ``settings`` and ``extra``."""
  static = settings[0]

  def make():
    def program(arrays, *args):
      return build(_jit.merge_callable(static, arrays))(*args)
    return jax.jit(program)

  return _jit.cached((name, *settings, *extra), make)


def _prepare_fn(apply_fn, *, microbatch_size, method, mesh):
  """``fn(params, codes, in_forget, in_remain)``: eta, its per-tensor max and sum of
  squares, every code's margin and correctness before, and the scores before."""

  def fn(params, codes, in_forget, in_remain):
    f_forget, f_remain = fisher_lib.masked_class_fishers(
        apply_fn, params, codes, in_forget, in_remain, eps=forgetting.EPS,
        microbatch_size=microbatch_size, method=method, mesh=mesh)
    eta = forgetting.fisher_ratio(f_forget, f_remain)
    leaves = jax.tree.leaves(eta)
    margin, correct = forgetting.code_margins(apply_fn(params, codes),
                                              jnp.arange(codes.shape[0]))
    return (eta, jnp.stack([jnp.max(e, initial=0.0) for e in leaves]),
            jnp.stack([jnp.sum(jnp.square(e)) for e in leaves]), margin, correct,
            forgetting.scores_from_margins(margin, correct, in_forget, in_remain))

  return fn


def _score_fn(apply_fn, *, chunk, num_forget):
  """``fn(params, eta, codes, labels, in_forget, in_remain, l1, l2, sign, target)``.

  The codes scored are ``codes[labels]`` (``labels``: class ids, ``in_forget`` and
  ``in_remain`` their masks): the first ``num_forget`` are the forgotten codes, the rest
  remaining (or excluded) ones.
  Per candidate: the forgotten codes' accuracy and largest margin, and, only where that
  margin is ``<= target`` (else NaN), the count of remaining codes right and their
  smallest margin. With ``chunk == 1`` candidates are scored one after the other
  (``lax.map`` without vectorising), so the remaining codes of a candidate that misses
  the target are never run through the model; with ``chunk > 1`` they are vectorised
  and every branch is computed.
  """

  def fn(params, eta, codes, labels, in_forget, in_remain, l1, l2, sign, target):
    head, tail = slice(0, num_forget), slice(num_forget, None)
    codes = codes[labels]

    def one(args):
      alpha = forgetting.step_sizes(eta, args[0], args[1])
      candidate = forgetting.move(params, alpha, eta, args[2])
      f_margin, f_correct = forgetting.code_margins(
          apply_fn(candidate, codes[head]), labels[head])
      forget_margin = jnp.max(f_margin)

      def remain(_):
        margin, correct = forgetting.code_margins(apply_fn(candidate, codes[tail]),
                                                  labels[tail])
        mask = in_remain[tail]
        return (jnp.sum(jnp.where(mask, correct, 0.0)),
                jnp.min(jnp.where(mask, margin, jnp.inf), initial=jnp.inf))

      if codes.shape[0] == num_forget:
        remaining = (jnp.float32(0.0), jnp.float32(jnp.inf))
      else:
        remaining = jax.lax.cond(forget_margin <= target, remain,
                                 lambda _: (jnp.float32(jnp.nan),) * 2, None)
      return (jnp.mean(f_correct), remaining[0], forget_margin, remaining[1])

    return jax.lax.map(one, (l1, l2, sign),
                       batch_size=None if chunk == 1 else min(chunk, l1.shape[0]))

  return fn


def _move_fn(params, eta, lambda1, lambda2, sign):
  alpha = forgetting.step_sizes(eta, lambda1, lambda2)
  new = forgetting.move(params, alpha, eta, sign)
  return new, alpha, forgetting.all_finite(new)


def _apply_move(params, eta, lambda1, lambda2, sign):
  """The chosen move, jitted once (kept on disk with the search's programs)."""
  return _jit.cached(("apply-move",), lambda: jax.jit(_move_fn))(
      params, eta, lambda1, lambda2, sign)


def forget_auto(
    apply_fn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    *,
    exclude: Sequence[int] = (),
    grid: tuple[Sequence[float], Sequence[float]] = (LAMBDA1_GRID, LAMBDA2_GRID),
    rule: Rule = DEFAULT_RULE,
    chunk: int | None = None,
    strategy: str = "pruned",
    microbatch_size: int | None = None,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, forgetting.ForgetReport]:
  """:func:`mnemonic_jax.forgetting.forget` with ``(lambda1, lambda2)`` from :func:`select_lambdas`.

  The kept candidate is the one the search chose, sign included (it may differ from the
  sign the paper's criterion would pick at the same lambdas: the rule looks at margins).
  The search's programs are cached as in :func:`select_lambdas`; the chosen move is then
  applied by a small jitted function compiled once per parameter structure. The report's
  ``after`` and ``rejected`` scores are the grid's (with the default ``"pruned"``
  strategy, ``rejected`` holds NaN where that candidate was not scored).

  Args:
    apply_fn, params, codes, forget, exclude: as in
      :func:`mnemonic_jax.forgetting.forget`.
    grid, rule, chunk, strategy, microbatch_size, method, mesh: as in
      :func:`select_lambdas`.

  Returns:
    ``(new_params, report)``: ``report`` is a :class:`ForgetReport` whose ``lambda1``,
    ``lambda2`` and ``sign`` are the chosen ones, whose ``seconds`` and
    ``compile_seconds`` cover the whole search, and whose ``search`` is the
    :class:`SearchResult`. ``new_params`` keeps the dtypes of ``params``.

  Raises:
    TypeError, ValueError: as :func:`select_lambdas`, or a result that is not finite.

  Example:
    >>> new_params, report = forget_auto(apply_fn, params, codes, [1])
    >>> report.search.met in (True, False)
    True
  """
  result = select_lambdas(
      apply_fn, params, codes, forget, exclude=exclude, grid=grid, rule=rule, chunk=chunk,
      strategy=strategy, microbatch_size=microbatch_size, method=method, mesh=mesh)
  (new_params, alpha, finite), seconds, compile_seconds = _jit.timed(
      _apply_move, params, result.eta, np.float32(result.lambda1),
      np.float32(result.lambda2), np.float32(result.sign))
  forgetting.check_finite_result(finite, result.lambda1, result.lambda2)
  report = forgetting.ForgetReport(
      classes=result.classes, lambda1=result.lambda1, lambda2=result.lambda2,
      sign=result.sign, alpha=jax.tree.map(float, alpha), before=result.before,
      after=result.scores(result.index), rejected=result.scores(result.opposite),
      seconds=seconds + result.seconds,
      compile_seconds=compile_seconds + result.compile_seconds, exclude=result.exclude,
      search=result)
  return new_params, report
