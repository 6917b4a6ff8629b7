import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import forgetting, models
from mnemonic_jax.forgetting import moves

from random_support import init_variables, uniform


# A float64 transcription of the reference implementation's formulas (PAPER.md, Algorithm
# 2, steps 2-4): accumulators start at 1e-16 and are divided by the class counts; the
# log-ratio is cleaned in the log domain (NaN -> 0, +inf -> the tensor's largest finite
# value) and exponentiated; alpha = min(lambda1, lambda2 / max eta) per tensor.
def reference_eta(sum_forget, n_forget, sum_remain, n_remain):
  f_forget = (1e-16 + np.asarray(sum_forget, np.float64)) / n_forget
  f_remain = (1e-16 + np.asarray(sum_remain, np.float64)) / n_remain
  with np.errstate(all="ignore"):
    log_ratio = np.log(f_forget) - np.log(f_remain)
  log_ratio[np.isnan(log_ratio)] = 0.0
  log_ratio[np.isposinf(log_ratio)] = log_ratio[np.isfinite(log_ratio)].max()
  return np.exp(log_ratio)


def reference_delta(eta, lambda1, lambda2):
  return min(lambda1, lambda2 / eta.max()) * eta


CRAFTED = {  # Sums of squared gradients over the forgotten / remaining codes.
    "zero gradients": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    "inf": ([np.inf, 2.0, 1.0], [1.0, 1.0, 4.0]),
    "nan": ([np.nan, 1.0, 4.0], [1.0, 1.0, 2.0]),
    "both inf": ([np.inf, 3.0, 1.0], [np.inf, 1.0, 1.0]),
    "remain inf": ([1.0, 3.0, 0.0], [np.inf, 1.0, 1.0]),
    "ordinary": ([0.5, 3e-3, 7.0], [1e-4, 2.0, 7.0]),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
@pytest.mark.parametrize("n_forget, n_remain", [(1, 9), (3, 7)])
def test_ratio_and_move_match_a_float64_transcription_of_the_reference(case, n_forget, n_remain):
  sum_forget, sum_remain = (np.asarray(v, np.float32) for v in CRAFTED[case])
  # What class_fishers(..., eps=EPS) returns: (1e-16 + sum) / n, in float32.
  f_forget = {"w": (jnp.float32(forgetting.EPS) + sum_forget) / n_forget}
  f_remain = {"w": (jnp.float32(forgetting.EPS) + sum_remain) / n_remain}
  ratio, perturbation = mj.fisher_ratio, mj.perturbation
  if not all(np.isfinite(v).all() for v in CRAFTED[case]):
    # Concrete NaN or inf Fishers are refused; traced ones (inside the moves' programs)
    # follow the reference's rules.
    with pytest.raises(ValueError, match="non-finite"):
      mj.fisher_ratio(f_forget, f_remain)
    ratio, perturbation = jax.jit(mj.fisher_ratio), jax.jit(mj.perturbation)
  eta = ratio(f_forget, f_remain)["w"]
  want = reference_eta(sum_forget, n_forget, sum_remain, n_remain)
  np.testing.assert_allclose(eta, want, rtol=1e-5)
  delta = perturbation(f_forget, f_remain, 1e-3, 10.0)["w"]
  np.testing.assert_allclose(delta, reference_delta(want, 1e-3, 10.0), rtol=1e-5)


def test_ratio_departs_from_the_reference_only_where_it_would_be_non_finite():
  # exp(log-ratio) overflows float32: the reference's eta is inf and its move NaN.
  # Under jit, as inside the moves: concrete inf Fishers are refused.
  f_forget = {"w": jnp.array([1e30, 1.0]), "v": jnp.full(2, jnp.inf)}
  f_remain = {"w": jnp.array([1e-16, 1.0]), "v": jnp.ones(2)}
  eta = jax.jit(mj.fisher_ratio)(f_forget, f_remain)
  chex.assert_tree_all_finite(eta)
  assert float(eta["w"][0]) == float(jnp.finfo(jnp.float32).max)
  np.testing.assert_allclose(eta["v"], 1.0)  # No finite log-ratio in the tensor: log 0.
  chex.assert_tree_all_finite(jax.jit(mj.perturbation)(f_forget, f_remain, 1e-3, 10.0))


def test_class_fishers_accumulate_as_the_reference_does():
  apply_fn, params, codes = tiny_model()
  grad = jax.jit(jax.grad(lambda p, x, y: mj.cross_entropy(apply_fn(p, x), y)[0]))
  host = np.asarray(codes)  # Sliced on the host: no program per slice.
  grads = [jax.device_get(grad(params, host[c:c + 1], np.array([c], np.int32)))
           for c in range(4)]
  want = lambda cs: jax.tree.map(
      lambda *g: (forgetting.EPS + sum(np.square(np.asarray(x, np.float64)) for x in g))
      / len(cs), *[grads[c] for c in cs])
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, [1], eps=forgetting.EPS)
  chex.assert_trees_all_close(f_forget, want([1]), rtol=2e-5, atol=1e-12)
  chex.assert_trees_all_close(f_remain, want([0, 2, 3]), rtol=2e-5, atol=1e-12)
  # exclude= leaves a class out of both means.
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, [1], exclude=[2])
  chex.assert_trees_all_close(f_remain, mj.fisher_diagonal(
      apply_fn, params, host[[0, 3]], np.array([0, 3], np.int32)), rtol=1e-5)


