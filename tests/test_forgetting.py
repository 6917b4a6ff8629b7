import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import forgetting


def test_ratio_reference_numerics():
  f_forget = {"zero": jnp.zeros(3), "inf": jnp.array([jnp.inf, 2.0, 1.0]),
              "nan": jnp.array([jnp.nan, 1.0, 4.0]), "all_inf": jnp.full(2, jnp.inf)}
  f_remain = {"zero": jnp.zeros(3), "inf": jnp.array([1.0, 1.0, 4.0]),
              "nan": jnp.array([1.0, 1.0, 2.0]), "all_inf": jnp.ones(2)}
  eta = mj.fisher_ratio(f_forget, f_remain)
  chex.assert_tree_all_finite(eta)
  np.testing.assert_allclose(eta["zero"], 1.0)  # Both accumulators start at 1e-16.
  np.testing.assert_allclose(eta["inf"], [2.0, 2.0, 0.25], rtol=1e-6)  # inf -> largest finite.
  np.testing.assert_allclose(eta["nan"], [0.0, 1.0, 2.0], rtol=1e-6)  # NaN -> 0.
  np.testing.assert_allclose(eta["all_inf"], 0.0)  # No finite value: the tensor stays put.
  # Without the floor, 0/0 is NaN and becomes 0.
  np.testing.assert_allclose(mj.fisher_ratio(f_forget, f_remain, eps=0.0)["zero"], 0.0)


def test_ratio_of_zero_forget_fisher_is_tiny_and_unbounded_ratio_is_finite():
  eta = mj.fisher_ratio({"a": jnp.array([0.0, 1.0])}, {"a": jnp.array([1.0, 0.0])})["a"]
  assert float(eta[0]) < 1e-15 and np.isfinite(float(eta[1])) and float(eta[1]) > 1e15


def test_step_sizes_and_perturbation():
  f_forget = {"a": jnp.array([4.0, 1.0]), "b": jnp.array([1e6, 0.0])}
  f_remain = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([1.0, 1.0])}
  alpha = mj.step_sizes(mj.fisher_ratio(f_forget, f_remain), lambda1=1e-3, lambda2=10.0)
  np.testing.assert_allclose(alpha["a"], 1e-3)  # lambda1 binds: 10 / 4 > 1e-3.
  np.testing.assert_allclose(alpha["b"], 1e-5, rtol=1e-5)  # lambda2 binds: 10 / 1e6.
  delta = mj.perturbation(f_forget, f_remain, lambda1=1e-3, lambda2=10.0)
  np.testing.assert_allclose(delta["a"], [4e-3, 1e-3], rtol=1e-5)
  np.testing.assert_allclose(delta["b"], [10.0, 1e-5 * 1e-16], rtol=1e-4)


@pytest.mark.parametrize("lambdas", [(0.0, 1.0), (1.0, -1.0)])
def test_nonpositive_lambda_is_rejected(lambdas):
  with pytest.raises(ValueError, match="must be positive"):
    mj.perturbation({"a": jnp.ones(1)}, {"a": jnp.ones(1)}, *lambdas)


def tiny_model(num_classes=4, seed=0):
  model = mj.create_model("mlp", num_classes, hidden=(16,))
  codes = mj.generate_codes(jax.random.key(seed), num_classes, (3, 3, 1))
  params = model.init(jax.random.key(seed + 1), codes)["params"]
  return mj.inference_apply_fn(model, {}), params, codes


def test_forget_keeps_the_better_candidate_and_reports():
  apply_fn, params, codes = tiny_model()
  new_params, report = mj.forget(apply_fn, params, codes, [1, 2], lambda1=1e-2, lambda2=10.0)
  chex.assert_trees_all_equal_shapes(new_params, params)
  chex.assert_tree_all_finite(new_params)
  assert report.classes == (1, 2) and report.sign in (1, -1)
  assert float(report.after.criterion) >= float(report.rejected.criterion)
  # The kept candidate is params + sign * delta.
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, [1, 2])
  delta = mj.perturbation(f_forget, f_remain, 1e-2, 10.0)
  want = jax.tree.map(lambda p, d: p + report.sign * d, params, delta)
  chex.assert_trees_all_close(new_params, want, rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(
      report.after, mj.code_scores(apply_fn, new_params, codes, jnp.array([0, 1, 1, 0], bool)))
  assert report.seconds > 0 and report.compile_seconds > 0
  assert report.to_dict()["classes"] == [1, 2]


def test_forget_never_makes_nan_parameters():
  apply_fn, params, codes = tiny_model()
  params = jax.tree.map(lambda p: p.at[..., 0].set(0.0), params)  # Dead units: zero Fisher.
  new_params, _ = mj.forget(apply_fn, params, codes, [0], lambda1=1.0, lambda2=1e30)
  chex.assert_tree_all_finite(new_params)


@pytest.mark.parametrize("kwargs, message", [
    ({"forget": [4]}, "out of range"), ({"forget": []}, "no class"),
    ({"forget": [0, 0]}, "duplicated"), ({"forget": [0, 1, 2, 3]}, "every class"),
    ({"forget": [0], "lambda1": 0.0}, "lambda1 must be positive"),
    ({"forget": [0], "lambda2": -5.0}, "lambda2 must be positive")])
def test_forget_bad_input(kwargs, message):
  apply_fn, params, codes = tiny_model()
  with pytest.raises(ValueError, match=message):
    mj.forget(apply_fn, params, codes, **kwargs)


def test_forget_rejects_codes_of_the_wrong_shape_or_count():
  apply_fn, params, codes = tiny_model()
  with pytest.raises(ValueError, match="do not fit the model"):
    mj.forget(apply_fn, params, jnp.zeros((4, 5, 5, 1)), [0])
  with pytest.raises(ValueError, match="one per class"):
    mj.forget(apply_fn, params, codes[:3], [0])


def test_forget_works_for_a_batchnorm_model(conv_bn_bundle):
  bundle = conv_bn_bundle  # Conv -> BatchNorm -> Dense (ResNet-18 itself: test_fisher).
  codes = mj.generate_codes(jax.random.key(0), 10, bundle.input_shape)
  new_params, report = mj.forget(bundle.apply_fn(), bundle.params, codes, [0],
                                 microbatch_size=2)
  chex.assert_trees_all_equal_structs(new_params, bundle.params)
  chex.assert_tree_all_finite(new_params)
  assert set(report.alpha) == set(bundle.params)
