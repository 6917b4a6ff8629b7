import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import forgetting
from mnemonic_jax.forgetting import moves
from mnemonic_jax.forgetting.moves import paper_search as ls
from mnemonic_jax.forgetting.moves.grid_boundary import boundary_points

from codes_support import mlp_fitted_to_codes

NUM_CLASSES = 5
GRID = (tuple(np.logspace(-5, 0, 6)), tuple(np.logspace(-2, 4, 7)))


@pytest.fixture(scope="module")
def trained():
  """A tiny MLP trained on its codes only, so every code is classified right."""
  return mlp_fitted_to_codes(NUM_CLASSES, 32)


def in_forget_mask(classes):
  return jnp.zeros(NUM_CLASSES, bool).at[jnp.asarray(classes)].set(True)


def candidates(params, codes, apply_fn, classes):
  """``fn(lambda1, lambda2, sign) -> (params + sign * delta, delta)``, computed directly."""
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, classes)

  @jax.jit
  def fn(lambda1, lambda2, sign):
    delta = mj.perturbation(f_forget, f_remain, lambda1, lambda2)
    return jax.tree.map(lambda p, d: p + sign * d, params, delta), delta

  return fn


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_grid_scores_equal_direct_computation(trained):
  apply_fn, params, codes = trained
  g = ls.select_lambdas(apply_fn, params, codes, [1], grid=GRID, chunk=5, strategy="full").grid
  assert g.lambda1.size == 6 * 7 * 2
  assert set(np.unique(g.sign)) == {-1, 1}
  direct = candidates(params, codes, apply_fn, [1])
  for i in (0, 13, 40, 83):
    p, delta = direct(g.lambda1[i], g.lambda2[i], g.sign[i])
    want = mj.code_scores(apply_fn, p, codes, in_forget_mask([1]))
    np.testing.assert_allclose(g.forget_margin[i], want.forget_margin, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.remain_margin[i], want.remain_margin, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.remain_accuracy[i], want.remain_accuracy)
    norm = np.sqrt(sum(float(jnp.sum(d ** 2)) for d in jax.tree.leaves(delta)))
    np.testing.assert_allclose(g.size[i], norm, rtol=1e-4)
    np.testing.assert_allclose(
        g.max_move[i], max(float(jnp.max(d)) for d in jax.tree.leaves(delta)), rtol=1e-5)


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_chunking_does_not_change_the_scores(trained):
  apply_fn, params, codes = trained
  a = ls.select_lambdas(apply_fn, params, codes, [2], grid=GRID, chunk=1, strategy="full")
  b = ls.select_lambdas(apply_fn, params, codes, [2], grid=GRID, chunk=7, strategy="full")
  np.testing.assert_allclose(a.grid.forget_margin, b.grid.forget_margin, rtol=1e-5, atol=1e-5)
  assert a.index == b.index


@pytest.mark.parametrize("strategy", ["pruned", "full"])  # "boundary": tested below.
def test_choice_meets_the_rule_and_is_the_smallest_that_does(trained, strategy):
  apply_fn, params, codes = trained
  rule = ls.Rule(margin=2.0, guard=0.5)
  result = ls.select_lambdas(apply_fn, params, codes, [3], grid=GRID, rule=rule,
                             strategy=strategy)
  i = result.index
  g = ls.select_lambdas(apply_fn, params, codes, [3], grid=GRID, rule=rule,
                        strategy="full").grid  # Every candidate, to check the minimum.
  assert result.met and result.fallback is None
  assert (result.lambda1, result.lambda2, result.sign) == (g.lambda1[i], g.lambda2[i], g.sign[i])
  assert g.forget_margin[i] <= -2.0
  assert g.remain_accuracy[i] == 1.0
  assert g.remain_margin[i] >= 0.5 * float(result.before.remain_margin)
  ok = ((g.forget_margin <= -2.0) & (g.remain_accuracy == 1.0)
        & (g.remain_margin >= 0.5 * float(result.before.remain_margin)))
  assert g.size[i] == g.size[ok].min()
  # The margin target is binding: a weaker target picks a smaller move.
  weak = ls.select_lambdas(apply_fn, params, codes, [3], grid=GRID,
                           rule=ls.Rule(margin=0.0, guard=0.5), strategy=strategy)
  assert weak.grid.size[weak.index] <= g.size[i]


