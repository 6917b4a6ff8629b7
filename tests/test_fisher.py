import itertools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import layer_taps
from mnemonic_jax import parallel

from random_support import init_variables, normal, uniform

# Inputs, labels, parameters and the references are made with NumPy (random_support):
# jax.random draws and eager jnp ops would compile a program per shape and operation.


def labels_of(n, c):
  return jax.device_put(np.arange(n, dtype=np.int32) % c)


def softmax_regression_data(n=12, d=5, c=4, seed=0):
  x = normal(seed, (n, d))
  y = labels_of(n, c)
  params = {"W": normal(seed + 1, (d, c)), "b": normal(seed + 2, (c,))}
  return x, y, params


def linear_apply(params, x):
  return x @ params["W"] + params["b"]


def closed_form_fisher(params, x, y):
  """Per-example gradient of CE w.r.t. W is outer(x, softmax - onehot); w.r.t. b the residual.

  In float64 NumPy."""
  w, b, x = (np.asarray(a, np.float64) for a in (params["W"], params["b"], x))
  logits = x @ w + b
  softmax = np.exp(logits - logits.max(-1, keepdims=True))
  softmax /= softmax.sum(-1, keepdims=True)
  residual = softmax - np.eye(b.shape[0])[np.asarray(y)]
  return {"W": np.mean(np.einsum("ni,nj->nij", x, residual) ** 2, axis=0),
          "b": np.mean(residual**2, axis=0)}


def mean_of(trees):
  """The leafwise mean of pytrees (NumPy)."""
  return jax.tree.map(lambda *s: np.mean(np.stack([np.asarray(a) for a in s]), axis=0), *trees)


def test_softmax_regression_fisher_matches_closed_form():
  x, y, params = softmax_regression_data()
  got = mj.fisher_diagonal(linear_apply, params, x, y)
  chex.assert_trees_all_close(got, closed_form_fisher(params, x, y), rtol=1e-5, atol=1e-7)


def test_factorized_dense_path_matches_closed_form():
  x, y, params = softmax_regression_data()
  model = nn.Dense(4)
  flax_params = {"kernel": params["W"], "bias": params["b"]}
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  want = closed_form_fisher(params, x, y)
  want = {"kernel": want["W"], "bias": want["b"]}
  assert layer_taps.covers(apply_fn, flax_params, x)  # A bare root Dense works too.
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, flax_params, x, y, method="factorized"), want,
      rtol=1e-5, atol=1e-7)
  mlp = mj.create_model("mlp", 4, hidden=(), activation="relu")
  mlp_params = {"Dense_0": flax_params}
  apply_fn = mj.inference_apply_fn(mlp, {})
  assert layer_taps.covers(apply_fn, mlp_params, x)
  got = mj.fisher_diagonal(apply_fn, mlp_params, x, y, method="factorized")
  chex.assert_trees_all_close(got["Dense_0"], want, rtol=1e-5, atol=1e-7)


def small_mlp(seed=0, n=10):
  model = mj.create_model("mlp", 10, hidden=(16, 8))
  codes = uniform(seed, (n, 4, 4, 1))
  params = init_variables(model, codes, seed + 1)["params"]
  return mj.inference_apply_fn(model, {}), params, codes, labels_of(n, 10)


def test_vmap_equals_python_loop_of_grad():
  apply_fn, params, x, y = small_mlp()
  loss = lambda p, xi, yi: mj.cross_entropy(apply_fn(p, xi[None]), yi[None])[0]
  grad = jax.jit(jax.grad(loss))  # One example at a time (jitted: ~2 s less than eager).
  xs, ys = np.asarray(x), np.asarray(y)
  want = mean_of([jax.tree.map(np.square, jax.device_get(grad(params, xs[i], ys[i])))
                  for i in range(len(ys))])
  got = mj.fisher_diagonal(apply_fn, params, x, y, method="vmap")
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-8)
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, params, x, y, method="factorized"), want, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("method", ["vmap", "factorized"])
@pytest.mark.parametrize("microbatch_size", [1, 3, 4, 10, 64])
def test_microbatched_equals_unbatched(method, microbatch_size):
  apply_fn, params, x, y = small_mlp()
  full = mj.fisher_diagonal(apply_fn, params, x, y, method=method)
  chunked = mj.fisher_diagonal(apply_fn, params, x, y, microbatch_size, method=method)
  chex.assert_trees_all_close(chunked, full, rtol=1e-5, atol=1e-9)


