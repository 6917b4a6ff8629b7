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


@pytest.mark.default_compilation
def test_codes_are_those_of_eager_ops():
  """One program compiled at a lower LLVM level on the CPU: the bits of the ops run one by
  one (the 28 x 28 shape is one the default level compiles slowly), for uniform and normal
  float32 codes and uniform bfloat16 ones. The three cases are one test so that they share
  one child pytest at the default level (~4 s of start-up each otherwise)."""
  key, shape = jax.random.key(4), (28, 28, 1)
  for distribution, dtype in (("uniform", jnp.float32), ("normal", jnp.float32),
                              ("uniform", jnp.bfloat16)):
    sample = jax.random.uniform if distribution == "uniform" else jax.random.normal
    eager = [sample(jax.random.fold_in(key, c), shape, dtype) for c in range(3)]
    codes = mj.generate_codes(key, 3, shape, distribution=distribution, dtype=dtype)
    chex.assert_trees_all_equal(list(codes), eager,
                                custom_message=f"{distribution} {jnp.dtype(dtype).name} codes")


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
  with pytest.raises(mj.errors.BadRequest, match=r"t_mix must be a finite number in \[0, 1\]"):
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


@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (2, 3), (3, 1)])
def test_a_uint32_array_that_is_no_raw_key_is_refused_naming_the_argument(shape):
  """A raw key is uint32 of the default implementation's key shape ((2,) for threefry);
  other uint32 arrays reached JAX's PRNG as a TypeError 10 frames deep."""
  not_a_key = jnp.zeros(shape, jnp.uint32)
  with pytest.raises(mj.errors.BadRequestType, match=r"key must be a PRNG key .*shape \(2,\)"):
    mj.generate_codes(not_a_key, 3, 2)
  with pytest.raises(mj.errors.BadRequestType, match=r"key must be a PRNG key"):
    mj.mix_codes(**_mix_inputs(key=not_a_key))
  with pytest.raises(mj.errors.BadRequestType, match=r"^rng must be a PRNG key"):
    mj.codes.check_key(not_a_key, "rng")


def test_raw_keys_follow_the_default_prng_implementation():
  with jax.default_prng_impl("rbg"):
    chex.assert_shape(mj.generate_codes(jax.random.PRNGKey(0), 3, 2), (3, 2))  # (4,) keys.
    with pytest.raises(mj.errors.BadRequestType, match=r"\(rbg\) has shape \(4,\)"):
      mj.generate_codes(jnp.zeros(2, jnp.uint32), 3, 2)
  mj.codes.check_key(jnp.zeros(2, jnp.uint32))  # threefry again.


@pytest.mark.parametrize("t_mix", ["0.1", None, True, 1 + 0j, [0.1], np.array([0.1]),
                                   jnp.full(4, 0.1)])
def test_mix_codes_refuses_a_rate_that_is_not_one_number(t_mix):
  """A string passed the range check (float('0.1')) and failed inside jax.random; None and
  arrays failed in float(); a per-example array is not supported (one rate per batch)."""
  with pytest.raises(mj.errors.BadRequestType, match=r"^t_mix must be a finite number in"):
    mj.mix_codes(**_mix_inputs(t_mix=t_mix))


def test_mix_codes_refuses_a_per_example_rate_under_jit_and_takes_int_rates():
  inputs = _mix_inputs()
  key, t_mix = inputs.pop("key"), inputs.pop("t_mix")
  mix = jax.jit(lambda t_mix, **kw: mj.mix_codes(key, t_mix=t_mix, **kw))
  with pytest.raises(mj.errors.BadRequestType, match=r"t_mix must be one number .*\(4,\)"):
    mix(jnp.full(4, 0.5), **inputs)
  assert bool(mix(jnp.int32(1), **inputs)[1].all())  # A traced int rate: 1 replaces all.
  assert bool(mj.mix_codes(key, t_mix=1, **inputs)[1].all())
  assert not bool(mj.mix_codes(key, t_mix=np.int64(0), **inputs)[1].any())
  del t_mix