def test_the_paper_move_applies_the_chosen_candidate(trained):
  apply_fn, params, codes = trained
  rule = ls.Rule(margin=1.0, guard=0.5)
  new_params, report = mj.forget(apply_fn, params, codes, [0, 4],
                                 move=moves.Paper(grid=GRID, rule=rule))
  search = report.details.search
  l1, l2 = search.grid.lambda1[search.index], search.grid.lambda2[search.index]
  assert search.met and report.met and report.move == "paper"
  assert (report.details.lambda1, report.details.lambda2, report.details.sign) == (
      l1, l2, search.sign)
  assert report.classes == (0, 4)
  want, _ = candidates(params, codes, apply_fn, [0, 4])(l1, l2, search.sign)
  chex.assert_trees_all_close(new_params, want, rtol=1e-5, atol=1e-6)
  after = mj.code_scores(apply_fn, new_params, codes, in_forget_mask([0, 4]))
  chex.assert_trees_all_close(report.after, after, rtol=1e-5, atol=1e-5)
  assert float(after.forget_accuracy) == 0.0 and float(after.remain_accuracy) == 1.0
  assert float(after.forget_margin) <= -1.0
  assert report.seconds > 0 and report.compile_seconds >= 0  # 0 if the search was compiled.
  # The paper's forget() at the chosen lambdas builds the same two candidates +-delta and
  # keeps one of them: its kept one is the direct computation with its sign, and the
  # search's choice scores as forget()'s candidate of the same sign (whichever it kept).
  paper_params, paper_report = mj.forget(apply_fn, params, codes, [0, 4], l1, l2)
  sign = paper_report.details.sign
  want, _ = candidates(params, codes, apply_fn, [0, 4])(l1, l2, sign)
  chex.assert_trees_all_close(paper_params, want, rtol=1e-5, atol=1e-6)
  paper_by_sign = {sign: paper_report.after, -sign: paper_report.details.rejected}
  chex.assert_trees_all_close(report.after, paper_by_sign[report.details.sign], rtol=1e-5,
                              atol=1e-5)
  assert search.to_dict()["met"] and search.to_dict()["lambda1"] == l1


def synthetic_grid(forget_margin, remain_margin, size, remain_accuracy=None,
                   before_remain=4.0):
  n = len(size)
  before = forgetting.CodeScores(
      forget_accuracy=jnp.float32(1.0), remain_accuracy=jnp.float32(1.0),
      forget_margin=jnp.float32(3.0), remain_margin=jnp.float32(before_remain))
  return ls.GridScores(
      lambda1=np.arange(1, n + 1, dtype=float), lambda2=np.ones(n), sign=np.ones(n, int),
      forget_accuracy=(np.asarray(forget_margin) > 0).astype(float),
      remain_accuracy=np.ones(n) if remain_accuracy is None else np.asarray(remain_accuracy),
      forget_margin=np.asarray(forget_margin, float),
      remain_margin=np.asarray(remain_margin, float),
      size=np.asarray(size, float), max_move=np.asarray(size, float)[::-1].copy(),
      before=before)