def test_layer_taps_equal_vmap_on_conv_batchnorm(conv_bn_model):
  """Conv and inference BatchNorm (with non-trivial statistics), in the default suite."""
  model = mj.create_model(conv_bn_model, 3)
  codes = uniform(0, (3, 6, 6, 2))
  variables = init_variables(model, codes, 1)
  stats = jax.tree.map(lambda a: a + uniform(2, a.shape), variables["batch_stats"])
  apply_fn = mj.inference_apply_fn(model, stats)
  assert layer_taps.covers(apply_fn, variables["params"], codes)
  vmap, taps = (mj.fisher_diagonal(apply_fn, variables["params"], codes, labels_of(3, 3),
                                   method=m) for m in ("vmap", "factorized"))
  chex.assert_trees_all_close(taps, vmap, rtol=1e-4, atol=1e-10)


def _patches_by_slices(x, window, strides, padding):
  """im2col as layer_taps built it before: a strided slice per window offset, concatenated.

  In NumPy (copies only, so bit for bit what the same slices in JAX give)."""
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:-1], window, strides, padding)
  x = np.pad(np.asarray(x), ((0, 0), *padding, (0, 0)))
  out = [(x.shape[1 + d] - window[d]) // strides[d] + 1 for d in range(len(window))]
  slices = []
  for offset in itertools.product(*(range(k) for k in window)):
    slices.append(x[(slice(None), *(slice(o, o + (n - 1) * s + 1, s)
                                    for o, n, s in zip(offset, out, strides)), slice(None))])
  return np.concatenate(slices, axis=-1)


@pytest.mark.parametrize("shape, window, strides, padding", [
    ((2, 7, 7, 3), (3, 3), (1, 1), "SAME"),
    ((2, 8, 9, 2), (3, 2), (2, 3), "VALID"),
    ((1, 9, 4), (4,), (2,), ((1, 2),)),
    ((2, 5, 6, 4, 1), (2, 3, 2), (1, 2, 1), "SAME"),
    ((3, 6, 6, 1), (1, 1), (2, 2), ((0, 1), (1, 0))),
])
def test_patches_are_the_window_offsets_in_order(shape, window, strides, padding):
  """The gathered patches are bit for bit the strided slices per offset, concatenated."""
  x = normal(0, shape)
  got = jax.jit(layer_taps._patches, static_argnums=(1, 2, 3))(x, window, strides, padding)
  chex.assert_trees_all_equal(got, _patches_by_slices(x, window, strides, padding))


class _StridedConv(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(3, (3, 2), strides=(2, 1), padding="VALID")(x)
    x = nn.Conv(2, (2,), strides=2, padding=((1, 0),))(jnp.tanh(x).reshape(x.shape[0], -1, 3))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_layer_taps_equal_vmap_on_strided_convolutions():
  model = _StridedConv()
  codes = uniform(0, (3, 7, 5, 2))
  params = init_variables(model, codes, 1)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  assert layer_taps.covers(apply_fn, params, codes)
  vmap, taps = (mj.fisher_diagonal(apply_fn, params, codes, labels_of(3, 3), method=m)
                for m in ("vmap", "factorized"))
  chex.assert_trees_all_close(taps, vmap, rtol=1e-4, atol=1e-10)


@pytest.mark.slow  # 30-100 s of compilation on 2 cores; the default suite checks the taps
# on the Conv+BatchNorm model (above) and on the ViT's layers (test_layer_taps_vit.py).
@pytest.mark.parametrize("name, shape", [("resnet18_cifar", (8, 8, 3)), ("resnet18", (16, 16, 3))])
def test_layer_taps_equal_vmap_on_resnet(name, shape):
  """Conv (strided, padded), inference BatchNorm, max-pool, Dense: exact against vmap."""
  model = mj.create_model(name, 3, width=4)
  codes = mj.generate_codes(jax.random.key(0), 3, shape)
  variables = model.init(jax.random.key(1), codes)
  # Non-trivial running statistics, so BatchNorm's x_hat matters.
  stats = jax.tree.map(lambda a: a + jax.random.uniform(jax.random.key(2), a.shape),
                       variables["batch_stats"])
  apply_fn = mj.inference_apply_fn(model, stats)
  assert layer_taps.covers(apply_fn, variables["params"], codes)
  # Jitted: eager, the ResNet's per-op dispatch dominates (a minute on 2 cores).
  vmap = jax.jit(lambda p: mj.fisher_diagonal(apply_fn, p, codes, jnp.arange(3),
                                              method="vmap"))(variables["params"])
  taps = jax.jit(lambda p: mj.fisher_diagonal(apply_fn, p, codes, jnp.arange(3), 2,
                                              method="factorized"))(variables["params"])
  chex.assert_trees_all_equal_shapes(taps, variables["params"])
  chex.assert_trees_all_close(taps, vmap, rtol=1e-3, atol=1e-10)


class _Gain(nn.Module):
  """A parameter used in ``__call__`` itself, outside any tapped layer."""

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape(x.shape[0], -1) * self.param("gain", nn.initializers.ones, (x[0].size,))
    return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))


