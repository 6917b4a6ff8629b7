"""The data-free search for the paper's step bounds ``(lambda1, lambda2)``.

The paper hand-picks ``(lambda1, lambda2)`` per dataset, and a fixed pair is not equally
reliable on every class, seed and architecture. :func:`select_lambdas` chooses them from
the mnemonic codes alone, never real data:

1. The class Fishers ``f_F``, ``f_R`` and ``eta = f_F / f_R`` are computed **once**.
2. Every pair of a log grid, with both signs, gives a candidate
   ``params +/- alpha(lambda1, lambda2) * eta`` (paper, eqs. 5-7), scored on the codes
   by jitted ``lax.map`` programs: every candidate on every code (``strategy="full"``),
   or, by default, only as many candidates and codes as it takes to be sure of the
   choice (``strategy="pruned"``, the same choice; see :func:`select_lambdas`).
3. :func:`mnemonic_jax.forgetting.criterion.select` picks the candidate with the
   **smallest perturbation** that meets the :class:`~mnemonic_jax.forgetting.criterion.Rule`
   (the size of a perturbation is its L2 norm ``||alpha * eta||``; since ``alpha`` grows
   with both lambdas, this order agrees with "smaller lambdas" wherever two pairs are
   comparable, and breaks the ties the 2-D grid leaves).

The move that applies the chosen pair is :class:`mnemonic_jax.forgetting.moves.paper.Paper`.
How often it meets its goal on which models: docs/results.md.

Example:
  >>> result = select_lambdas(apply_fn, params, codes, [1])
  >>> result.met in (True, False)
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

from mnemonic_jax import _validate
from mnemonic_jax.timing import timed
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule, Selection, select
from mnemonic_jax.forgetting.moves import model_checks, options
from mnemonic_jax.forgetting.moves.grid_boundary import boundary_points

PyTree = Any

#: Default grid: 3 points per decade, ``lambda1`` in [1e-7, 1], ``lambda2`` in [1e-3, 1e5].
LAMBDA1_GRID = tuple(float(v) for v in np.logspace(-7, 0, 22))
LAMBDA2_GRID = tuple(float(v) for v in np.logspace(-3, 5, 25))

#: ``"pruned"`` (the default) and ``"full"`` choose the same candidate; ``"boundary"``
#: the same wherever the rule's tests are monotone in the lambdas; see
#: :func:`select_lambdas`.
STRATEGIES = ("pruned", "full", "boundary")


@chex.dataclass(frozen=True)
class GridScores:
  """Code scores of every candidate of a grid (host numpy arrays, one entry per candidate).

  Attributes:
    lambda1, lambda2: the pair of each candidate.
    sign: +1 for ``params + delta``, -1 for ``params - delta``.
    forget_accuracy, remain_accuracy, forget_margin, remain_margin: as in
      :class:`mnemonic_jax.prim.CodeScores`.
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
  before: prim.CodeScores


def check_options(*, grid, rule, chunk, strategy, microbatch_size, method, mesh,
                  prefix: str = ""):
  """Checks the search's options (those of :func:`select_lambdas`, and of ``moves.Paper``
  with ``prefix="Paper."``) by kind and range; returns the grid as two float64 arrays.

  Raises:
    BadRequestType, BadRequest: as :func:`select_lambdas`, naming the option.
  """
  options.rule(rule, f"{prefix}rule")
  options.chunk(chunk, f"{prefix}chunk")
  _validate.choice(strategy, f"{prefix}strategy", STRATEGIES, what="search strategy")
  options.fisher(microbatch_size, method, mesh, prefix)
  return options.lambda_grid(grid, f"{prefix}grid")


def _grid_arrays(grid1: np.ndarray, grid2: np.ndarray):
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


