"""The layer taps of the ViT's layers, each exact against the generic vmap Fisher.

DenseGeneral (the attention projections), LayerNorm / RMSNorm, multi-head attention, the
class token and the position embedding, then the whole ViT: ``method="factorized"`` must
equal ``method="vmap"`` (per-example gradients by ``vmap(grad)``) on tiny shapes, with
random parameters so that no zero-initialised bias or unit scale hides an error.
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import fisher, layer_taps
from mnemonic_jax.models import vit

from random_support import init_variables, normal, uniform

NUM_CLASSES = 3


class Branches(nn.Module):
  """A classifier around several layers: each gets the input reshaped to its own shape.

  Branch ``i`` applies ``layers[i]`` to ``x.reshape(N, *shapes[i])``; the outputs go
  through tanh, are flattened, concatenated and read by a Dense head. One model, one
  compilation per test, every layer's parameters a separate leaf to compare.
  """

  layers: tuple[nn.Module, ...]
  shapes: tuple[tuple[int, ...], ...]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n = x.shape[0]
    h = [jnp.tanh(layer(x.reshape(n, *shape))).reshape(n, -1)
         for layer, shape in zip(self.layers, self.shapes)]
    return nn.Dense(NUM_CLASSES)(jnp.concatenate(h, axis=1))


def Head(layer: nn.Module, shape: tuple[int, ...] = (3, 4)) -> Branches:  # noqa: N802
  """One layer in a classifier."""
  return Branches((layer,), (shape,))


def labels_of(n: int) -> jax.Array:
  return jax.device_put(np.arange(n, dtype=np.int32) % NUM_CLASSES)


def perturbed(params: Any, seed: int = 7) -> Any:
  """Params plus N(0, 0.3^2) noise: biases, scales and the class token become non-trivial.

  Drawn with NumPy: nothing compiles for it."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jax.device_put(
      (np.asarray(a) + 0.3 * rng.standard_normal(a.shape)).astype(a.dtype)), params)


def init_perturbed(model: nn.Module, x: jax.Array) -> Any:
  """Perturbed params of the shapes ``model.init`` gives (random_support.init_variables)."""
  return perturbed(init_variables(model, x, 1)["params"])


def apply_and_params(model: nn.Module, size: int = 24, n: int = 4):
  x = normal(0, (n, size))
  params = init_perturbed(model, x)
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  return apply_fn, params, x, labels_of(n)


def assert_taps_equal_vmap(apply_fn, params, x, y, microbatch_size=None):
  assert layer_taps.covers(apply_fn, params, x)
  want = jax.jit(lambda p: mj.fisher_diagonal(apply_fn, p, x, y, method="vmap"))(params)
  got = jax.jit(lambda p: mj.fisher_diagonal(apply_fn, p, x, y, microbatch_size,
                                             method="factorized"))(params)
  chex.assert_trees_all_equal_shapes(got, params)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-10)
  # No leaf is zero on both paths (the comparison would then prove nothing), except
  # attention's key bias: softmax ignores a constant added to every key's score, so its
  # gradient is zero up to rounding (~1e-20).
  for keypath, leaf in jax.tree_util.tree_flatten_with_path(want)[0]:
    name = jax.tree_util.keystr(keypath)
    assert "['key']['bias']" in name or float(jnp.max(leaf)) > 1e-12, name


@pytest.mark.slow  # ~8 s; the whole-ViT test below covers these layers in the default suite.
def test_dense_general_equals_vmap():
  """DenseGeneral with every kind of contraction (and Dense over several token axes)."""
  layers = {
      (24,): nn.DenseGeneral(5),                                # (N, D): factorised form.
      (4, 6): nn.DenseGeneral((2, 3)),                          # Tokens -> heads (H, d).
      (4, 2, 3): nn.DenseGeneral(5, axis=(-2, -1)),             # Attention's "out".
      (3, 4, 2): nn.DenseGeneral((2, 2), axis=1),               # A middle axis contracted.
      (3, 2, 2, 2): nn.DenseGeneral(5, axis=(1, 3), use_bias=False),
      (2, 3, 4): nn.Dense(5),                                   # Dense over two token axes.
  }
  model = Branches(tuple(layers.values()), tuple(layers))
  assert_taps_equal_vmap(*apply_and_params(model), microbatch_size=3)


@pytest.mark.slow  # ~4 s; the whole-ViT test below covers the LayerNorms too.
def test_norms_equal_vmap():
  """LayerNorm (fast and two-pass variance, no bias, no scale, several axes) and RMSNorm."""
  layers = [
      ((24,), nn.LayerNorm()),
      ((4, 6), nn.LayerNorm()),
      ((4, 6), nn.LayerNorm(use_fast_variance=False, epsilon=1e-3)),
      ((4, 6), nn.LayerNorm(use_bias=False)),
      ((4, 6), nn.LayerNorm(use_scale=False)),
      ((2, 3, 4), nn.LayerNorm(reduction_axes=(2, 3), feature_axes=(2, 3))),
      ((2, 3, 4), nn.LayerNorm(reduction_axes=(1, 2), feature_axes=-1)),
      ((4, 6), nn.RMSNorm()),
  ]
  model = Branches(tuple(l for _, l in layers), tuple(s for s, _ in layers))
  assert_taps_equal_vmap(*apply_and_params(model))


@pytest.mark.slow  # Plain attention is in the ViT test; this adds qk-norm and other widths.
def test_attention_equals_vmap():
  """Query/key/value/out projections (DenseGeneral) around softmax(q k^T) v (einsums)."""
  model = Branches(
      (nn.MultiHeadDotProductAttention(num_heads=2),
       nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=4, out_features=3,
                                       normalize_qk=True)),
      ((4, 6), (4, 6)))
  assert_taps_equal_vmap(*apply_and_params(model))


