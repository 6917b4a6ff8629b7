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


KEY = jax.random.key(0)


@pytest.mark.parametrize("args, kwargs, error, phrase", [
    ((0, 3, (2,)), {}, mj.errors.BadRequestType, r"jax.random.key\(0\)"),
    ((np.int32(4), 3, (2,)), {}, mj.errors.BadRequestType, r"jax.random.key\(4\)"),
    ((jax.random.split(KEY, 2), 3, (2,)), {}, mj.errors.BadRequest, "batch of keys"),
    ((jax.random.split(jax.random.PRNGKey(0), 2), 3, (2,)), {}, mj.errors.BadRequest,
     "batch of 2 raw keys"),
    (("seed", 3, (2,)), {}, mj.errors.BadRequestType, "must be a PRNG key"),
    ((KEY, 3.0, (2,)), {}, mj.errors.BadRequestType, "num_classes must be an int"),
    ((KEY, True, (2,)), {}, mj.errors.BadRequestType, "num_classes must be an int"),
    ((KEY, 0, (2,)), {}, mj.errors.BadRequest, "num_classes must be positive"),
    ((KEY, 3, (0,)), {}, mj.errors.BadRequest, "zero or negative dimension"),
    ((KEY, 3, (4, -1)), {}, mj.errors.BadRequest, "zero or negative dimension"),
    ((KEY, 3, (2.0,)), {}, mj.errors.BadRequestType, "tuple of ints"),
    ((KEY, 3, "28"), {}, mj.errors.BadRequestType, "tuple of ints"),
    ((KEY, 3, (2,)), {"dtype": jnp.int32}, mj.errors.BadRequestType, "floating dtype"),
    ((KEY, 3, (2,)), {"dtype": "not a dtype"}, mj.errors.BadRequestType, "floating dtype"),
])
def test_generate_codes_refuses_bad_arguments(args, kwargs, error, phrase):
  with pytest.raises(error, match=phrase):
    mj.generate_codes(*args, **kwargs)


def test_generate_codes_takes_an_int_shape_and_a_raw_key():
  chex.assert_trees_all_equal(mj.generate_codes(KEY, 3, 4), mj.generate_codes(KEY, 3, (4,)))
  chex.assert_shape(mj.generate_codes(jax.random.PRNGKey(0), 3, (2,)), (3, 2))


def _mix_inputs(**changes):
  """Valid eager inputs of mix_codes (4 images of shape (2, 2, 1), 3 codes), changed."""
  inputs = dict(key=KEY, images=jnp.zeros((4, 2, 2, 1)), labels=jnp.array([0, 1, 2, 1]),
                codes=jnp.ones((3, 2, 2, 1)), t_mix=1.0)
  inputs.update(changes)
  return inputs


@pytest.mark.parametrize("changes, error, phrase", [
    ({"images": jnp.full((4, 2, 2, 1), 200, jnp.uint8)}, mj.errors.BadRequestType,
     "normalise the batch first"),
    ({"labels": jnp.array([0.0, 1.0, 2.0, 1.0])}, mj.errors.BadRequestType,
     "labels must be integer"),
    ({"labels": jnp.array([True, False, True, False])}, mj.errors.BadRequestType,
     "labels must be integer"),
    ({"labels": jnp.array([0, 1, 2])}, mj.errors.BadRequest, "one label per example"),
    ({"labels": jnp.eye(3, dtype=jnp.int32)[jnp.array([0, 1, 2, 1])]}, mj.errors.BadRequest,
     "one-hot"),
    ({"codes": jnp.ones((3, 2, 2))}, mj.errors.BadRequest, r"one code of shape \(2, 2\)"),
    ({"images": jnp.zeros((4, 1, 2, 2))}, mj.errors.BadRequest,
     r"one image has shape \(1, 2, 2\)"),
    ({"key": 0}, mj.errors.BadRequestType, r"jax.random.key\(0\)"),
    ({"key": jax.random.split(KEY, 4)}, mj.errors.BadRequest, "batch of keys"),
])
@pytest.mark.parametrize("jit", [False, True])
def test_mix_codes_refuses_bad_dtypes_and_shapes_also_under_jit(changes, error, phrase, jit):
  inputs = _mix_inputs(**changes)
  key = inputs.pop("key")
  mix = mj.mix_codes
  if jit:  # Only the key stays outside: a Python int is not a jit argument.
    mix = jax.jit(lambda images, labels, codes, t_mix: mj.mix_codes(key, images, labels, codes,
                                                                    t_mix))
    with pytest.raises(error, match=phrase):
      mix(**inputs)
  else:
    with pytest.raises(error, match=phrase):
      mix(key, **inputs)


@pytest.mark.parametrize("labels, codes, phrase", [
    ([0, 4, 7, 9], 5, "labels run from 0 to 9 but there are 5 codes"),
    ([0, 1, 2, 3], 3, "labels run from 0 to 3 but there are 3 codes"),
    ([0, -1, 2, 1], 3, "labels run from -1 to 2"),
])
def test_mix_codes_refuses_concrete_labels_outside_the_codes(labels, codes, phrase):
  """Eagerly the labels are read (under jit they cannot be, and are not)."""
  inputs = _mix_inputs(labels=np.array(labels), codes=jnp.ones((codes, 2, 2, 1)))
  with pytest.raises(mj.errors.BadRequest, match=phrase):
    mj.mix_codes(**inputs)


def test_mix_codes_keeps_the_float_dtype_of_the_images():
  inputs = _mix_inputs(images=jnp.zeros((4, 2, 2, 1), jnp.bfloat16), labels=[0, 1, 2, 1])
  mixed, replaced = mj.mix_codes(**inputs)
  assert mixed.dtype == jnp.bfloat16 and bool(replaced.all())
  np.testing.assert_array_equal(np.asarray(mixed, np.float32), 1.0)