def test_a_full_tie_keeps_params_minus_delta_as_the_reference():
  apply_fn, params, codes = tiny_model()
  # Moves far below float32 resolution: both candidates equal params, so they tie.
  _, report = mj.forget(apply_fn, params, codes, [1], lambda1=1e-30, lambda2=1e-30)
  assert report.after == report.details.rejected and report.details.sign == -1


def test_step_sizes_and_perturbation():
  f_forget = {"a": jnp.array([4.0, 1.0]), "b": jnp.array([1e6, 0.0])}
  f_remain = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([1.0, 1.0])}
  alpha = mj.step_sizes(mj.fisher_ratio(f_forget, f_remain), lambda1=1e-3, lambda2=10.0)
  np.testing.assert_allclose(alpha["a"], 1e-3)  # lambda1 binds: 10 / 4 > 1e-3.
  np.testing.assert_allclose(alpha["b"], 1e-5, rtol=1e-5)  # lambda2 binds: 10 / 1e6.
  delta = mj.perturbation(f_forget, f_remain, lambda1=1e-3, lambda2=10.0)
  np.testing.assert_allclose(delta["a"], [4e-3, 1e-3], rtol=1e-5)
  np.testing.assert_allclose(delta["b"], [10.0, 0.0], rtol=1e-4)  # log 0 = -inf: eta 0.


@pytest.mark.parametrize("lambdas, error", [
    ((0.0, 1.0), ValueError), ((1.0, -1.0), ValueError), ((np.inf, 1.0), ValueError),
    ((1.0, np.nan), ValueError), ((True, 1.0), TypeError), (("1", 1.0), TypeError)])
def test_bad_lambdas_are_rejected_as_forget_rejects_them(lambdas, error):
  for fn in (mj.perturbation, lambda f, r, *l: mj.step_sizes(mj.fisher_ratio(f, r), *l)):
    with pytest.raises(error, match="must be a positive"):
      fn({"a": jnp.ones(1)}, {"a": jnp.ones(1)}, *lambdas)


def tiny_model(num_classes=4, seed=0):
  """An MLP 9-16-C, its parameters and codes, drawn with NumPy (random_support: nothing
  compiles for them)."""
  model = mj.create_model("mlp", num_classes, hidden=(16,))
  codes = uniform(seed, (num_classes, 3, 3, 1))
  params = init_variables(model, codes, seed + 1)["params"]
  return mj.inference_apply_fn(model, {}), params, codes