def test_models_with_other_parameters_fall_back_to_vmap():
  # The ViT is covered now (tests/test_layer_taps_vit.py); a bare parameter is not.
  model = _Gain()
  codes = uniform(0, (3, 8, 8, 3))
  params = init_variables(model, codes, 1)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  assert not layer_taps.covers(apply_fn, params, codes)
  labels = labels_of(3, 3)
  f = jax.jit(lambda p: mj.fisher_diagonal(apply_fn, p, codes, labels))(params)
  loss = lambda p, xi, yi: mj.cross_entropy(apply_fn(p, xi[None]), yi[None])[0]
  grad = jax.jit(jax.grad(loss))  # One example at a time.
  squares = [jax.tree.map(np.square, jax.device_get(grad(params, np.asarray(codes)[i],
                                                         np.int32(i)))) for i in range(3)]
  chex.assert_trees_all_close(f, mean_of(squares), rtol=1e-5, atol=1e-9)
  with pytest.raises(ValueError, match="factorized"):
    mj.fisher_diagonal(apply_fn, params, codes, labels, method="factorized")


def test_class_fishers_are_means_over_class_subsets():
  apply_fn, params, codes, _ = small_mlp()
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, forget=[2, 7])
  codes, labels = np.asarray(codes), np.arange(10, dtype=np.int32)  # Sliced on the host.
  one = lambda c: mj.fisher_diagonal(apply_fn, params, codes[c:c + 1], labels[c:c + 1])
  per_class = [one(c) for c in range(10)]
  mean = lambda cs: mean_of([per_class[c] for c in cs])
  chex.assert_trees_all_close(f_forget, mean([2, 7]), rtol=1e-5, atol=1e-9)
  chex.assert_trees_all_close(f_remain, mean([0, 1, 3, 4, 5, 6, 8, 9]), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("classes, message", [
    ([], "no class"), ([3, 3], "duplicated"), ([10], "out of range"), ([-1], "out of range"),
    (list(range(10)), "every class")])
def test_bad_classes(classes, message):
  apply_fn, params, codes, _ = small_mlp()
  with pytest.raises(ValueError, match=message):
    mj.class_fishers(apply_fn, params, codes, forget=classes)


def test_codes_that_do_not_fit_the_model():
  apply_fn, params, _, _ = small_mlp()
  wrong = uniform(0, (10, 5, 5, 1))
  with pytest.raises(ValueError, match=r"\(5, 5, 1\) do not fit the model"):
    mj.class_fishers(apply_fn, params, wrong, forget=[0])


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_sharded_fisher_equals_single_device():
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  for method in ("vmap", "factorized"):
    apply_fn, params, x, y = small_mlp(n=12)
    single = mj.fisher_diagonal(apply_fn, params, x, y, 4, method=method)
    sharded = jax.jit(lambda p, x, y: mj.fisher_diagonal(
        apply_fn, p, x, y, 4, method=method, mesh=mesh))(params, x, y)
    chex.assert_trees_all_close(sharded, single, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("entry", ["fisher_diagonal", "class_fishers"])
@pytest.mark.parametrize("loss_fn, error, phrase", [
    (lambda logits, y: jnp.mean(mj.cross_entropy(logits, y)), ValueError,
     r"per-example losses of shape \(N,\).*returned shape \(\).*mean or sum"),
    (lambda logits, y: mj.cross_entropy(logits, y)[:, None], ValueError, r"shape \(2, 1\)"),
    (lambda logits: logits, ValueError, "loss_fn.*fails on float logits"),
    (lambda logits, y: y, TypeError, "float losses"),
], ids=["scalar", "column", "signature", "integer"])
def test_loss_fns_that_do_not_give_per_example_losses_are_refused(entry, loss_fn, error, phrase):
  apply_fn, params, codes, y = small_mlp()
  call = {"fisher_diagonal": lambda: mj.fisher_diagonal(apply_fn, params, codes, y,
                                                        loss_fn=loss_fn),
          "class_fishers": lambda: mj.class_fishers(apply_fn, params, codes, [1],
                                                    loss_fn=loss_fn)}[entry]
  with pytest.raises(error, match=phrase) as info:
    call()
  assert isinstance(info.value, mj.errors.MnemonicJaxError)


@pytest.mark.parametrize("eps, error, phrase", [
    (-1.0, ValueError, "eps must be a finite number >= 0"),
    (float("nan"), ValueError, "eps must be a finite number >= 0"),
    ("1e-16", TypeError, "eps must be a number"), (True, TypeError, "eps must be a number"),
    (np.ones(2), TypeError, "eps must be a number")])
def test_class_fishers_refuse_a_bad_eps(eps, error, phrase):
  apply_fn, params, codes, _ = small_mlp()
  with pytest.raises(error, match=phrase):
    mj.class_fishers(apply_fn, params, codes, [1], eps=eps)
  with pytest.raises(error, match=phrase):  # The host weights refuse it too.
    mj.fisher.class_weights(np.array([True, False]), np.array([False, True]), eps)


def test_the_whole_variables_dict_takes_the_factorized_path():
  # model.apply with {'params': p}: 'auto' used to fall back to vmap, and 'factorized' to
  # refuse as if some parameter were outside a Dense.
  model = mj.create_model("mlp", 10, hidden=(8,))
  _, params, x, y = small_mlp()
  params = init_variables(model, x, 1)["params"]
  assert layer_taps.covers(model.apply, {"params": params}, x)
  want = mj.fisher_diagonal(mj.inference_apply_fn(model, {}), params, x, y, method="vmap")
  got = mj.fisher_diagonal(model.apply, {"params": params}, x, y, method="factorized")
  chex.assert_trees_all_close(got, {"params": want}, rtol=1e-4, atol=1e-9)


def test_factorized_names_a_variables_dict_with_other_collections():
  # Reached through the unchecked building block (fisher_diagonal's own checks refuse
  # such a dict earlier, in _validate.params_tree).
  model = mj.create_model("mlp", 10, hidden=(8,))
  _, _, x, y = small_mlp()
  variables = {"params": init_variables(model, x, 1)["params"], "extra": {"z": jnp.zeros(2)}}
  with pytest.raises(ValueError, match="top-level 'params' key.*variables\\['params'\\]"):
    mj.fisher.weighted_squared_gradients(model.apply, variables, x, y, jnp.ones((1, 10)),
                                         method="factorized")


def test_the_first_fisher_traces_the_model_twice():
  """Compile less: the host's shape check, and one trace of the factorized program that
  also decides the method (its layers' gradients come out of the backward pass, so no
  trace sizes them first); the interaction check reuses the shape check's trace (2; it
  was 4, and 6 before that)."""
  model = mj.create_model("mlp", 4, hidden=(8,), activation="sigmoid")
  codes = mj.generate_codes(jax.random.key(0), 4, (4, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  inner, traced = mj.inference_apply_fn(model, {}), []

  def apply_fn(p, x):
    traced.append(x.shape)
    return inner(p, x)

  mj.fisher_diagonal(apply_fn, params, codes, np.arange(4))
  assert len(traced) == 2, traced
