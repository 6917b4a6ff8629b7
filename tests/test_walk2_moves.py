"""Faults of the second walk through the moves (notes W3, W7, W9): the same model whatever
the params' container, lambdas the params' dtype cannot carry, and the refusal of a head
without an output bias."""

import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

import mnemonic_jax as mj
from mnemonic_jax import checkpointing, errors, workflow
from mnemonic_jax.forgetting import moves
from mnemonic_jax.forgetting.moves import directional
from mnemonic_jax.models import bounds

from cli_support import assert_refused, run_commands
from codes_support import mlp_fitted_to_codes
from random_support import uniform

NUM_CLASSES = 5
FORGET = [1]
#: The moves that act on the layers where the Fisher ratio concentrates.
CONCENTRATED = ("head", "shrink", "shrink+bias")


@pytest.fixture(scope="module")
def fitted():
  """A sigmoid MLP whose Fisher ratio concentrates in its head's kernel alone: the head's
  bias is moved with it only as its kernel's module (its own ratio is below the cut)."""
  return mlp_fitted_to_codes(NUM_CLASSES, 16, "sigmoid")


def _containers(apply_fn, params):
  """The fitted MLP's parameters in other containers, each with its ``apply_fn`` and a
  function giving its tensors in one order (kernel 0, bias 0, kernel 1, bias 1)."""
  def nest(k0, b0, k1, b1):
    return {"Dense_0": {"kernel": k0, "bias": b0}, "Dense_1": {"kernel": k1, "bias": b1}}
  ordered = lambda q: [q[m][n] for m in ("Dense_0", "Dense_1") for n in ("kernel", "bias")]
  tensors = ordered(params)
  flat = dict(zip(("w0", "b0", "w1", "b1"), tensors))
  pairs = [{"k": tensors[0], "b": tensors[1]}, {"k": tensors[2], "b": tensors[3]}]

  def plain(q, x):  # A hand-written function over a list: no Flax at all.
    h = jax.nn.sigmoid(x.reshape(x.shape[0], -1) @ q[0] + q[1])
    return h @ q[2] + q[3]
  return {
      "nested dict": (apply_fn, params, ordered),
      "FrozenDict": (apply_fn, FrozenDict(params), ordered),
      "flat dict": (lambda q, x: apply_fn(nest(q["w0"], q["b0"], q["w1"], q["b1"]), x), flat,
                    lambda q: [q["w0"], q["b0"], q["w1"], q["b1"]]),
      "list": (lambda q, x: apply_fn(nest(*q), x), list(tensors), list),
      "tuple": (lambda q, x: apply_fn(nest(*q), x), tuple(tensors), list),
      "list of dicts": (lambda q, x: apply_fn(nest(q[0]["k"], q[0]["b"], q[1]["k"], q[1]["b"]),
                                              x), pairs,
                        lambda q: [q[0]["k"], q[0]["b"], q[1]["k"], q[1]["b"]]),
      "plain function": (plain, list(tensors), list)}


def test_layer_modules_are_read_from_the_model_not_the_container(fitted):
  apply_fn, params, codes = fitted
  for name, (fn, tree, ordered) in _containers(apply_fn, params).items():
    modules = ordered(directional.layer_modules(fn, tree, codes))
    # Kernel and bias of each Dense are one module, the two layers two.
    assert modules[0] == modules[1] != modules[2] == modules[3], (name, modules)


@pytest.mark.parametrize("name, shape", [("mlp", (4, 4, 1)), ("vit_tiny", (8, 8, 1)),
                                         ("resnet18_cifar", (8, 8, 3))])
def test_layer_modules_of_the_built_in_models_are_their_flax_modules(name, shape):
  model = mj.create_model(name, 3)
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)  # Shapes are all it reads.
  stats = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables.get("batch_stats", {}))
  apply_fn = mj.inference_apply_fn(model, stats)
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  read = jax.tree.leaves(directional.layer_modules(apply_fn, variables["params"], x))
  by_parent = [tuple(path[:-1]) for path, _ in flat]
  for i in range(len(flat)):
    for j in range(len(flat)):
      assert (read[i] == read[j]) == (by_parent[i] == by_parent[j]), (flat[i][0], flat[j][0])


def _same_moves(fitted, move, names):
  apply_fn, params, codes = fitted
  results = {}
  for name, (fn, tree, ordered) in _containers(apply_fn, params).items():
    if name not in names:
      continue
    new, report = mj.forget(fn, tree, codes, FORGET, move=move)
    assert jax.tree.structure(new) == jax.tree.structure(tree)
    changed = [bool(jnp.any(a != b)) for a, b in zip(ordered(new), ordered(tree))]
    results[name] = (changed, ordered(new), report.met)
  for changed, _, _ in results.values():
    assert changed == [False, False, True, True]  # The head: its kernel and its bias.
  _, expected, met = next(iter(results.values()))
  for name, (other, new, other_met) in results.items():
    assert other == changed and other_met == met, (name, other)
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-6)