def test_forget_keeps_the_better_candidate_and_reports():
  apply_fn, params, codes = tiny_model()
  new_params, report = mj.forget(apply_fn, params, codes, [1, 2], lambda1=1e-2, lambda2=10.0)
  chex.assert_trees_all_equal_shapes(new_params, params)
  chex.assert_tree_all_finite(new_params)
  assert report.classes == (1, 2) and report.details.sign in (1, -1)
  assert report.met is None  # Given lambdas: no rule to meet.
  assert float(report.after.criterion) >= float(report.details.rejected.criterion)
  # The kept candidate is params + sign * delta.
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, [1, 2], eps=forgetting.EPS)
  delta = mj.perturbation(f_forget, f_remain, 1e-2, 10.0)
  want = jax.tree.map(lambda p, d: np.asarray(p) + report.details.sign * np.asarray(d), params,
                      delta)
  chex.assert_trees_all_close(new_params, want, rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(
      report.after, mj.code_scores(apply_fn, new_params, codes, np.array([0, 1, 1, 0], bool)))
  assert report.seconds > 0 and report.to_dict()["classes"] == [1, 2]


def test_forget_never_makes_nan_parameters():
  apply_fn, params, codes = tiny_model()
  params = jax.tree.map(lambda p: np.asarray(p).copy(), params)
  for p in jax.tree.leaves(params):
    p[..., 0] = 0.0  # Dead units: zero Fisher.
  new_params, _ = mj.forget(apply_fn, params, codes, [0], lambda1=1.0, lambda2=1e30)
  chex.assert_tree_all_finite(new_params)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"forget": [4]}, ValueError, "out of range"), ({"forget": []}, ValueError, "no class"),
    ({"forget": [0, 0]}, ValueError, "duplicated"),
    ({"forget": [0, 1, 2, 3]}, ValueError, "every class"),
    ({"forget": [0, 1], "exclude": [2, 3]}, ValueError, "at least one must remain"),
    ({"forget": [0], "lambda1": 0.0}, ValueError, "lambda1 must be a positive"),
    ({"forget": [0], "lambda2": -5.0}, ValueError, "lambda2 must be a positive"),
    ({"forget": [0], "lambda2": float("nan")}, ValueError, "lambda2 must be a positive"),
    ({"forget": [0], "lambda2": "10"}, TypeError, "lambda2 must be a positive number"),
    ({"forget": [0], "lambda1": None}, ValueError, "give both lambda1 and lambda2"),
    ({"forget": [0], "lambda1": "auto"}, ValueError, "both numbers or both 'auto'"),
    ({"forget": [0], "lambda1": "auto", "lambda2": "auto", "move": "bias"}, ValueError,
     "ask for the paper's move"),
    ({"forget": [0], "lambda1": "auto", "lambda2": None, "move": "algorithm2"}, ValueError,
     "ask for the paper's move"),
    ({"forget": [0], "move": "bias"}, ValueError, "chooses its own step"),
    ({"forget": [0], "move": "nonsense"}, ValueError, "unknown move")])
def test_forget_bad_input(kwargs, error, message):
  apply_fn, params, codes = tiny_model()
  kwargs = {"lambda1": 1e-2, "lambda2": 10.0, **kwargs}
  with pytest.raises(error, match=message):
    mj.forget(apply_fn, params, codes, **kwargs)


@pytest.mark.parametrize("how", ["jit params", "jit classes", "vmap", "grad",
                                 "class_fishers jit classes"])
def test_forgetting_under_a_transformation_is_refused_by_name(how):
  """Forgetting decides on the host: under jax.jit, vmap or grad it says so in one
  BadRequestType instead of JAX's tracer-conversion error from deep inside a move."""
  apply_fn, params, codes = tiny_model()
  forget = lambda p, classes=(0,): mj.forget(apply_fn, p, codes, classes, 1e-2, 10.0)[0]
  calls = {
      "jit params": lambda: jax.jit(forget)(params),
      "jit classes": lambda: jax.jit(lambda c: forget(params, c))(jnp.array([0])),
      "vmap": lambda: jax.vmap(forget)(jax.tree.map(lambda x: x[None], params)),
      "grad": lambda: jax.grad(lambda p: jnp.sum(jax.tree.leaves(forget(p))[0]))(params),
      "class_fishers jit classes": lambda: jax.jit(
          lambda c: mj.class_fishers(apply_fn, params, codes, c))(jnp.array([0])),
  }
  with pytest.raises(mj.errors.BadRequestType, match="jax.jit, (jax.)?vmap or (jax.)?grad"):
    calls[how]()