@pytest.mark.parametrize("changes, phrase", [
    ({"codes": None}, "codes must be an array of numbers"),
    ({"codes": "abc"}, "codes must be an array of numbers"),
    ({"codes": jnp.ones((3, 2, 2, 1), jnp.int32)}, "codes must be floating-point"),
    ({"images": [["a"]] * 4}, "images must be an array of numbers"),
    ({"labels": None}, "labels must be an array of numbers"),
])
def test_mix_codes_refuses_inputs_that_are_not_arrays_of_numbers(changes, phrase):
  with pytest.raises(mj.errors.BadRequestType, match=phrase):
    mj.mix_codes(**_mix_inputs(**changes))


def test_generate_codes_refuses_a_distribution_that_is_not_a_string():
  with pytest.raises(mj.errors.BadRequestType, match="distribution must be a string"):
    mj.generate_codes(KEY, 3, 2, distribution=np.array(["uniform", "normal"]))


def _eager_mix(key, images, labels, codes, t_mix):
  """mix_codes' operations run one by one (what it did before it was one program)."""
  with jax.disable_jit():
    return mj.codes._mix(key, images, labels, codes, t_mix)


# Each key kind with one dtype by default (op by op, ~3 s a case); the four others slow.
@pytest.mark.parametrize("key, dtype, t_mix", [
    pytest.param(key, dtype, t_mix, marks=() if (k, d) in ((0, 0), (1, 1)) else pytest.mark.slow)
    for k, key in enumerate([jax.random.key(3), jax.random.PRNGKey(3)])
    for d, (dtype, t_mix) in enumerate([(jnp.float32, 0.3), (jnp.bfloat16, 0.5),
                                        (jnp.float32, np.float32(0.7))])])
def test_mix_codes_gives_the_bits_of_the_eager_ops(key, dtype, t_mix):
  images = jax.random.normal(jax.random.key(0), (23, 3, 5), dtype)
  labels, codes = jnp.arange(23) % 4, jax.random.uniform(jax.random.key(1), (4, 3, 5))
  expected = _eager_mix(key, images, labels, codes, t_mix)
  chex.assert_trees_all_equal(mj.mix_codes(key, images, labels, codes, t_mix), expected)
  chex.assert_trees_all_equal(jax.jit(mj.mix_codes)(key, images, labels, codes, t_mix),
                              expected)


def test_mix_codes_compiles_one_program_on_first_use():
  """It ran op by op: 10 programs for a new shape (0.7 s); now one, and none for a new
  rate."""
  images = jax.random.normal(jax.random.key(0), (29, 7))  # A shape no other test has.
  labels, codes = jnp.arange(29) % 3, jax.random.uniform(jax.random.key(1), (3, 7))
  key = jax.random.key(5)
  with mj.CompileClock() as clock:
    jax.block_until_ready(mj.mix_codes(key, images, labels, codes, 0.3))
  assert clock.programs == 1
  with mj.CompileClock() as clock:
    jax.block_until_ready(mj.mix_codes(key, images, labels, codes, 0.6))
  assert clock.programs == 0


def test_generate_codes_refuses_a_traced_number_of_classes_or_dimension():
  """Both set the codes' shape: a TracerBoolConversionError / ConcretizationTypeError came
  from the range check."""
  with pytest.raises(mj.errors.BadRequestType, match="num_classes must be a concrete int"):
    jax.jit(lambda n: mj.generate_codes(KEY, n, 2))(3)
  with pytest.raises(mj.errors.BadRequestType, match="shape must be a concrete int"):
    jax.jit(lambda n: mj.generate_codes(KEY, 2, (n, 2)))(3)
  chex.assert_shape(jax.jit(mj.generate_codes, static_argnums=(1, 2))(KEY, 3, (2,)), (3, 2))
