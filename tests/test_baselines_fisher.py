"""Tests of the Fisher-based baselines: ``ssd``, ``ssd-exact`` and ``fisher`` (SFDN).

Closed forms on hand-written models (no bundle), then each method on the tiny digits
bundle of ``conftest.py``: it changes the parameters, leaves the input bundle's arrays
bitwise unchanged, keeps the dtypes, refuses bad requests, and forgets class 3.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax.baselines.fisher_forgetting as ff
import mnemonic_jax.baselines.ssd as ssd
from mnemonic_jax import baselines, metrics
from mnemonic_jax.bundle import host_copy

METHODS = ("ssd", "ssd-exact", "fisher")
FORGET = 3


# ----------------------------------------------------------------------------------------
# SSD on a two-parameter model: logits = x * w (elementwise), two classes.
#
# With w = (ln 3, ln 3), a forget example x = (1, 0), y = 0 has p = (3/4, 1/4) and gradient
# x * (p - onehot(y)) = (-1/4, 0); a retain example x = (0, 1), y = 1 has gradient (0, -1/4).


def _two_param_model():
  apply_fn = lambda p, x: x * p["w"][None, :]
  params = {"w": jnp.full((2,), math.log(3.0), jnp.float32)}
  x_forget = jnp.array([[1.0, 0.0]] * 2)
  y_forget = jnp.array([0, 0])
  x_retain = jnp.array([[0.0, 1.0]] * 3)
  y_retain = jnp.array([1, 1, 1])
  return apply_fn, params, (x_retain, y_retain), (x_forget, y_forget)


def test_ssd_importances_closed_form():
  apply_fn, params, (x_r, y_r), (x_f, y_f) = _two_param_model()
  x_d, y_d = jnp.concatenate([x_r, x_f]), jnp.concatenate([y_r, y_f])
  i_f, i_d, (e_f, e_d) = jax.jit(lambda p: (
      ssd.minibatch_importance(apply_fn, p, x_f, y_f, batch_size=2),
      ssd.minibatch_importance(apply_fn, p, x_d, y_d, batch_size=2),
      ssd.exact_importances(apply_fn, p, x_r, y_r, x_f, y_f)))(params)
  # One batch [f, f]: mean gradient (-1/4, 0), squared.
  chex.assert_trees_all_close(i_f, {"w": jnp.array([1 / 16, 0.0])}, atol=1e-7)
  # D = [r, r, r, f, f] in batches [r, r], [r, f], [f] (partial, as published):
  # squares (0, 1/16) + (1/64, 1/64) + (1/16, 0) = (5/64, 5/64), over 3 batches.
  chex.assert_trees_all_close(i_d, {"w": jnp.full((2,), 5 / 192)}, atol=1e-7)
  # Per-example (ssd-exact): I_f = (1/16, 0); I_D = (2 * 1/16, 3 * 1/16) / 5.
  chex.assert_trees_all_close(e_f, {"w": jnp.array([1 / 16, 0.0])}, atol=1e-7)
  chex.assert_trees_all_close(e_d, {"w": jnp.array([1 / 40, 3 / 80])}, atol=1e-7)


def test_ssd_importances_jit_once():
  apply_fn, params, _, (x_f, y_f) = _two_param_model()
  traces = []

  def counted(p, x, y):
    traces.append(1)
    return ssd.minibatch_importance(apply_fn, p, x, y, batch_size=2)

  fn = jax.jit(counted)
  first = fn(params, x_f, y_f)
  second = fn(params, x_f + 0.0, y_f)
  chex.assert_trees_all_equal(first, second)
  assert len(traces) == 1


def test_ssd_dampening_closed_form():
  apply_fn, params, (x_r, y_r), (x_f, y_f) = _two_param_model()
  x_d, y_d = jnp.concatenate([x_r, x_f]), jnp.concatenate([y_r, y_f])
  i_f, i_d = jax.jit(lambda p: (ssd.minibatch_importance(apply_fn, p, x_f, y_f, 2),
                                ssd.minibatch_importance(apply_fn, p, x_d, y_d, 2)))(params)
  w = math.log(3.0)
  # alpha = 2: I_f,0 = 12/192 > 2 * 5/192 selects w_0; I_f,1 = 0 never is.
  # beta_0 = min(1 * (5/192) / (12/192), 1) = 5/12.
  new, selected = ssd.dampen(params, i_f, i_d, alpha=2.0, lam=1.0)
  chex.assert_trees_all_equal(selected, {"w": jnp.array([True, False])})
  chex.assert_trees_all_close(new, {"w": jnp.array([w * 5 / 12, w])}, rtol=1e-6)
  # alpha = 3: 12/192 < 3 * 5/192, nothing is selected.
  new, selected = ssd.dampen(params, i_f, i_d, alpha=3.0, lam=1.0)
  assert not np.any(selected["w"])
  chex.assert_trees_all_equal(new, params)
  # lambda = 3: selected, but beta = min(15/12, 1) = 1 (weights never grow).
  new, selected = ssd.dampen(params, i_f, i_d, alpha=2.0, lam=3.0)
  chex.assert_trees_all_equal(selected, {"w": jnp.array([True, False])})
  chex.assert_trees_all_equal(new, params)
  # I_D = 0 where I_f > 0: the weight goes to 0.
  beta, _ = ssd.dampening_factors({"w": jnp.array([1.0, 0.0])}, {"w": jnp.zeros(2)}, 10.0, 1.0)
  chex.assert_trees_all_equal(beta, {"w": jnp.array([0.0, 1.0])})


def test_ssd_dampen_keeps_dtype():
  params = {"w": jnp.array([2.0, 4.0], jnp.bfloat16)}
  new, _ = ssd.dampen(params, {"w": jnp.array([1.0, 1.0])}, {"w": jnp.array([0.05, 1.0])},
                      alpha=10.0, lam=1.0)
  chex.assert_trees_all_equal_dtypes(new, params)
  chex.assert_trees_all_close(new, {"w": jnp.array([0.1, 4.0], jnp.bfloat16)})


# ----------------------------------------------------------------------------------------
# Fisher forgetting's noise on a crafted Fisher.


def test_fisher_noise_moments_formula_and_clamps():
  # Hidden layer 2 -> 4, classifier 4 -> 3, classes {1} forgotten.
  params = {"Dense_0": {"kernel": jnp.ones((2, 4)), "bias": jnp.ones((4,))},
            "Dense_1": {"kernel": jnp.full((4, 3), 2.0), "bias": jnp.full((3,), 3.0)}}
  fisher = {"Dense_0": {"kernel": jnp.array([[1.0, 0.0, 4.0, 0.5],
                                             [1.0, 0.0, 4.0, 1.5]]),
                        "bias": jnp.array([0.0, 1.0, 2.0, 1e-4])},
            "Dense_1": {"kernel": jnp.array([[0.0, 1.0, 0.02]] * 4),
                        "bias": jnp.array([1.0, 0.5, 0.0])}}
  config = ff.FisherForgettingConfig(alpha=1e-6)
  in_forget = jnp.array([False, True, False])
  mean, var = jax.jit(ff.noise_moments, static_argnums=3)(params, fisher, in_forget, config)
  a, eps = 1e-6, 1e-8
  inv = lambda f, cap: min(1.0 / (f + eps), cap)
  # Hidden kernel: alpha / F clamped at 1e3, then averaged over the input axis.
  col = [a * (inv(1.0, 1e3) + inv(1.0, 1e3)) / 2, a * 1e3,
         a * (inv(4.0, 1e3) + inv(4.0, 1e3)) / 2, a * (inv(0.5, 1e3) + inv(1.5, 1e3)) / 2]
  np.testing.assert_allclose(var["Dense_0"]["kernel"], np.tile(col, (2, 1)), rtol=1e-6)
  # Hidden bias (rank 1): clamp 1e3, times 10: the largest variance, 1e-2.
  np.testing.assert_allclose(var["Dense_0"]["bias"],
                             [1e-2, 1e-5, 5e-6, 10 * a * inv(1e-4, 1e3)], rtol=1e-6)
  # Classifier: clamp 1e2, input-axis mean, times 10; forgotten row: 1e-4 * 10, mean 0.
  np.testing.assert_allclose(var["Dense_1"]["kernel"],
                             np.tile([1e-3, 1e-3, 10 * a * inv(0.02, 1e2)], (4, 1)), rtol=1e-6)
  np.testing.assert_allclose(var["Dense_1"]["bias"], [10 * a * 1.0, 1e-3, 1e-3], rtol=1e-6)
  np.testing.assert_array_equal(mean["Dense_1"]["kernel"], np.tile([2.0, 0.0, 2.0], (4, 1)))
  np.testing.assert_array_equal(mean["Dense_1"]["bias"], [3.0, 0.0, 3.0])
  chex.assert_trees_all_equal(mean["Dense_0"], params["Dense_0"])
  top = max(float(jnp.max(v)) for v in jax.tree.leaves(var))
  assert top == pytest.approx(1e-2)


def test_fisher_noise_deterministic_per_key():
  params = {"a": jnp.zeros((50, 40), jnp.bfloat16), "b": jnp.zeros((40,))}
  var = jax.tree.map(lambda p: jnp.full(p.shape, 4.0), params)
  mean = jax.tree.map(lambda p: p.astype(jnp.float32), params)
  add_noise = jax.jit(ff.add_noise)
  one = add_noise(jax.random.key(0), params, mean, var)
  again = add_noise(jax.random.key(0), params, mean, var)
  other = add_noise(jax.random.key(1), params, mean, var)
  chex.assert_trees_all_equal(one, again)
  chex.assert_trees_all_equal_dtypes(one, params)
  assert all(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(one),
                                                        jax.tree.leaves(other)))
  # Standard deviation sqrt(4) = 2; leaves draw independent noise.
  assert np.std(np.asarray(one["a"], np.float32)) == pytest.approx(2.0, rel=0.05)
  assert not np.allclose(np.asarray(one["a"][0], np.float32), one["b"])


def test_retain_fisher_model_distribution_closed_form():
  # One example, logits = w (two classes), p = (3/4, 1/4): sum_y p_y (p - e_y)**2 per logit
  # is 3/4 * (1/4)**2 + 1/4 * (3/4)**2 = 3/16 for both.
  apply_fn = lambda p, x: jnp.broadcast_to(p["w"], (x.shape[0], 2)) + 0.0 * x
  params = {"w": jnp.array([math.log(3.0), 0.0])}
  x, y = jnp.zeros((1, 2)), jnp.array([0])
  model, true = jax.jit(lambda p: (
      ff.retain_fisher(apply_fn, p, x, y, num_classes=2),
      ff.retain_fisher(apply_fn, p, x, y, num_classes=2, fisher_labels="true")))(params)
  chex.assert_trees_all_close(model, {"w": jnp.full((2,), 3 / 16)}, atol=1e-7)
  # The empirical Fisher with the true label 0: (p - e_0)**2 = (1/16, 1/16).
  chex.assert_trees_all_close(true, {"w": jnp.full((2,), 1 / 16)}, atol=1e-7)


# ----------------------------------------------------------------------------------------
# The methods on the tiny digits bundle.


@pytest.fixture(scope="module")
def digits(tiny_digits_bundle):
  bundle, train, test = tiny_digits_bundle
  data = baselines.UnlearnData.from_training(train.images, train.labels, [FORGET])
  return bundle, data, test


def _accuracy(bundle, test) -> dict[str, float]:
  logits = np.asarray(bundle.apply_fn()(bundle.params, bundle.normalize(test.images)))
  return metrics.forgetting_metrics(logits, np.asarray(test.labels), [FORGET])


def _class_accuracy(bundle, test) -> float:
  logits = np.asarray(bundle.apply_fn()(bundle.params, bundle.normalize(test.images)))
  return float(metrics.per_class_accuracy(logits, np.asarray(test.labels), 10)[FORGET])


@pytest.mark.parametrize("method", METHODS)
def test_method_forgets_class_and_leaves_input(digits, method):
  bundle, data, test = digits
  before = host_copy(bundle.params)
  before_stats = host_copy(bundle.batch_stats)
  new, report = baselines.unlearn(method, bundle, [FORGET], data, key=jax.random.key(0))

  # The input bundle's arrays are bitwise unchanged; the new ones keep their dtypes.
  chex.assert_trees_all_equal(host_copy(bundle.params), before)
  chex.assert_trees_all_equal(host_copy(bundle.batch_stats), before_stats)
  chex.assert_trees_all_equal_dtypes(new.params, bundle.params)
  chex.assert_trees_all_equal_shapes(new.params, bundle.params)
  assert any(not np.array_equal(u, v) for u, v in
             zip(jax.tree.leaves(host_copy(new.params)), jax.tree.leaves(before)))

  # Class 3 is forgotten (94.6% before on this model), the rest stays reasonable.
  old, now = _accuracy(bundle, test), _accuracy(new, test)
  assert _class_accuracy(bundle, test) > 80.0
  assert _class_accuracy(new, test) < 30.0, (method, now)
  assert now["A_R"] > old["A_R"] - 8.0, (method, old, now)

  assert report.method == method and report.classes == (FORGET,)
  assert report.steps == 0
  assert report.examples["retain"] == len(data.retain)
  assert report.examples["forget"] == {"ssd": 2, "ssd-exact": 1, "fisher": 0}[method] * len(
      data.forget)
  assert new.forgotten_classes == (FORGET,)


@pytest.mark.slow
def test_ssd_batch_one_equals_ssd_exact(digits):
  bundle, data, _ = digits
  # With minibatches of one example, the squared minibatch gradient is the per-example one.
  x_r, y_r = bundle.normalize(data.retain.images), jnp.asarray(data.retain.labels)
  x_f, y_f = bundle.normalize(data.forget.images), jnp.asarray(data.forget.labels)
  apply_fn = bundle.apply_fn()
  run = jax.jit(lambda p: (
      ssd.minibatch_importance(apply_fn, p, x_f, y_f, 1),
      ssd.minibatch_importance(apply_fn, p, jnp.concatenate([x_r, x_f]),
                               jnp.concatenate([y_r, y_f]), 1),
      ssd.exact_importances(apply_fn, p, x_r, y_r, x_f, y_f, 256)))
  i_f, i_d, (e_f, e_d) = run(bundle.params)
  chex.assert_trees_all_close(i_f, e_f, rtol=1e-4, atol=1e-12)
  chex.assert_trees_all_close(i_d, e_d, rtol=1e-4, atol=1e-12)
  # And the registered methods agree end to end.
  one, _ = baselines.unlearn("ssd", bundle, [FORGET], data,
                             ssd.SSDConfig(batch_size=1, alpha=5.0))
  exact, report = baselines.unlearn("ssd-exact", bundle, [FORGET], data,
                                    ssd.SSDExactConfig(alpha=5.0))
  chex.assert_trees_all_close(one.params, exact.params, rtol=1e-6)
  assert report.details["dampened"] > 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("classes", [[10], [-1], list(range(10)), [], [3, 3]])
def test_bad_classes_raise(digits, method, classes):
  bundle, data, _ = digits
  with pytest.raises(ValueError):
    baselines.unlearn(method, bundle, classes, data)


@pytest.mark.parametrize("method,given", [
    ("ssd", "retain"), ("ssd", "forget"), ("ssd", "none"),
    ("ssd-exact", "retain"), ("ssd-exact", "forget"),
    ("fisher", "forget"), ("fisher", "none")])
def test_missing_data_raises(digits, method, given):
  bundle, data, _ = digits
  partial = baselines.UnlearnData(retain=data.retain if given == "retain" else None,
                                  forget=data.forget if given == "forget" else None)
  with pytest.raises(ValueError, match="needs the"):
    baselines.unlearn(method, bundle, [FORGET], partial)


@pytest.mark.parametrize("method,config_cls,change,match", [
    ("ssd", ssd.SSDConfig, {"alpha": 0.0}, "alpha"),
    ("ssd", ssd.SSDConfig, {"lam": -1.0}, "lam"),
    ("ssd", ssd.SSDConfig, {"batch_size": 0}, "batch_size"),
    ("ssd", ssd.SSDConfig, {"order": "random"}, "order"),
    ("ssd-exact", ssd.SSDExactConfig, {"alpha": 10.0}, "dampen nothing"),
    ("ssd-exact", ssd.SSDExactConfig, {"microbatch_size": 0}, "microbatch"),
    ("fisher", ff.FisherForgettingConfig, {"alpha": 0.0}, "alpha"),
    ("fisher", ff.FisherForgettingConfig, {"fisher_labels": "sampled"}, "fisher_labels"),
])
def test_bad_config_raises(digits, method, config_cls, change, match):
  bundle, data, _ = digits
  with pytest.raises(ValueError, match=match):  # When built, or (a bound of the data) run.
    baselines.unlearn(method, bundle, [FORGET], data, config_cls(**change))


def test_ssd_exact_default_alpha_is_half_the_bound(digits):
  bundle, data, _ = digits
  n, n_f = len(data.retain) + len(data.forget), len(data.forget)
  # Per-example importances bound I_f / I_D by N / N_f (about 9.85 here), so the
  # published alpha = 10 can select nothing; the default takes half the bound.
  assert n / n_f < 10.0
  with pytest.raises(ValueError, match="dampen nothing"):
    baselines.unlearn("ssd-exact", bundle, [FORGET], data, ssd.SSDExactConfig(alpha=10.0))


@pytest.mark.slow
def test_fisher_method_deterministic_per_key(digits):
  bundle, data, test = digits
  config = ff.FisherForgettingConfig(fisher_labels="true")
  retain_only = baselines.UnlearnData(retain=data.retain)  # All that fisher reads.
  run = lambda seed: baselines.unlearn("fisher", bundle, [FORGET], retain_only, config,
                                       key=jax.random.key(seed))[0]
  one, again, other = run(7), run(7), run(8)
  chex.assert_trees_all_equal(host_copy(one.params), host_copy(again.params))
  assert all(not np.array_equal(u, v) for u, v in
             zip(jax.tree.leaves(host_copy(one.params)), jax.tree.leaves(host_copy(other.params))))
  # The empirical-Fisher variant forgets too on this model.
  assert _class_accuracy(one, test) < 30.0


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_batch_norm_model(method, digits, conv_bn_bundle):
  _, data, _ = digits
  bundle = conv_bn_bundle
  small = baselines.UnlearnData(retain=baselines.Split(*(a[:96] for a in data.retain)),
                                forget=baselines.Split(*(a[:32] for a in data.forget)))
  before = host_copy((bundle.params, bundle.batch_stats))
  new, report = baselines.unlearn(method, bundle, [FORGET], small)
  chex.assert_trees_all_equal(host_copy((bundle.params, bundle.batch_stats)), before)
  # BatchNorm statistics are neither differentiated nor perturbed: returned as they were,
  # in new buffers.
  chex.assert_trees_all_equal(host_copy(new.batch_stats), before[1])
  assert all(u is not v for u, v in zip(jax.tree.leaves(new.batch_stats),
                                        jax.tree.leaves(bundle.batch_stats)))
  chex.assert_trees_all_equal_shapes_and_dtypes(new.params, bundle.params)
  assert any(not np.array_equal(u, v) for u, v in
             zip(jax.tree.leaves(host_copy(new.params)), jax.tree.leaves(before[0])))
  if method == "fisher":  # Only the Dense head has 10 outputs.
    assert report.details["classifier"] == ["['Dense_0']['bias']", "['Dense_0']['kernel']"]