def test_class_token_and_position_embedding_equal_vmap():
  """Parameters shared by every token: their per-example gradients from the registered formula."""
  model = Branches((vit.ClassToken(), vit.AddPositionEmbedding()), ((4, 6), (4, 6)))
  assert_taps_equal_vmap(*apply_and_params(model))


def tiny_vit(depth=1, dim=8):
  model = mj.create_model("vit_tiny", NUM_CLASSES, patch_size=4, dim=dim, depth=depth,
                          num_heads=2, mlp_dim=12)
  codes = uniform(0, (5, 8, 8, 1))
  params = init_perturbed(model, codes)
  return mj.inference_apply_fn(model, {}), params, codes, labels_of(5)


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_vit_fisher_takes_the_factorized_path_and_equals_vmap(monkeypatch):
  """The whole ViT: every leaf covered; ``auto`` takes the taps; microbatched; exact."""
  apply_fn, params, codes, labels = tiny_vit()
  assert_taps_equal_vmap(apply_fn, params, codes, labels)
  calls = []
  real = layer_taps.weighted_squared_gradients
  monkeypatch.setattr(layer_taps, "weighted_squared_gradients",
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  jax.eval_shape(lambda p: fisher.weighted_squared_gradients(
      apply_fn, p, codes, labels, jnp.ones((1, 5)), method="auto"), params)
  assert calls, "method='auto' did not take the factorized path on the ViT"


@pytest.mark.slow  # The same weighted sums as the ViT test, with two weight rows.
def test_vit_forget_is_the_same_either_way():
  """``class_fishers`` (what forget uses) on the ViT: the taps equal vmap for both means."""
  apply_fn, params, codes, _ = tiny_vit(depth=1)
  codes = codes[:NUM_CLASSES]
  run = lambda method: jax.jit(lambda p: mj.class_fishers(
      apply_fn, p, codes, [1], method=method))(params)
  chex.assert_trees_all_close(run("factorized"), run("vmap"), rtol=1e-4, atol=1e-10)


# ----------------------------------------------------------------------------------------
# What the taps refuse: the Fisher then takes vmap.


class Twice(nn.Module):
  """One LayerNorm applied twice: no single (input, output) pair."""

  @nn.compact
  def __call__(self, x):
    norm = nn.LayerNorm()
    return nn.Dense(NUM_CLASSES)(norm(norm(x)).reshape(x.shape[0], -1))


class BareParam(nn.Module):
  """A parameter used directly in ``__call__``, outside any tapped layer."""

  @nn.compact
  def __call__(self, x):
    x = x * self.param("gain", nn.initializers.ones, x.shape[1:])
    return nn.Dense(NUM_CLASSES)(x.reshape(x.shape[0], -1))


class MyLayerNorm(nn.LayerNorm):
  """A subclass: it may change the computation, so the built-in formula is not trusted."""


class WrongShape(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x + self.param("b", nn.initializers.zeros, x.shape[1:])


class Fine(nn.Module):
  """A registered Shift-like layer whose formula is right."""

  @nn.compact
  def __call__(self, x):
    return x + self.param("b", nn.initializers.zeros, x.shape[1:])


layer_taps.register_layer(WrongShape, lambda module, x, delta: {"b": delta[:, :1]})
layer_taps.register_layer(Fine, lambda module, x, delta: {"b": delta})


@pytest.mark.parametrize("module, covered", [
    (Twice(), False),
    (BareParam(), False),
    (Head(MyLayerNorm()), False),
        (Head(nn.LayerNorm(reduction_axes=(0, 1))), False),  # Statistics over the batch.
    (Head(WrongShape()), False),
    (Head(Fine()), True),
], ids=["called-twice", "bare-param", "subclass", "batch-statistics",
        "wrong-shape", "registered"])
def test_covers_refuses_what_it_cannot_compute(module, covered):
  x = normal(0, (4, 12))
  params = init_variables(module, x, 1)["params"]
  apply_fn = lambda p, x: module.apply({"params": p}, x)
  assert layer_taps.covers(apply_fn, params, x) is covered
  if covered:
    assert_taps_equal_vmap(apply_fn, perturbed(params), x, labels_of(4))
  else:
    with pytest.raises(ValueError, match="factorized"):
      mj.fisher_diagonal(apply_fn, params, x, labels_of(4),
                         method="factorized")


@pytest.mark.parametrize("module_type, formula, message", [
    (int, lambda m, x, d: {}, "Module subclass"),
    (nn.LayerNorm, lambda m, x, d: {}, "built-in"),
    (Fine, "not callable", "callable"),
])
def test_register_layer_refuses_bad_arguments(module_type, formula, message):
  with pytest.raises(TypeError, match=message):
    layer_taps.register_layer(module_type, formula)


@pytest.mark.slow  # ~5-10 s of ViT init; the taps tests above cover the ViT exactly.
def test_vit_logits_do_not_depend_on_other_examples():
  """The taps' premise: the ViT's output row n is a function of input n alone."""
  apply_fn, params, codes, _ = tiny_vit(depth=1)
  apply_fn = jax.jit(apply_fn)  # Two programs (batch N, batch 1), not an eager op per row.
  batched = apply_fn(params, codes)
  alone = jnp.concatenate([apply_fn(params, codes[i:i + 1]) for i in range(codes.shape[0])])
  np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