def test_select_rule_on_synthetic_scores():
  grid = synthetic_grid(
      forget_margin=[-1.0, -6.0, -9.0, -20.0, -7.0],
      remain_margin=[4.0, 3.0, 1.0, 3.5, 2.5],
      size=[0.1, 0.5, 0.2, 2.0, 0.6],
      remain_accuracy=[1.0, 1.0, 1.0, 1.0, 0.75])
  # Candidate 0 does not forget, 2 breaks the guard (1 < 0.5 * 4), 4 loses a code: 1 wins.
  assert ls.select_on_grid(grid, ls.Rule(margin=5.0, guard=0.5))[:2] == (1, True)
  # Without the guard, the smaller move 2 wins.
  assert ls.select_on_grid(grid, ls.Rule(margin=5.0, guard=0.0))[:2] == (2, True)
  # A stricter target leaves only 3.
  assert ls.select_on_grid(grid, ls.Rule(margin=10.0, guard=0.5))[:2] == (3, True)
  # Ordered by the largest single move instead (max_move is size reversed): 3 is smallest.
  assert ls.select_on_grid(grid, ls.Rule(margin=5.0, guard=0.5, order="max"))[:2] == (3, True)
  # Lexicographic lambdas: candidate 1 has the smallest lambda1 among those that qualify.
  assert ls.select_on_grid(grid, ls.Rule(margin=5.0, guard=0.5, order="lambdas"))[:2] == (1, True)
  # Unreachable target: fall back to the lowest forgotten margin that keeps the rest.
  assert ls.select_on_grid(grid, ls.Rule(margin=50.0, guard=0.5))[:2] == (3, False)
  # Unreachable guard (0.95 * 4 = 3.8 leaves only candidate 0, which does not forget):
  # by default the guard gives way: of 2 and 3, which reach -8 with every remaining code
  # right, 3 disturbs the rest least; with fallback="target", candidate 0 is kept.
  assert ls.select_on_grid(grid, ls.Rule(margin=8.0, guard=0.95))[:2] == (3, False)
  rule = ls.Rule(margin=8.0, guard=0.95, fallback="target")
  assert ls.select_on_grid(grid, rule)[:2] == (0, False)


def test_select_falls_back_to_paper_criterion_when_nothing_keeps_the_rest():
  grid = synthetic_grid(forget_margin=[-3.0, 2.0], remain_margin=[-1.0, -2.0], size=[1.0, 0.1],
                        remain_accuracy=[0.75, 0.5])
  assert ls.select_on_grid(grid, ls.Rule(margin=1.0))[:2] == (0, False)


@pytest.mark.parametrize("kwargs, message", [
    ({"grid": ((), (1.0,))}, "must not be empty"),
    ({"grid": ((1e-3, -1.0), (1.0,))}, "positive"),
    ({"grid": ((1e-3,), (np.inf,))}, "positive"),
])
def test_bad_grid_is_rejected(trained, kwargs, message):
  apply_fn, params, codes = trained
  with pytest.raises(ValueError, match=message):
    ls.select_lambdas(apply_fn, params, codes, [0], **kwargs)


def test_bad_classes_and_rules_are_rejected(trained):
  apply_fn, params, codes = trained
  with pytest.raises(ValueError, match="cannot forget every class"):
    ls.select_lambdas(apply_fn, params, codes, list(range(NUM_CLASSES)), grid=GRID)
  with pytest.raises(ValueError, match="guard"):
    ls.Rule(guard=1.5)
  with pytest.raises(ValueError, match="margin"):
    ls.Rule(margin=-1.0)
  with pytest.raises(ValueError, match="order"):
    ls.Rule(order="biggest")
  with pytest.raises(ValueError, match="fallback"):
    ls.Rule(fallback="none")


_RULES = [ls.DEFAULT_RULE, ls.Rule(margin=1.0, guard=0.5),
          ls.Rule(margin=40.0, guard=0.9),  # Met by no candidate.
          ls.Rule(margin=2.0, order="max", fallback="target"),
          ls.Rule(margin=2.0, order="lambdas")]
_CLASS_SETS = [[0], [2], [3], [0, 4]]


# Every rule with one class set (each set, both chunks) by default; the 15 other pairs slow.
@pytest.mark.parametrize("rule, classes", [
    pytest.param(rule, classes, marks=() if j == i % len(_CLASS_SETS) else pytest.mark.slow)
    for i, rule in enumerate(_RULES) for j, classes in enumerate(_CLASS_SETS)])