def test_auto_lambdas_run_the_paper_s_move_and_its_search():
  apply_fn, params, codes = tiny_model()
  for lambdas in (("auto", "auto"), ("auto", None)):
    _, report = mj.forget(apply_fn, params, codes, [0], *lambdas)
    assert report.move == "paper" and report.details.search is not None
  assert mj.forget(apply_fn, params, codes, [0])[1].move == mj.forgetting.DEFAULT_MOVE


def test_forget_rejects_codes_of_the_wrong_shape_or_count():
  apply_fn, params, codes = tiny_model()
  with pytest.raises(ValueError, match="do not fit the model"):
    mj.forget(apply_fn, params, jnp.zeros((4, 5, 5, 1)), [0])
  with pytest.raises(ValueError, match="one per class"):
    mj.forget(apply_fn, params, codes[:3], [0])


def test_forget_works_for_a_batchnorm_model(conv_bn_bundle):
  bundle = conv_bn_bundle  # Conv -> BatchNorm -> Dense (ResNet-18 itself: test_fisher).
  codes = uniform(0, (10, *bundle.input_shape))
  new_params, report = mj.forget(bundle.apply_fn(), bundle.params, codes, [0],
                                 move=moves.Paper(microbatch_size=2))
  chex.assert_trees_all_equal_structs(new_params, bundle.params)
  chex.assert_tree_all_finite(new_params)
  assert set(report.details.alpha) == set(bundle.params)


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_repeated_calls_compile_once(conv_bn_bundle):
  """Second calls, with other classes, lambdas and BatchNorm statistics, compile nothing.

  No ``jax.clear_caches()`` first (it made the rest of the worker compile everything
  again): a program an earlier test compiled may make a first call compile nothing,
  which the check allows; what it checks is the second call."""
  bundle = conv_bn_bundle
  codes = uniform(0, (10, *bundle.input_shape))
  apply = lambda stats: mj.inference_apply_fn(bundle.model, stats)
  calls = [  # Fixed lambdas; the data-free search; the default move; the Fishers.
      lambda stats, c: mj.forget(apply(stats), bundle.params, codes, [c], 1e-3 * (c + 1),
                                 10.0 + c)[1],
      lambda stats, c: mj.forget(apply(stats), bundle.params, codes, [c, c + 1],
                                 move="paper")[1],
      lambda stats, c: mj.forget(apply(stats), bundle.params, codes, [c, c + 1])[1],
      lambda stats, c: mj.class_fishers(apply(stats), bundle.params, codes, [c]),
  ]
  stats = [bundle.batch_stats, jax.tree.map(lambda a: a * 1.5 + 0.1, bundle.batch_stats)]
  for call in calls:
    with mj.CompileClock() as first:
      out = call(stats[0], 0)
    with mj.CompileClock() as second:
      again = call(stats[1], 3)
    del first
    assert second.seconds == 0, call
    if isinstance(out, forgetting.ForgetReport):
      assert again.compile_seconds == 0


def test_bundles_from_metadata_share_programs():
  """A model rebuilt from JSON metadata (lists, not tuples) is hashed by value.

  Each ``Bundle.apply_fn()`` builds a new module; with a list attribute it could only be
  matched by identity, and every forget recompiled (about 5 s on the Fashion MLP).
  Shapes no other test uses (7 hidden units, inputs of 7): the first call compiles
  without ``jax.clear_caches()``, which would make the rest of the worker compile again.
  """
  model = lambda: models.create_model("mlp", 4, hidden=[7])
  codes = uniform(0, (4, 7))
  params = init_variables(model(), codes, 1)["params"]
  with mj.CompileClock() as first:
    mj.forget(mj.inference_apply_fn(model(), {}), params, codes, [0], 1e-3, 10.0)
  with mj.CompileClock() as second:
    mj.forget(mj.inference_apply_fn(model(), {}), params, codes, [1], 1e-3, 10.0)
  assert first.seconds > 0 and second.seconds == 0