def test_head_moves_only_the_head_of_params_in_a_list(fitted):
  _same_moves(fitted, "head", ("list",))  # All four tensors moved before (one "module").


@pytest.mark.slow
@pytest.mark.parametrize("move", CONCENTRATED)
def test_the_concentrated_layers_are_the_same_whatever_the_container(fitted, move):
  _same_moves(fitted, move, tuple(_containers(*fitted[:2])))


def test_concentrated_layers_without_modules_take_root_tensors_one_by_one():
  big, small = jnp.full((20, 5), 40.0), jnp.ones(5)
  assert directional.concentrated_layers({"k": big, "b": small}) == {"k": True, "b": False}
  assert directional.concentrated_layers([big, small]) == [True, False]
  assert directional.concentrated_layers([big, small], modules=[0, 0]) == [True, True]
  with pytest.raises(ValueError, match="shaped like eta"):
    directional.concentrated_layers([big, small], modules=[0])


def test_a_declared_layernorm_is_found_in_a_frozendict():
  width = 4
  params = {"LayerNorm_0": {"scale": 2 * jnp.ones(width), "bias": jnp.arange(width) / 4.0}}
  v = np.random.default_rng(0).standard_normal((width, 3))
  bound = bounds.LayerNormed(("LayerNorm_0",))
  np.testing.assert_array_equal(bound.max_dot(v, FrozenDict(params)), bound.max_dot(v, params))


# ------------------------------------------------------------- W7: lambdas below the dtype


def _cast(tree, dtype):
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


@pytest.mark.parametrize("dtype, lambdas, named", [
    (jnp.float16, (1e-9, 10.0), "lambda1=1e-09 is below the smallest positive float16 value "
                                "(5.96e-08)"),
    (jnp.float16, (1e-3, 5e-8), "lambda2=5e-08 is below the smallest positive float16 value"),
    (jnp.bfloat16, (1e-41, 10.0), "lambda1=1e-41 is below the smallest positive bfloat16 "
                                  "value (9.18e-41)"),
    (jnp.float32, (1e-3, 1e-46), "lambda2=1e-46 is below the smallest positive float32 value"),
    (jnp.float64, (1e-46, 10.0), "below the smallest positive float32 value")])  # Computed in.
def test_lambdas_the_dtype_cannot_carry_are_refused(fitted, dtype, lambdas, named):
  _, params, _ = fitted
  params = jax.tree.map(lambda a: np.asarray(a, dtype), params)
  with pytest.raises(errors.BadRequest, match=re.escape(named)):
    workflow.check_lambdas(params, *lambdas)
  if dtype is jnp.float16:  # The front door says the same, one sentence.
    apply_fn, _, codes = fitted
    with pytest.raises(errors.BadRequest) as refused:
      mj.forget(apply_fn, _cast(params, dtype), codes, FORGET, *lambdas)
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_the_smallest_positive_value_of_the_dtype_is_taken(fitted):
  _, params, _ = fitted
  tiny = float(jnp.finfo(jnp.float16).smallest_subnormal)
  assert workflow.check_lambdas(_cast(params, jnp.float16), tiny, tiny) is None


@pytest.mark.parametrize("dtype, move, lambdas", [
    (jnp.float32, None, (1e-30, 1e-25)), (jnp.bfloat16, None, (1e-30, 1e-25)),
    (jnp.float16, None, (1e-7, 1e-7)),
    (jnp.float16, moves.Paper(grid=((1e-7,), (1e-7,))), (None, None)),
    (jnp.float16, moves.Shrink(grid=(1e-9,)), (None, None))])
def test_a_move_that_changes_nothing_says_so(fitted, dtype, move, lambdas):
  apply_fn, params, codes = fitted
  params = _cast(params, dtype)
  with pytest.warns(errors.NothingMovedWarning, match="left every parameter unchanged") as w:
    new, report = mj.forget(apply_fn, params, codes, FORGET, *lambdas, move=move)
  assert len(w) == 1 and issubclass(w[0].category, errors.RuleNotMetWarning)
  if report.met is False:  # The one warning says both.
    assert "did not meet its rule" in str(w[0].message)
  assert report.changed is False and report.to_dict()["changed"] is False
  chex.assert_trees_all_equal(new, params)
  sentences = workflow.forget_warnings(report.to_dict())
  assert len(sentences) == 1 and "left every parameter unchanged" in sentences[0]


def test_a_move_that_changes_something_says_nothing_of_it(fitted):
  apply_fn, params, codes = fitted
  _, report = mj.forget(apply_fn, params, codes, FORGET, 1e-3, 10.0)
  assert report.changed is True and "changed" not in report.to_dict()


@pytest.fixture(scope="module")
def low_precision_bundles(tiny_digits_bundle, tmp_path_factory):
  root, bundle = tmp_path_factory.mktemp("walk2"), tiny_digits_bundle[0]
  return {name: checkpointing.save_bundle(root / name, bundle.replace(
      params=jax.tree.map(lambda a: np.asarray(a).astype(jnp.dtype(name)), bundle.params)))
          for name in ("float16", "bfloat16")}