def test_the_pruned_search_chooses_what_the_full_grid_chooses(trained, classes, rule):
  apply_fn, params, codes = trained
  full = ls.select_lambdas(apply_fn, params, codes, classes, grid=GRID, rule=rule,
                           strategy="full")
  # chunk 1: one candidate after the other, remaining codes skipped where the forgotten
  # ones miss the target (the CPU default); chunk 4: vectorised.
  chunk = 1 if classes in ([0], [0, 4]) else 4
  pruned = ls.select_lambdas(apply_fn, params, codes, classes, grid=GRID, rule=rule,
                             strategy="pruned", chunk=chunk)
  assert (pruned.lambda1, pruned.lambda2, pruned.sign, pruned.met, pruned.fallback) == (
      full.lambda1, full.lambda2, full.sign, full.met, full.fallback)
  # Its reported scores of the choice are the full ones (verified on every code).
  for field in ("forget_margin", "remain_margin", "remain_accuracy", "forget_accuracy"):
    np.testing.assert_allclose(getattr(pruned.grid, field)[pruned.index],
                               getattr(full.grid, field)[full.index], rtol=1e-5, atol=1e-5)


def test_the_pruned_search_scores_a_subset_of_the_codes(trained, monkeypatch):
  apply_fn, params, codes = trained
  monkeypatch.setattr(ls, "SUBSET_REMAIN", 2)  # Forgotten code + 2 of the 5 remaining.
  full = ls.select_lambdas(apply_fn, params, codes, [1], grid=GRID, strategy="full")
  pruned = ls.select_lambdas(apply_fn, params, codes, [1], grid=GRID, chunk=4)
  assert (pruned.lambda1, pruned.lambda2, pruned.sign) == (full.lambda1, full.lambda2,
                                                           full.sign)


@pytest.mark.parametrize("chunk", [1, 4])
def test_the_pruned_search_runs_forgotten_codes_in_blocks(trained, monkeypatch, chunk):
  """More forgotten classes than a block: several blocks, the last one padded."""
  apply_fn, params, codes = trained
  monkeypatch.setattr(ls, "HEAD_BLOCK", 2)
  rule = ls.Rule(margin=2.0, guard=0.5)
  full = ls.select_lambdas(apply_fn, params, codes, [0, 2, 3], grid=GRID, rule=rule,
                           strategy="full")
  pruned = ls.select_lambdas(apply_fn, params, codes, [0, 2, 3], grid=GRID, rule=rule,
                             chunk=chunk)
  assert (pruned.index, pruned.met, pruned.fallback) == (full.index, full.met, full.fallback)
  g = pruned.grid
  scored = np.isfinite(g.forget_margin)
  for field in ("forget_margin", "forget_accuracy"):
    np.testing.assert_allclose(getattr(g, field)[scored], getattr(full.grid, field)[scored],
                               rtol=1e-5, atol=1e-5)
  assert np.unique(g.forget_accuracy[scored]).size > 1  # Codes of both blocks counted.


def test_the_pruned_search_scores_remaining_codes_only_where_the_target_is_reached(trained):
  apply_fn, params, codes = trained
  rule = ls.Rule(margin=2.0, guard=0.5)
  pruned = ls.select_lambdas(apply_fn, params, codes, [3], grid=GRID, rule=rule, chunk=1)
  full = ls.select_lambdas(apply_fn, params, codes, [3], grid=GRID, rule=rule,
                           strategy="full")
  assert pruned.met and pruned.index == full.index
  g = pruned.grid
  scored = np.isfinite(g.forget_margin)
  np.testing.assert_allclose(g.forget_margin[scored], full.grid.forget_margin[scored],
                             rtol=1e-5, atol=1e-5)
  missed = scored & (g.forget_margin > -rule.margin)
  assert missed.any() and np.isnan(g.remain_margin[missed]).all()
  assert np.isfinite(g.remain_margin[scored & ~missed]).all()
  # Candidates of smaller move than the choice were all scored (none met the rule).
  assert scored[g.size < g.size[pruned.index]].all()


