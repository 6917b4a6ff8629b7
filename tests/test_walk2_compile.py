"""The second user walk's compile faults (W1, W2) and its misleading refusal (W8).

W1: a jitted entry point that takes a scalar compiled a program for each Python type of
the same number (weak and strong float32, weak int32). W2: ``cross_entropy`` (and the
code scores' helpers) ran op by op, a program per operation for every new shape. W8: a
NaN or infinite ``eps`` was refused with the reason for a negative one (and, of the same
kind, a ``microbatch_size`` of 0.5 and mix_codes' negative labels).

Programs are counted with :class:`mnemonic_jax.CompileClock`; each test uses shapes of its
own, so its first call compiles whatever other tests ran before it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors, relearning, training
from mnemonic_jax.forgetting import primitives as prim


def _kinds(value: float) -> list:
  """``value`` (a whole number) as every kind of scalar a user may pass: a Python float
  and int, NumPy float32, float64 and int64 scalars, 0-d NumPy and jax arrays."""
  return [float(value), int(value), np.float32(value), np.float64(value), np.int64(value),
          np.asarray(value), np.asarray(value, np.float32), jnp.asarray(value),
          jnp.asarray(int(value))]


def _programs(fn, *args):
  """``(programs compiled, result)`` of one call of ``fn(*args)``, run to completion."""
  with mj.CompileClock() as clock:
    out = jax.block_until_ready(fn(*args))
  return clock.programs, out


@pytest.mark.parametrize("entry", ["step_sizes", "perturbation"])
def test_the_lambdas_of_eq7_compile_once_whatever_their_kind(entry):
  shape = (3, 7) if entry == "step_sizes" else (3, 9)
  f_forget = {"w": jnp.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)}
  f_remain = {"w": jnp.full(shape, 2.0)}
  call = {"step_sizes": lambda l1, l2: mj.step_sizes(f_forget, l1, l2),
          "perturbation": lambda l1, l2: mj.perturbation(f_forget, f_remain, l1, l2)}[entry]
  _, first = _programs(call, 1.0, 10.0)
  for l1, l2 in zip(_kinds(1), _kinds(10)):
    programs, out = _programs(call, l1, l2)
    assert programs == 0, (type(l1), programs)
    chex.assert_trees_all_equal(out, first)  # The same float32 bits.


def test_a_concrete_lambda_beside_a_traced_one_is_checked():
  eta = {"w": jnp.ones(3)}
  with pytest.raises(errors.BadRequest, match="lambda1 must be a positive finite number"):
    jax.jit(lambda l2: mj.step_sizes(eta, -1.0, l2))(10.0)
  alpha = jax.jit(lambda l2: mj.step_sizes(eta, 1e-3, l2))(10.0)
  chex.assert_trees_all_equal(alpha, mj.step_sizes(eta, 1e-3, 10.0))


def test_mix_codes_compiles_once_whatever_the_kind_of_its_rate():
  key = jax.random.key(0)
  images, labels, codes = jnp.zeros((11, 5)), jnp.arange(11) % 3, jnp.ones((3, 5))
  call = lambda t_mix: mj.mix_codes(key, images, labels, codes, t_mix)
  _, first = _programs(call, 1.0)
  for t_mix in _kinds(1) + _kinds(0):
    programs, _ = _programs(call, t_mix)
    assert programs == 0, (type(t_mix), programs)
  _, half = _programs(call, 0.5)
  for t_mix in (np.float32(0.5), np.float64(0.5), jnp.asarray(0.5), np.asarray(0.5)):
    programs, out = _programs(call, t_mix)
    assert programs == 0
    chex.assert_trees_all_equal(out, half)  # The same draw as the Python float's.
  assert bool(first[1].all())


def test_make_optimizer_takes_every_kind_of_a_number_as_one_optimiser():
  """One object, so the train steps built on it share their compiled programs (a 0-d
  array was unhashable: a raw TypeError from the cache)."""
  first = training.make_optimizer(0.1, momentum=0.9)
  for kind in (np.float32(0.1), np.float64(0.1), np.asarray(0.1), jnp.asarray(0.1)):
    assert training.make_optimizer(kind, momentum=np.float32(0.9)) is first
  assert training.make_optimizer(1) is training.make_optimizer(1.0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_optimisers_float32_numbers_give_the_same_bits(schedule):
  """Rounding the numbers to float32 changes no update: the step computes in float32."""
  total = 10 if schedule == "cosine" else None
  exact = training._optimizer.__wrapped__(0.1, 0.9, 5e-4, schedule, total)
  rounded = training.make_optimizer(0.1, momentum=0.9, weight_decay=5e-4,
                                    schedule=schedule, total_steps=total)
  params = {"w": jax.random.normal(jax.random.key(0), (5, 3))}
  grads = {"w": jax.random.normal(jax.random.key(1), (5, 3))}
  state_a, state_b = exact.init(params), rounded.init(params)
  for _ in range(3):
    update_a, state_a = exact.update(grads, state_a, params)
    update_b, state_b = rounded.update(grads, state_b, params)
    chex.assert_trees_all_equal(update_a, update_b)


def test_relearning_shares_its_compiled_step_for_every_kind_of_a_number():
  model = mj.create_model("mlp", 10, hidden=(3,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
  bundle = mj.Bundle("mlp", {"hidden": (3,)}, params, {}, np.zeros((10, 8, 8, 1), np.float32),
                     10, (8, 8, 1), mean=(0.5,), std=(0.25,))
  first = relearning._compiled(bundle, relearning.RelearnConfig(learning_rate=0.0625))
  for kind in (np.float32(0.0625), np.float64(0.0625), jnp.asarray(0.0625)):
    config = relearning.RelearnConfig(learning_rate=kind, momentum=np.float32(0.9))
    assert relearning._compiled(bundle, config) is first


def test_cross_entropy_is_one_program_per_new_shape():
  logits = jax.random.normal(jax.random.key(0), (37, 11))
  labels = jnp.arange(37) % 11
  programs, loss = _programs(mj.cross_entropy, logits, labels)
  assert programs <= 1  # Op by op: 23 for every new batch size.
  assert _programs(mj.cross_entropy, logits, labels)[0] == 0
  assert _programs(mj.cross_entropy, np.asarray(logits), np.asarray(labels))[0] == 0
  assert _programs(mj.cross_entropy, logits.tolist(), labels.tolist())[0] == 0
  chex.assert_trees_all_equal(loss, jax.jit(mj.cross_entropy)(logits, labels))


def test_cross_entropy_keeps_its_numbers_and_nan_for_labels_out_of_range():
  import optax  # pylint: disable=import-outside-toplevel

  logits = jax.random.normal(jax.random.key(2), (6, 4))
  labels = jnp.array([0, 3, -1, 4, 2, 1])
  ok = np.array([True, True, False, False, True, True])
  want = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.clip(labels, 0, 3))
  mean = lambda f: lambda x: jnp.nanmean(f(x, labels))
  for loss in (mj.cross_entropy(logits, labels), jax.jit(mj.cross_entropy)(logits, labels)):
    np.testing.assert_array_equal(np.asarray(loss)[ok], np.asarray(want)[ok])
    assert np.isnan(np.asarray(loss)[~ok]).all()
  # Traced (inside a caller's grad and jit): the caller's program, NaN gradient rows.
  grad = jax.jit(jax.grad(mean(mj.cross_entropy)))(logits)
  assert np.isnan(np.asarray(grad)[~ok]).all() and np.isfinite(np.asarray(grad)[ok]).all()
  reference = jax.jit(jax.grad(mean(mj.fisher._cross_entropy)))(logits)
  chex.assert_trees_all_equal(grad, reference)
  with pytest.raises(errors.BadRequest, match="labels must have shape"):
    mj.cross_entropy(logits, labels[:5])
  with pytest.raises(errors.BadRequestType, match="logits must be float"):
    mj.cross_entropy(jnp.ones((6, 4), jnp.int32), labels)


def test_the_code_scores_helpers_are_one_program_per_new_shape():
  logits = jax.random.normal(jax.random.key(3), (13, 13))
  labels = jnp.arange(13)
  programs, (margin, correct) = _programs(prim.code_margins, logits, labels)
  assert programs <= 1  # Op by op: about 10.
  host = prim.code_margins(np.asarray(logits), np.asarray(labels), xp=np)
  np.testing.assert_array_equal(np.asarray(margin), host[0])
  np.testing.assert_array_equal(np.asarray(correct), host[1])
  in_forget = np.arange(13) < 2
  programs, scores = _programs(prim.scores_from_margins, margin, correct, in_forget,
                               ~in_forget)
  assert programs <= 1  # Op by op: about 7.
  on_host = prim.scores_from_margins(*host, in_forget, ~in_forget, xp=np)
  for name in prim.SCORE_FIELDS:
    np.testing.assert_array_equal(np.asarray(scores[name]), on_host[name])


@pytest.mark.parametrize("eps, reason", [
    (float("nan"), "every Fisher would be nan"), (float("inf"), "every Fisher would be inf"),
    (-float("inf"), "every Fisher would be -inf"),
    (-1.0, "a negative one makes Fishers negative")])
def test_a_bad_eps_is_refused_with_the_reason_that_fits_it(eps, reason):
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]
  params, codes = {"w": jnp.ones((2, 2))}, jnp.eye(2)
  calls = [lambda: mj.class_fishers(apply_fn, params, codes, [1], eps=eps),
           lambda: mj.fisher.class_weights(np.array([True, False]), np.array([False, True]),
                                           eps)]
  for call in calls:
    with pytest.raises(errors.BadRequest, match="eps must be a finite number >= 0") as info:
      call()
    assert reason in str(info.value)
    assert (eps == -1.0) == ("negative" in str(info.value))


@pytest.mark.parametrize("size", [0.5, 2.5, 0, "2"])
def test_a_bad_microbatch_is_refused_with_what_it_must_be(size):
  """``weighted_squared_gradients`` said "must be positive, got 0.5", and took 2.5 as 2."""
  apply_fn = lambda p, x: x @ p["w"]
  params, inputs = {"w": jnp.ones((2, 2))}, jnp.eye(2)
  with pytest.raises(errors.BadRequest,
                     match=r"^microbatch_size must be a positive integer or None, got "):
    mj.fisher.weighted_squared_gradients(apply_fn, params, inputs, np.arange(2),
                                         np.ones((1, 2), np.float32), microbatch_size=size)


@pytest.mark.parametrize("labels, fix", [
    ([0, -1, 2, 1], "a negative label is no class"), ([0, 3, 2, 1], "generate one code")])
def test_mix_codes_names_the_fix_that_fits_labels_out_of_range(labels, fix):
  """A negative label was told to generate one code per class."""
  with pytest.raises(errors.BadRequest, match=r"labels run from .* but there are 3 codes") as info:
    mj.mix_codes(jax.random.key(0), jnp.zeros((4, 2)), jnp.asarray(labels), jnp.ones((3, 2)),
                 0.5)
  assert fix in str(info.value)
  assert ("generate one code" in str(info.value)) == (min(labels) >= 0)