def select_on_grid(grid: GridScores, rule: Rule = DEFAULT_RULE) -> Selection:
  """The candidate ``rule`` picks from ``grid`` (:func:`criterion.select
  <mnemonic_jax.forgetting.criterion.select>` in the rule's order); pure NumPy, so one
  grid can be re-judged under several rules."""
  return select(forget_accuracy=grid.forget_accuracy, remain_accuracy=grid.remain_accuracy,
                forget_margin=grid.forget_margin, remain_margin=grid.remain_margin,
                size=grid.size, before=grid.before, rule=rule,
                order=_order_keys(rule, grid.lambda1, grid.lambda2, grid.size, grid.max_move,
                                  slice(None)))


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """What :func:`select_lambdas` found.

  Attributes:
    lambda1, lambda2: the chosen step bounds.
    sign: +1 for ``params + delta``, -1 for ``params - delta``.
    index: the chosen candidate's index in ``grid``.
    met: whether the chosen candidate met the rule.
    fallback: None if it did, else the fallback that chose (see
      :mod:`mnemonic_jax.forgetting.criterion`).
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
  before: prim.CodeScores
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

  def scores(self, index: int) -> prim.CodeScores:
    """Code scores of candidate ``index`` of the grid."""
    g = self.grid
    return prim.CodeScores(
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
  size of the remaining-code subset, which takes few values and one only where there
  are at most :data:`SUBSET_REMAIN` + 1 classes); classes, their number and lambdas are
  traced values.

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
      bounded by the model and the number of classes, not by the grid (costs:
      docs/results.md, ``experiments/bench_search.py``).
      ``"boundary"`` (not exact) first finds, per ``lambda2`` and sign, the smallest
      ``lambda1`` whose forgotten codes reach the target, by bisection on all these
      lines at once (forgotten codes only), then scores only those boundary points as
      ``"pruned"`` does, in the rule's order, verified. It chooses what the full grid
      chooses whenever the forgotten-codes test is monotone along ``lambda1`` and
      ``lambda2`` and the remaining-codes test the other way (every per-tensor step
      grows with both lambdas): then the smallest move meeting the rule is a boundary
      point. That is often but not always so (docs/results.md), hence not the default.
      When no boundary point meets the rule, the ``"pruned"`` search decides (the
      fallbacks are exact).
    microbatch_size, method, mesh: passed to the Fisher.

  Returns:
    A :class:`SearchResult`.

  Raises:
    TypeError, ValueError: as :func:`mnemonic_jax.forgetting.forget` (bad classes,
      params, codes or model); an option of the wrong kind or out of range (a grid not a
      pair of sequences of finite positive numbers, a ``rule`` not a Rule, a ``chunk`` or
      ``microbatch_size`` not a positive int or None, an unknown ``strategy`` or
      ``method``), named in the message.

  Example:
    >>> result = select_lambdas(apply_fn, params, codes, [1], grid=([1e-3, 1e-2], [10.0]))
    >>> result.lambda1 in (1e-3, 1e-2), result.met in (True, False)
    (True, True)
  """
  request = prim.validate_request(apply_fn, params, codes, forget, exclude,
                                  entry="mj.select_lambdas")
  model_checks.check_model(request, params)
  return search(params, request, grid=grid, rule=rule, chunk=chunk, strategy=strategy,
                microbatch_size=microbatch_size, method=method, mesh=mesh)


def search(params: PyTree, request: prim.Request, *,
           grid: tuple[Sequence[float], Sequence[float]] = (LAMBDA1_GRID, LAMBDA2_GRID),
           rule: Rule = DEFAULT_RULE, chunk: int | None = None, strategy: str = "pruned",
           microbatch_size: int | None = None, method: str = "auto",
           mesh: Mesh | None = None) -> SearchResult:
  """:func:`select_lambdas` on a checked request (the arguments as there)."""
  l1, l2, sign = _grid_arrays(*check_options(
      grid=grid, rule=rule, chunk=chunk, strategy=strategy, microbatch_size=microbatch_size,
      method=method, mesh=mesh))
  if chunk is None:
    chunk = _default_chunk(params) if strategy == "full" else _pruned_chunk(params)
  chunk = min(int(chunk), l1.size)  # Checked >= 1; more than the grid holds is all of it.
  fisher = dict(microbatch_size=None if microbatch_size is None else int(microbatch_size),
                method=method, mesh=mesh)  # Static: a Python int whatever kind was given.
  run = {"full": _full_search, "pruned": _pruned_search,
         "boundary": functools.partial(_pruned_search, boundary=True)}[strategy]
  (eta, before, grid_scores, index, met, fallback), seconds, compile_seconds = timed(
      lambda: run(fisher, params, request, (l1, l2, sign), rule, chunk))
  return SearchResult(
      lambda1=float(l1[index]), lambda2=float(l2[index]), sign=int(sign[index]),
      index=index, met=met, fallback=fallback, rule=rule, grid=grid_scores, eta=eta,
      before=before, classes=request.classes, exclude=request.exclude, seconds=seconds,
      compile_seconds=compile_seconds)


