import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj


def test_codes_shape_and_range():
  codes = mj.generate_codes(jax.random.key(0), 5, (4, 4, 3))
  chex.assert_shape(codes, (5, 4, 4, 3))
  assert float(codes.min()) >= 0.0 and float(codes.max()) < 1.0


def test_codes_deterministic_per_key_and_independent_of_num_classes():
  key = jax.random.key(7)
  a = mj.generate_codes(key, 10, (6, 6, 1))
  chex.assert_trees_all_equal(a, mj.generate_codes(key, 10, (6, 6, 1)))
  chex.assert_trees_all_equal(a[:3], mj.generate_codes(key, 3, (6, 6, 1)))
  other = mj.generate_codes(jax.random.key(8), 10, (6, 6, 1))
  assert not np.allclose(a, other)
  assert not np.allclose(a[0], a[1])  # Classes get different codes.


@pytest.mark.parametrize("distribution, dtype", [("uniform", jnp.float32),
                                                 ("normal", jnp.float32),
                                                 ("uniform", jnp.bfloat16)])
def test_codes_are_those_of_eager_ops(distribution, dtype):
  """One program compiled at a lower LLVM level on the CPU: the bits of the ops run one by
  one (the 28 x 28 shape is one the default level compiles slowly)."""
  key, shape = jax.random.key(4), (28, 28, 1)
  sample = jax.random.uniform if distribution == "uniform" else jax.random.normal
  eager = [sample(jax.random.fold_in(key, c), shape, dtype) for c in range(3)]
  codes = mj.generate_codes(key, 3, shape, distribution=distribution, dtype=dtype)
  chex.assert_trees_all_equal(list(codes), eager)


def test_normal_codes():
  codes = mj.generate_codes(jax.random.key(0), 4, (32, 32, 3), distribution="normal")
  assert abs(float(codes.mean())) < 0.05 and abs(float(codes.std()) - 1.0) < 0.05
  with pytest.raises(ValueError, match="distribution"):
    mj.generate_codes(jax.random.key(0), 4, (2,), distribution="cauchy")


@pytest.mark.parametrize("t_mix", [0.0, 0.1, 0.3, 1.0])
def test_mixing_rate_within_binomial_tolerance(t_mix):
  n = 20000
  codes = mj.generate_codes(jax.random.key(0), 10, (3,))
  images = -jnp.ones((n, 3))
  labels = jnp.arange(n) % 10
  mixed, replaced = jax.jit(mj.mix_codes)(jax.random.key(1), images, labels, codes, t_mix)
  sigma = np.sqrt(t_mix * (1 - t_mix) / n)
  assert abs(float(replaced.mean()) - t_mix) <= 5 * sigma + 1e-9
  # Replaced examples hold their label's code; the others are untouched.
  np.testing.assert_array_equal(mixed[replaced], codes[labels[replaced]])
  np.testing.assert_array_equal(mixed[~replaced], images[~replaced])


@pytest.mark.parametrize("t_mix", [-0.1, 1.5, float("nan")])
def test_mix_codes_refuses_a_rate_outside_0_1(t_mix):
  codes = mj.generate_codes(jax.random.key(0), 3, (2,))
  with pytest.raises(mj.errors.BadRequest, match="t_mix is a probability in"):
    mj.mix_codes(jax.random.key(1), jnp.zeros((4, 2)), jnp.arange(4) % 3, codes, t_mix)


def test_mix_codes_takes_numpy_codes_under_jit():
  codes = np.asarray(mj.generate_codes(jax.random.key(0), 3, (2, 2, 1)))
  images, labels = jnp.zeros((4, 2, 2, 1)), jnp.array([0, 1, 2, 1])
  mixed, replaced = jax.jit(lambda x, y: mj.mix_codes(jax.random.key(1), x, y, codes, 1.0))(
      images, labels)
  assert bool(replaced.all())
  chex.assert_trees_all_close(mixed, jnp.asarray(codes)[labels])