def test_the_pruned_search_keeps_every_code_wrong_before_in_its_subset(trained, monkeypatch):
  """Untrained parameters get codes wrong: the subset grows past SUBSET_REMAIN to hold them."""
  apply_fn, trained_params, codes = trained
  params = jax.tree.map(lambda p: p[::-1] if p.ndim == 2 else p, trained_params)
  wrong = jnp.argmax(apply_fn(params, codes), -1) != jnp.arange(NUM_CLASSES)
  assert int(jnp.sum(wrong[jnp.arange(NUM_CLASSES) != 1])) >= 2
  monkeypatch.setattr(ls, "SUBSET_REMAIN", 1)
  rule = ls.Rule(margin=0.5, guard=0.0)
  full = ls.select_lambdas(apply_fn, params, codes, [1], grid=GRID, rule=rule,
                           strategy="full")
  pruned = ls.select_lambdas(apply_fn, params, codes, [1], grid=GRID, rule=rule, chunk=1)
  assert (pruned.index, pruned.met, pruned.fallback) == (full.index, full.met, full.fallback)
  for field in ("remain_margin", "remain_accuracy"):
    np.testing.assert_allclose(getattr(pruned.grid, field)[pruned.index],
                               getattr(full.grid, field)[full.index], rtol=1e-5, atol=1e-5)
  # Every estimate is an optimistic bound of the full score, and an accuracy.
  g, f = pruned.grid, full.grid
  seen = np.isfinite(g.remain_margin)
  assert seen.sum() > 1
  assert (g.remain_margin[seen] >= f.remain_margin[seen] - 1e-4).all()
  assert (g.remain_accuracy[seen] >= f.remain_accuracy[seen] - 1e-6).all()
  assert (g.remain_accuracy[seen] <= 1.0).all()


def test_boundary_points_find_the_smallest_lambda1_per_line_by_bisection():
  grid1, grid2 = np.logspace(-4, 0, 9), np.array([0.1, 1.0, 10.0])
  l1, l2, sign = ls._grid_arrays(grid1, grid2)
  # Monotone lines: the forgotten codes reach -1 from lambda1 index k(lambda2, sign) on.
  first = {(0.1, 1.0): 9, (1.0, 1.0): 4, (10.0, 1.0): 0, (0.1, -1.0): 7, (1.0, -1.0): 8,
           (10.0, -1.0): 2}
  k = np.array([first[(b, s)] for b, s in zip(l2, sign)])
  truth = np.where(np.searchsorted(grid1, l1) >= k, -5.0, 3.0)
  margin = np.full(l1.size, np.nan)
  calls = []

  def score(ids):
    calls.append(len(ids))
    margin[ids] = truth[ids]

  points = boundary_points(l1, l2, sign, np.arange(l1.size), margin, -1.0, score,
                           ls.PRUNED_BATCH)
  want = [i for i in range(l1.size) if truth[i] < 0 and np.searchsorted(grid1, l1[i]) == k[i]]
  assert sorted(points) == sorted(want)  # No point on the line that never reaches it.
  assert sum(calls) <= 6 * 4 < l1.size  # 4 rounds of at most 6 lines, not every candidate.
  with pytest.raises(ValueError, match="full grid"):
    boundary_points(l1[1:], l2[1:], sign[1:], np.arange(l1.size - 1),
                    np.full(l1.size - 1, np.nan), -1.0, score, ls.PRUNED_BATCH)


@pytest.mark.parametrize("classes, rule", [([1], ls.DEFAULT_RULE), ([2], ls.Rule(margin=2.0)),
                                           ([0, 4], ls.Rule(margin=1.0, guard=0.5)),
                                           ([3], ls.Rule(margin=40.0, guard=0.9))])
def test_the_boundary_search_chooses_what_the_full_grid_chooses_here(trained, classes, rule):
  """On this model the rule's tests are monotone in the lambdas, so the choice is the same
  (and when nothing meets the rule, the exact search decides)."""
  apply_fn, params, codes = trained
  full = ls.select_lambdas(apply_fn, params, codes, classes, grid=GRID, rule=rule,
                           strategy="full")
  fast = ls.select_lambdas(apply_fn, params, codes, classes, grid=GRID, rule=rule,
                           strategy="boundary")
  assert (fast.index, fast.met, fast.fallback) == (full.index, full.met, full.fallback)
  np.testing.assert_allclose(fast.grid.remain_margin[fast.index],
                             full.grid.remain_margin[full.index], rtol=1e-5, atol=1e-5)
  if full.met:  # It scored fewer candidates than there are.
    assert np.isfinite(fast.grid.forget_margin).mean() < 1.0