def _full_search(fisher, params, request, candidates, rule, chunk):
  """Every candidate scored on every code, in one program."""
  l1, l2, sign = candidates
  eta, before, scores, size, max_move = _full_program(
      request.apply_fn, params, request.codes, request.in_forget, request.in_remain,
      request.fisher_weights, *(np.asarray(v, np.float32) for v in (l1, l2, sign)),
      chunk=chunk, **fisher)
  host = lambda v: np.asarray(v, np.float64)
  grid_scores = GridScores(
      lambda1=l1, lambda2=l2, sign=sign.astype(np.int64),
      forget_accuracy=host(scores.forget_accuracy), remain_accuracy=host(scores.remain_accuracy),
      forget_margin=host(scores.forget_margin), remain_margin=host(scores.remain_margin),
      size=host(size), max_move=host(max_move), before=before)
  return (eta, before, grid_scores, *select_on_grid(grid_scores, rule))


def _pruned_search(fisher, params, request, candidates, rule, chunk, boundary=False):
  """The same choice as :func:`_full_search`, scoring far fewer candidates and codes.

  Exact, by four facts (see :func:`select_lambdas`): identical candidates are scored
  once; on a subset of the codes that holds every forgotten code and every remaining
  code that was wrong before, the scores are optimistic bounds of the full ones; a
  candidate whose forgotten codes miss the margin target cannot meet the rule whatever
  its remaining codes do, so those are only scored when a fallback needs them; and
  candidates are scored in the rule's order, so the first one that meets the rule on
  the full codes is the rule's choice.
  """
  l1, l2, sign = candidates
  eta, eta_max, eta_sq, margin, correct = _prepare_program(
      request.apply_fn, params, request.codes, request.fisher_weights, **fisher)
  before = prim.scores_from_margins(np.asarray(margin), np.asarray(correct),
                                    np.asarray(request.in_forget),
                                    np.asarray(request.in_remain), xp=np)
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

  # Shapes that do not depend on the classes: forgotten ids padded to whole blocks, their
  # number traced; remaining ones padded to min(keep, C - 1) or C - 1 (all), masked.
  num_classes = in_forget.shape[0]
  block = min(HEAD_BLOCK, num_classes - 1)
  head = np.zeros(-(-(num_classes - 1) // block) * block, np.int32)
  head[:len(forget_ids)] = forget_ids
  score = functools.partial(_score_program, request.apply_fn, chunk=chunk, block=block)

  def on(ids, size):  # The codes are gathered inside the program: no eager op to compile.
    tail, mask = np.zeros(size, np.int32), np.zeros(size, bool)
    tail[:len(ids)], mask[:len(ids)] = ids, in_remain[ids]
    return (request.codes, head, np.int32(len(forget_ids)), tail, mask, np.int32(len(ids)))

  width = num_classes - 1  # The most remaining codes a request can have.
  on_subset, on_all = on(remain_ids[:keep], min(keep, width)), on(others, width)

  n = l1.size
  rows = {k: np.full(n, np.nan) for k in _ROWS}
  exact = np.zeros(n, bool)
  grid_scores = lambda: GridScores(
      lambda1=l1, lambda2=l2, sign=sign.astype(np.int64), size=size, max_move=max_move,
      before=before, **{k: rows[k][owner] for k in _ROWS})

  def run(ids, on, target, batch=True):
    """Scores of the candidates ``ids`` (at most :data:`PRUNED_BATCH`), padded to that
    many: one program for any number. With ``chunk == 1`` only the first ``len(ids)``
    are computed; vectorised ones compute the padding too, so a single candidate
    (``batch=False``) then goes alone."""
    n = len(ids)
    if chunk == 1 or batch:
      ids = np.pad(ids, (0, PRUNED_BATCH - n), mode="edge")
    out = score(params, eta, *on, *(np.asarray(v[ids], np.float32) for v in (l1, l2, sign)),
                np.int32(n), np.float32(target))
    return [np.asarray(v, np.float64)[:n] for v in out]

  def estimate(ids, target):
    """Subset scores of ``ids``; remaining codes only where the forgotten reach ``target``."""
    f_acc, r_correct, f_margin, r_margin = run(ids, on_subset, target)
    rows["forget_accuracy"][ids] = f_acc
    rows["remain_accuracy"][ids] = (r_correct + outside) / max(n_remain, 1)
    rows["forget_margin"][ids], rows["remain_margin"][ids] = f_margin, r_margin

  def verify(i):
    f_acc, r_correct, f_margin, r_margin = run(np.array([i]), on_all, np.inf, batch=False)
    rows["forget_accuracy"][i] = f_acc[0]
    rows["remain_accuracy"][i] = r_correct[0] / max(n_remain, 1)
    rows["forget_margin"][i], rows["remain_margin"][i] = f_margin[0], r_margin[0]
    exact[i] = True

  def in_order(ids):
    return ids[np.lexsort(tuple(reversed(_order_keys(rule, l1, l2, size, max_move, ids))))]

  def first_met(ids):
    """Estimates ``ids`` batch by batch, in order, verifying the rule's choice on every
    code, until a verified candidate meets the rule; its grid index, or None."""
    for start in range(0, len(ids), PRUNED_BATCH):
      estimate(ids[start:start + PRUNED_BATCH], -rule.margin)
      while True:
        index, met, _ = select_on_grid(grid_scores(), rule)
        if not met or exact[owner[index]]:
          break
        verify(owner[index])
      if met:
        return index
    return None

  if boundary:
    points = boundary_points(l1, l2, sign, owner, rows["forget_margin"], -rule.margin,
                             lambda ids: estimate(ids, -np.inf), PRUNED_BATCH)
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
    estimate(missing[start:start + PRUNED_BATCH], np.inf)
  while True:  # The fallbacks, on verified scores.
    index, met, fallback = select_on_grid(grid_scores(), rule)
    if exact[owner[index]]:
      return eta, before, grid_scores(), index, met, fallback
    verify(owner[index])


_ROWS = ("forget_accuracy", "remain_accuracy", "forget_margin", "remain_margin")

#: Remaining codes scored per candidate by the pruned search (those of smallest margin).
SUBSET_REMAIN = 64

#: Forgotten codes the pruned search runs through a candidate at once (more: in blocks).
HEAD_BLOCK = 8

#: Candidates the pruned search scores per call (in the rule's order; it stops after the
#: first call that holds the choice).
PRUNED_BATCH = 32


def _order_keys(rule, l1, l2, size, max_move, ids):
  if rule.order == "size":
    return (size[ids],)
  if rule.order == "max":
    return (max_move[ids],)
  return (l1[ids], l2[ids])


@functools.partial(jax.jit, static_argnames=("chunk", "block"))
def _score_program(apply_fn, params, eta, codes, head, num_forget, tail, tail_mask, tail_count,
                   l1, l2, sign, count, target, *, chunk, block):
  """Scores the candidates ``(l1, l2, sign)`` on some of the codes (one program for any
  number of forgotten classes).

  Forgotten codes: ``codes[head[:num_forget]]`` (int32 ids padded to whole blocks),
  one alone or blocks of ``block`` in a loop of traced length; remaining codes:
  ``codes[tail]`` where ``tail_mask``, ``tail_count`` of them before the padding, one
  alone or all at once. One code is never batched with padding: on the CPU a model's
  rows are bit for bit the same in any batch of two or more, not alone.
  Per candidate: the forgotten codes' accuracy and largest margin, and, only where that
  margin is ``<= target`` (else NaN), the count of remaining codes right and their
  smallest margin. With ``chunk == 1`` the first ``count`` candidates are scored one
  after the other (the rest is padding, NaN), so the remaining codes of a candidate that
  misses the target are never run through the model; with ``chunk > 1`` every candidate
  is scored, vectorised, and every branch is computed.
  """
  def one(args):
    alpha = prim.step_sizes(eta, args[0], args[1])
    candidate = prim.apply_step(params, alpha, eta, args[2])

    def scored(ids, valid):
      margin, correct = prim.code_margins(apply_fn(candidate, codes[ids]), ids)
      return (jnp.sum(jnp.where(valid, correct, 0.0)),
              jnp.max(jnp.where(valid, margin, -jnp.inf)),
              jnp.min(jnp.where(valid, margin, jnp.inf), initial=jnp.inf))

    def blocks(_):
      def step(i, carry):
        ids = jax.lax.dynamic_slice_in_dim(head, i * block, block)
        right, largest, _ = scored(ids, i * block + jnp.arange(block) < num_forget)
        return carry[0] + right, jnp.maximum(carry[1], largest)

      return jax.lax.fori_loop(0, (num_forget + block - 1) // block, step,
                               (jnp.float32(0.0), jnp.float32(-jnp.inf)))

    right, forget_margin = jax.lax.cond(
        num_forget == 1, lambda _: scored(head[:1], jnp.ones(1, bool))[:2], blocks, None)

    def remain(_):
      right, _, smallest = jax.lax.cond(
          tail_count == 1, lambda _: scored(tail[:1], tail_mask[:1]),
          lambda _: scored(tail, tail_mask), None)
      return right, smallest

    remaining = jax.lax.cond(forget_margin <= target, remain,
                             lambda _: (jnp.float32(jnp.nan),) * 2, None)
    return (right / num_forget.astype(jnp.float32), remaining[0], forget_margin, remaining[1])

  if chunk > 1:
    return jax.lax.map(one, (l1, l2, sign), batch_size=min(chunk, l1.shape[0]))

  def each(i, rows):  # The first ``count`` candidates, one after the other; NaN after.
    return tuple(r.at[i].set(v.astype(jnp.float32))
                 for r, v in zip(rows, one((l1[i], l2[i], sign[i]))))

  return jax.lax.fori_loop(0, count, each, (jnp.full(l1.shape, jnp.nan, jnp.float32),) * 4)


@functools.partial(jax.jit, static_argnames=("chunk", "microbatch_size", "method", "mesh"))
def _full_program(apply_fn, params, codes, in_forget, in_remain, fisher_weights, l1, l2, sign,
                  *, chunk, microbatch_size, method, mesh):
  """``(eta, before, scores, size, max_move)``: the Fishers once, then every candidate
  ``(l1[i], l2[i], sign[i])`` scored on every code, ``lax.map`` in chunks of ``chunk``."""
  f_forget, f_remain = fisher_lib.weighted_class_fishers(
      apply_fn, params, codes, fisher_weights, microbatch_size=microbatch_size, method=method,
      mesh=mesh)
  eta = prim.fisher_ratio(f_forget, f_remain)
  eta_sq = jax.tree.map(lambda e: jnp.sum(jnp.square(e)), eta)
  eta_max = jax.tree.map(lambda e: jnp.max(e, initial=0.0), eta)
  before = prim.code_scores(apply_fn, params, codes, in_forget, in_remain)

  def one(args):
    alpha = prim.step_sizes(eta, args[0], args[1])
    candidate = prim.apply_step(params, alpha, eta, args[2])
    scores = prim.code_scores(apply_fn, candidate, codes, in_forget, in_remain)
    size = jnp.sqrt(sum(jax.tree.leaves(jax.tree.map(lambda a, q: a * a * q, alpha, eta_sq))))
    max_move = jnp.max(jnp.stack(jax.tree.leaves(
        jax.tree.map(lambda a, m: a * m, alpha, eta_max))))
    return scores, size, max_move

  scores, size, max_move = jax.lax.map(one, (l1, l2, sign), batch_size=chunk)
  return eta, before, scores, size, max_move


@functools.partial(jax.jit, static_argnames=("microbatch_size", "method", "mesh"))
def _prepare_program(apply_fn, params, codes, fisher_weights, *, microbatch_size, method,
                     mesh):
  """eta, its per-tensor max and sum of squares, and every code's margin and correctness
  before (scored on the host: :func:`~mnemonic_jax.forgetting.primitives.scores_from_margins`
  with ``xp=numpy`` gives the traced values)."""
  f_forget, f_remain = fisher_lib.weighted_class_fishers(
      apply_fn, params, codes, fisher_weights, microbatch_size=microbatch_size, method=method,
      mesh=mesh)
  eta = prim.fisher_ratio(f_forget, f_remain)
  leaves = jax.tree.leaves(eta)
  margin, correct = prim.code_margins(apply_fn(params, codes), jnp.arange(codes.shape[0]))
  return (eta, jnp.stack([jnp.max(e, initial=0.0) for e in leaves]),
          jnp.stack([jnp.sum(jnp.square(e)) for e in leaves]), margin, correct)


@jax.jit
def apply_lambdas(params: PyTree, eta: PyTree, lambda1, lambda2, sign):
  """``(params + sign * alpha * eta, alpha)`` for a chosen pair (jitted; the caller checks
  on the host that the result is finite, :func:`~mnemonic_jax.forgetting.primitives.finite`,
  so this program has no reductions of its own beyond the step sizes)."""
  alpha = prim.step_sizes(eta, lambda1, lambda2)
  return prim.apply_step(params, alpha, eta, sign), alpha
