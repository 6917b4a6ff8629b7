"""Faults a Python user found composing the Fisher and eq. (5)-(7) pieces by hand
(notes/walk_py_faults.md F1, F12, F16-F19, F21): array-likes, a training-mode BatchNorm,
out-of-range labels, Fisher leaves, compiled programs, label shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.forgetting import code_margins, primitives, step_sizes

from random_support import init_variables, normal, uniform

C = 5


def linear_apply(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


CODES = uniform(0, (C, 2, 3, 1))
PARAMS = {"w": normal(1, (6, C)), "b": normal(2, (C,))}
LABELS = np.arange(C)


# F1: labels as a list or tuple were passed whole into jax.jit (a pytree of scalars), and
# failed in a chex rank assertion eight frames down.


@pytest.mark.parametrize("wrap", [list, tuple], ids=["list", "tuple"])
def test_fisher_diagonal_takes_labels_as_a_list_or_tuple(wrap):
  want = mj.fisher_diagonal(linear_apply, PARAMS, CODES, LABELS)
  got = mj.fisher_diagonal(linear_apply, PARAMS, CODES, wrap(LABELS.tolist()))
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_ragged_labels_and_list_inputs_are_refused_by_name():
  with pytest.raises(errors.BadRequestType, match="labels must be an array"):
    mj.fisher_diagonal(linear_apply, PARAMS, CODES, [0, [1, 2], 3, 4])
  with pytest.raises(errors.BadRequestType, match="inputs must be a float array.*list"):
    mj.fisher.check_input_shape(linear_apply, PARAMS, np.asarray(CODES).tolist())


def test_the_building_block_takes_list_labels_and_names_a_wrong_rank():
  want = mj.fisher_diagonal(linear_apply, PARAMS, CODES, LABELS)
  (got,) = fisher_lib.weighted_squared_gradients(linear_apply, PARAMS, CODES, LABELS.tolist(),
                                                 np.full((1, C), 1.0 / C, np.float32))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
  with pytest.raises(errors.BadRequest, match=r"weights must have rank 2"):
    fisher_lib.weighted_squared_gradients(linear_apply, PARAMS, CODES, LABELS, np.ones(C))


def test_class_weights_refuse_masks_of_two_shapes():
  with pytest.raises(errors.BadRequest, match="one shape"):
    fisher_lib.class_weights(np.array([True, False]), np.array([False, True, True]))


# F12: per-example gradients see batches of one, which a training-mode BatchNorm
# normalises to a constant: every parameter before it got Fisher 0, with no error.


class BatchNormNet(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(8)(x.reshape(x.shape[0], -1))
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(C)(x)


@pytest.fixture(scope="module")
def batchnorm_net():
  model = BatchNormNet()
  variables = init_variables(model, CODES, 3)
  stats = variables["batch_stats"]
  mode = lambda train: lambda p, x: model.apply(
      {"params": p, "batch_stats": stats}, x, train=train, mutable=["batch_stats"])[0]
  return variables["params"], mode(True), mode(False)


@pytest.mark.parametrize("entry", ["fisher_diagonal", "class_fishers"])
def test_a_model_whose_examples_interact_is_refused(batchnorm_net, entry):
  params, training_mode, _ = batchnorm_net
  call = {"fisher_diagonal": lambda f: mj.fisher_diagonal(f, params, CODES, LABELS),
          "class_fishers": lambda f: mj.class_fishers(f, params, CODES, [1])}[entry]
  with pytest.raises(errors.BadRequest, match="change with the other inputs.*inference"):
    call(training_mode)


def test_the_inference_mode_model_still_gets_its_fisher(batchnorm_net):
  params, _, inference_mode = batchnorm_net
  fisher = mj.fisher_diagonal(inference_mode, params, CODES, LABELS)
  assert float(jnp.sum(fisher["Dense_0"]["kernel"])) > 0


# F18: optax wraps a negative label round (-1 is class C - 1): under jit, where labels are
# not read, a -1 padding label scored its example as the last class in the Fisher.

LOGITS = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_labels_outside_the_classes_give_nan_loss_and_gradient(jit):
  loss = jax.jit(mj.cross_entropy) if jit else mj.cross_entropy
  labels = jnp.array([-1, 3, 2])
  np.testing.assert_array_equal(np.isnan(loss(LOGITS, labels)), [True, True, False])
  grad = jax.grad(lambda z: jnp.sum(loss(z, labels)[:1]))(LOGITS)
  assert np.isnan(np.asarray(grad[0])).all()


def test_labels_in_range_give_optax_loss_and_gradient_bit_for_bit():
  labels = jnp.array([2, 0, 1])
  want = optax.softmax_cross_entropy_with_integer_labels(LOGITS, labels)
  np.testing.assert_array_equal(mj.cross_entropy(LOGITS, labels), want)
  grad = lambda f: jax.grad(lambda z: jnp.sum(f(z, labels)))(LOGITS)
  np.testing.assert_array_equal(grad(mj.cross_entropy),
                                grad(optax.softmax_cross_entropy_with_integer_labels))
  np.testing.assert_array_equal(mj.cross_entropy(LOGITS.tolist(), [2, 0, 1]), want)


def test_own_cross_entropy_is_optax_bit_for_bit():
  # Written out so that forgetting never imports optax; it must stay optax's exactly:
  # losses, gradients and per-example gradients, in three dtypes and three layouts.
  rng = np.random.default_rng(0)
  cases = [(jnp.asarray(rng.normal(size=shape) * 40.0, dtype),
            jnp.asarray(rng.integers(0, shape[-1], size=shape[:-1])))
           for dtype in (jnp.float32, jnp.bfloat16, jnp.float16)
           for shape in ((5, 7), (7,), (2, 3, 4))]

  @jax.jit
  def outputs(f):
    def one(logits, labels):
      flat, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
      per_example = jax.vmap(jax.grad(lambda z, y: f(z[None], y[None])[0]))(flat, flat_labels)
      return f(logits, labels), jax.grad(lambda z: jnp.sum(f(z, labels)))(logits), per_example
    return [one(*case) for case in cases]

  ours = outputs(jax.tree_util.Partial(mj.cross_entropy))
  theirs = outputs(jax.tree_util.Partial(optax.softmax_cross_entropy_with_integer_labels))
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_cross_entropy_names_wrong_labels():
  with pytest.raises(errors.BadRequestType, match="labels must be integer"):
    mj.cross_entropy(LOGITS, jnp.zeros(3))
  with pytest.raises(errors.BadRequest, match=r"labels must have shape \(3,\)"):
    mj.cross_entropy(LOGITS, jnp.zeros((3, 1), int))


def test_a_padding_label_poisons_a_fisher_under_jit():
  labels = np.array([0, 1, 2, 3, -1])
  fisher = jax.jit(lambda y: mj.fisher_diagonal(linear_apply, PARAMS, CODES, y))(labels)
  assert np.isnan(np.asarray(fisher["w"])).all()


# F16 (leaves): Python numbers and lists of them as Fisher leaves were used with .astype.


def test_fisher_ratio_takes_python_number_leaves():
  eta = mj.fisher_ratio({"w": 2.0, "v": [1.0, 4.0]}, {"w": 1.0, "v": [1.0, 2.0]})
  np.testing.assert_allclose(jax.tree.leaves(eta), [1.0, 2.0, 2.0])  # v, then w.
  delta = mj.perturbation({"w": [4.0, 1.0]}, {"w": [1.0, 1.0]}, 1e-3, 10.0)
  np.testing.assert_allclose(jax.tree.leaves(delta), [4e-3, 1e-3], rtol=1e-6)


@pytest.mark.parametrize("leaf", ["a", np.array([True]), np.array([1j])],
                         ids=["str", "bool", "complex"])
def test_a_leaf_that_is_no_number_is_named(leaf):
  with pytest.raises(errors.BadRequestType, match=r"f_remain\['w'\] must be a float array"):
    mj.fisher_ratio({"w": np.ones(1)}, {"w": leaf})
  with pytest.raises(errors.BadRequestType, match=r"eta\['w'\] must be a float array"):
    step_sizes({"w": leaf}, 1e-3, 10.0)


# F16 (values): a NaN Fisher became eta = 1 and an inf one the tensor's largest ratio,
# with no error, while negative ones were refused.


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("where", ["numpy", "jax"])
def test_non_finite_concrete_fishers_are_refused(bad, where):
  f_forget = {"w": np.array([bad, 4.0], np.float32)}
  if where == "jax":
    f_forget = jax.device_put(f_forget)
  for call in (lambda: mj.fisher_ratio(f_forget, {"w": np.ones(2, np.float32)}),
               lambda: mj.perturbation({"w": np.ones(2, np.float32)}, f_forget, 1e-3, 10.0)):
    with pytest.raises(errors.BadRequest, match=r"\['w'\] holds 1 non-finite"):
      call()


def test_traced_fishers_are_not_read_and_follow_the_reference():
  # Inside a program (as in the moves) the values are unknown: the reference's rules.
  eta = jax.jit(mj.fisher_ratio)({"w": jnp.array([jnp.nan, jnp.inf, 4.0])}, {"w": jnp.ones(3)})
  np.testing.assert_array_equal(eta["w"], [1.0, 4.0, 4.0])


# F19: each eager op compiled a program of its own (46 for fisher_ratio on a 4-leaf MLP),
# again for every new leaf shape.


def count_programs(fn):
  with mj.CompileClock() as clock:
    jax.block_until_ready(fn())
  return clock.programs


def test_the_pytree_functions_compile_one_program_then_none():
  # Leaf shapes no other test uses: nothing cached before.
  shapes = {"a": (3, 7), "b": (11,), "c": (2, 3, 5)}
  f_forget = {k: np.abs(np.asarray(normal(i, s))) + 1e-3 for i, (k, s) in enumerate(shapes.items())}
  f_remain = {k: np.abs(np.asarray(normal(i + 9, s))) for i, (k, s) in enumerate(shapes.items())}
  for fn in (lambda: mj.fisher_ratio(f_forget, f_remain),
             lambda: mj.perturbation(f_forget, f_remain, 1e-3, 10.0),
             lambda: step_sizes(f_forget, 1e-3, 10.0)):
    assert count_programs(fn) <= 1
    assert count_programs(fn) == 0
  # New lambdas are traced: no new program.
  assert count_programs(lambda: mj.perturbation(f_forget, f_remain, 2e-2, 3.0)) == 0
  assert count_programs(lambda: step_sizes(f_forget, 2e-2, 3.0)) == 0


def test_code_scores_compile_one_program_whatever_the_masks():
  codes = uniform(4, (7, 3, 1, 1))
  params = {"w": normal(5, (3, 7)), "b": normal(6, (7,))}
  mask = fisher_lib.class_mask([2], 7)
  assert count_programs(lambda: mj.code_scores(linear_apply, params, codes, mask)) <= 1
  for other in (fisher_lib.class_mask([0, 5], 7), jnp.asarray(mask)):
    assert count_programs(lambda m=other: mj.code_scores(linear_apply, params, codes, m)) == 0


# F17: code_scores checked only the masks and the logits' shape.


def test_code_scores_refuse_list_codes_and_a_tuple_returning_apply_fn():
  mask = fisher_lib.class_mask([1], C)
  with pytest.raises(errors.BadRequestType, match=r"codes must be a float array.*list"):
    mj.code_scores(linear_apply, PARAMS, np.asarray(CODES).tolist(), mask)
  with pytest.raises(errors.BadRequestType, match="one logits array.*tuple"):
    mj.code_scores(lambda p, x: (linear_apply(p, x), 0), PARAMS, CODES, mask)


# F21: labels (N, 1) broadcast against the classes and gave (N, N) "margins".


@pytest.mark.parametrize("xp", [jnp, np], ids=["jnp", "np"])
def test_code_margins_check_their_labels(xp):
  logits = np.asarray(linear_apply(PARAMS, CODES))
  with pytest.raises(errors.BadRequest, match=r"shape \(N,\)"):
    code_margins(logits, np.arange(C)[:, None], xp=xp)
  with pytest.raises(errors.BadRequest, match="from 1 to 5"):
    code_margins(logits, np.arange(1, C + 1), xp=xp)
  with pytest.raises(errors.BadRequest, match="disagree"):
    code_margins(logits, np.arange(C - 1), xp=xp)
  with pytest.raises(errors.BadRequestType, match="integers"):
    code_margins(logits, np.arange(C) * 1.0, xp=xp)
  margin, correct = code_margins(logits.tolist(), list(range(C)), xp=xp)
  assert np.shape(margin) == np.shape(correct) == (C,)


def test_scores_from_margins_take_lists_and_refuse_other_shapes():
  scores = primitives.scores_from_margins([1.0, -2.0], [1.0, 0.0], [True, False],
                                          [False, True], xp=np)
  assert float(scores.forget_margin) == 1.0 and float(scores.remain_accuracy) == 0.0
  with pytest.raises(errors.BadRequest, match="shape"):
    primitives.scores_from_margins(np.ones(2), np.ones(2), np.ones(3, bool), np.ones(2, bool),
                                   xp=np)