def _forget_case(bundle, lambda1, lambda2, output):
  return dict(args=("forget", "--checkpoint", bundle, "--classes", "3", "--lambda1", lambda1,
                    "--lambda2", lambda2, "--output", output), watch=[bundle])


def test_the_command_line_refuses_such_lambdas_in_one_line(low_precision_bundles, tmp_path):
  bundle = low_precision_bundles["float16"]
  ran = run_commands({"refused": _forget_case(bundle, "1e-9", "10", tmp_path / "out")})
  assert_refused(ran["refused"].result, "lambda1=1e-09 is below the smallest positive float16 "
                 "value (5.96e-08)")
  assert not (tmp_path / "out").exists() and ran["refused"].before == ran["refused"].after


@pytest.mark.slow
def test_the_command_line_warns_of_a_no_op_in_one_line(low_precision_bundles, tmp_path):
  bundle = low_precision_bundles["bfloat16"]
  ran = run_commands({"no-op": _forget_case(bundle, "1e-30", "1e-25", tmp_path / "out")})
  no_op = ran["no-op"].result
  assert no_op.returncode == 0 and ran["no-op"].before == ran["no-op"].after, no_op.stderr
  lines = [line for line in no_op.stdout.splitlines() if "unchanged" in line]
  assert lines == ["warning: the move left every parameter unchanged: its step is 0 or rounds "
                   "to 0 in the parameters' dtype, so nothing was forgotten; try larger "
                   "lambdas, or none (a data-free move)"], no_op.stdout


# ----------------------------------------------------- W9: a head without an output bias


def _head_without_bias():
  """A linear head fitted to margins of 10 on 3 codes, with no output bias."""
  codes = uniform(0, (3, 2, 2, 1))
  flat = np.asarray(codes).reshape(3, -1)
  params = {"w": jnp.asarray(np.linalg.pinv(flat) @ (10 * np.eye(3)), jnp.float32)}
  return (lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]), params, codes


def test_the_refusal_lists_exactly_the_moves_that_need_an_output_bias():
  needing = moves.base.needing_output_bias()
  assert needing == [name for name, cls in sorted(moves.MOVES.items())
                     if cls.needs_output_bias]
  assert {"bias", "shrink+bias"} <= set(needing) and "shrink" not in needing
  apply_fn, params, codes = _head_without_bias()
  for name in needing:
    with pytest.raises(errors.BadRequest, match="no output bias") as refused:
      mj.forget(apply_fn, params, codes, [0], move=name)
    message = str(refused.value)
    listed = re.search(r"which the moves (.*?) lower:", message).group(1)
    assert sorted(re.findall(r"'([^']+)'", listed)) == needing, (name, message)
    # The move it offers needs none; of the paper's it says what the docs say.
    assert "use move='shrink'" in message and "'paper' runs on such models too, but missed" \
        in message


def test_the_no_output_kernel_refusal_lists_the_same_moves_and_offers_the_same():
  """Its list was hand-written ('reassign', 'erase', 'project': not 'bias' or 'shrink+bias',
  which read the kernel too) and it offered move='paper' as if it worked."""
  codes = uniform(0, (3, 2, 2, 1))
  mix = jnp.asarray(np.ones((3, 3)) + np.eye(3), jnp.float32)  # Every logit reads every column.
  apply_fn = lambda p, x: (x.reshape(x.shape[0], -1) @ p["w"] + p["b"]) @ mix
  params = {"w": jnp.asarray(uniform(1, (4, 3)), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
  from mnemonic_jax.forgetting.moves import outputs  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.pytrees import as_pytree  # pylint: disable=import-outside-toplevel
  with pytest.raises(errors.BadRequest, match="no output kernel") as refused:
    outputs.output_kernel(as_pytree(apply_fn), params, codes)
  message = str(refused.value)
  listed = re.search(r"which the moves (.*?) read:", message).group(1)
  assert sorted(re.findall(r"'([^']+)'", listed)) == moves.base.needing_output_bias(), message
  assert "use move='shrink'" in message and "'paper' runs on such models too, but missed" \
      in message


@pytest.mark.slow
def test_every_move_that_does_not_need_an_output_bias_runs_without_one():
  apply_fn, params, codes = _head_without_bias()
  for name, cls in sorted(moves.MOVES.items()):
    if cls.needs_output_bias:
      continue
    lambdas = (1e-3, 10.0) if name == "algorithm2" else (None, None)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", errors.RuleNotMetWarning)
      _, report = mj.forget(apply_fn, params, codes, [0], *lambdas, move=name)
    if name == "shrink":  # The move the refusal offers.
      assert report.met is True, name
    if name == "paper":  # As the refusal and docs/python.md say: it runs, misses its rule.
      assert report.met is False
