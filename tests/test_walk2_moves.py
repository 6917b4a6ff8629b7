"""Faults of the second walk through the moves (notes W3, W7, W9): the same model whatever
the params' container, lambdas the params' dtype cannot carry, and the refusal of a head
without an output bias."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

import mnemonic_jax as mj
from mnemonic_jax.forgetting.moves import directional
from mnemonic_jax.models import bounds

from codes_support import mlp_fitted_to_codes

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
