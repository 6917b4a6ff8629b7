"""The baselines of issue 21: scrub, salun, l1-sparse, bad-teacher, boundary-shrink, lfssd,
jit-lipschitz, svd-projection (``mnemonic_jax.baselines``).

Per method, through :func:`mnemonic_jax.baselines.unlearn` on the tiny digits MLP: it moves
the parameters, leaves the input bundle alone, refuses bad class requests with one error,
and reads only the data it declares (the rows taken from each split are counted). Then one
closed-form or hand-computed check per method.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnemonic_jax import baselines, errors, layer_taps
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines import salun as salun_lib
from mnemonic_jax.baselines import svd_projection as svd_lib
from mnemonic_jax.baselines.bad_teacher import BadTeacherConfig, unlearner_loss
from mnemonic_jax.baselines.boundary_shrink import BoundaryShrinkConfig, neighbour_labels
from mnemonic_jax.baselines.jit_lipschitz import JiTConfig, lipschitz_loss, lipschitz_step
from mnemonic_jax.baselines.l1_sparse import (
    L1SparseConfig, gamma_schedule, make_step, soft_threshold)
from mnemonic_jax.baselines.lfssd import LFSSDConfig, output_norm_importance
from mnemonic_jax.baselines.salun import (
    SalUnConfig, forget_gradient, masked, saliency_mask)
from mnemonic_jax.baselines.scrub import ScrubConfig, decay_boundaries, distill_kl
from mnemonic_jax.baselines.svd_projection import (
    SVDProjectionConfig, _patch_rows, project_kernel, scaled_projection)
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.fisher import cross_entropy

from array_support import Counted

FORGET = (3,)
DATA = {"scrub": "all", "salun": "all", "l1-sparse": "retain", "bad-teacher": "all",
        "boundary-shrink": "forget", "lfssd": "all", "jit-lipschitz": "forget",
        "svd-projection": "all"}
# Cheap configs (one short pass each) that still move the parameters of the tiny MLP.
TINY = {
    "scrub": ScrubConfig(epochs=1, max_epochs=1, forget_batch_size=64, retain_batch_size=512),
    "salun": SalUnConfig(epochs=1, batch_size=512),
    "l1-sparse": L1SparseConfig(epochs=1, batch_size=512),
    "bad-teacher": BadTeacherConfig(batch_size=512),
    "boundary-shrink": BoundaryShrinkConfig(epochs=1, batch_size=64, learning_rate=0.01),
    "lfssd": LFSSDConfig(alpha=2.0, batch_size=256),  # alpha 10 dampens nothing here.
    "jit-lipschitz": JiTConfig(n_samples=2, batch_size=73),  # Two batches of one shape.
    "svd-projection": SVDProjectionConfig(samples=90, max_patches=500),
}
METHODS = tuple(DATA)


class Untouchable:
  """Stands for a split a method must not read: any use fails the test."""

  def __getattr__(self, name):
    raise AssertionError(f"read an undeclared split ({name})")

  def __len__(self):
    raise AssertionError("read an undeclared split (len)")

  def __getitem__(self, index):
    raise AssertionError("read an undeclared split (rows)")

  def __array__(self, *args, **kwargs):
    raise AssertionError("read an undeclared split (array)")


def _data(train, classes=FORGET):
  return baselines.UnlearnData.from_training(train.images, train.labels, classes)


def _host(tree):
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _arrays(bundle):
  return {"params": bundle.params, "batch_stats": bundle.batch_stats, "codes": bundle.codes}


def linear_bundle(kernel, bias, input_shape, mean=(0.0,), std=(1.0,)) -> Bundle:
  """A bundle of ``mlp`` with no hidden layer: ``logits = flatten(x) @ kernel + bias``."""
  kernel, bias = jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32)
  c = kernel.shape[1]
  return Bundle("mlp", {"hidden": ()}, {"Dense_0": {"kernel": kernel, "bias": bias}}, {},
                jnp.zeros((c, *input_shape)), c, tuple(input_shape), mean=mean, std=std)


# ----------------------------------------------------------------------------------------
# Every method through the common signature.


def test_registered_with_their_data_and_source():
  for name, kind in DATA.items():
    spec = baselines.get_method(name)
    assert spec.data == kind and "20" in spec.reference  # A year: a citation.
    assert isinstance(spec.config_cls(), type(TINY[name]))


@pytest.mark.parametrize("name", METHODS)
def test_moves_params_leaves_the_input_and_reads_only_its_data(name, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  full = _data(train)
  logs = {"retain": [], "forget": []}
  splits = {}
  for side in ("retain", "forget"):
    split = getattr(full, side)
    declared = DATA[name] in (side, "all")
    splits[side] = (base.Split(Counted(split.images, logs[side]), split.labels) if declared
                    else base.Split(Untouchable(), Untouchable()))
  before = _host(_arrays(bundle))
  new, report = baselines.unlearn(name, bundle, FORGET, baselines.UnlearnData(**splits),
                                  TINY[name], key=jax.random.key(1))

  # The input bundle: every buffer alive and bitwise as it was.
  for leaf in jax.tree.leaves(_arrays(bundle)):
    assert not (isinstance(leaf, jax.Array) and leaf.is_deleted())
  chex.assert_trees_all_equal(_host(_arrays(bundle)), before)
  assert bundle.history == () and new.history[-1]["method"] == name
  assert new.forgotten_classes == FORGET

  # The result: same structure, finite, moved.
  chex.assert_trees_all_equal_shapes_and_dtypes(new.params, bundle.params)
  chex.assert_tree_all_finite(new.params)
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params,
                                       bundle.params))
  assert any(moved), name

  # What it read: rows taken from each split, as reported; nothing from an undeclared one.
  assert report.data == DATA[name]
  for side in ("retain", "forget"):
    assert report.examples[side] == sum(logs[side]), (side, report.examples, logs[side])
    assert (report.examples[side] > 0) == (DATA[name] in (side, "all"))


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("classes, message", [
    ([10], "out of range"), ([-1], "out of range"), ([], "no class to forget"),
    (list(range(10)), "cannot forget every class")])
def test_refuses_bad_requests_with_one_clear_error(name, classes, message, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(errors.BadRequest, match=message) as caught:
    baselines.unlearn(name, bundle, classes, _data(train), TINY[name])
  assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------------------
# Closed-form and hand-computed checks, one (or two) per method.


def test_scrub_kl_and_its_learning_rate_decay():
  s = jnp.array([[1.0, 0.0, -1.0]])
  t = jnp.array([[0.0, 2.0, 0.0]])
  p_t, p_s = jax.nn.softmax(t / 2), jax.nn.softmax(s / 2)
  expected = 4 * float(jnp.sum(p_t * jnp.log(p_t / p_s)))  # T^2 KL(teacher || student).
  np.testing.assert_allclose(float(distill_kl(s, t, 2.0)), expected, rtol=1e-6)
  assert float(distill_kl(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)
  # Epochs of 2 max + 3 min steps while e <= max_epochs, 3 min steps after; decay after
  # epochs 1 and 3: epoch 2 starts at step 5, epoch 4 at step 5 + 5 + 3 = 13.
  config = ScrubConfig(epochs=4, max_epochs=2, lr_decay_epochs=(1, 3, 9), lr_decay_rate=0.5)
  assert decay_boundaries(config, 2, 3) == {5: 0.5, 13: 0.5}


def test_salun_mask_on_a_two_parameter_model():
  # logits (a x, 2 b x): d(-CE)/da = x p1, d(-CE)/db = -2 x p1 for label 0.
  apply_fn = lambda p, x: jnp.stack([p["a"] * x[:, 0], 2 * p["b"] * x[:, 0]], axis=-1)
  params = {"a": jnp.float32(1.0), "b": jnp.float32(0.5)}
  x, y, rows = jnp.ones((1, 1)), jnp.zeros(1, jnp.int32), jnp.ones(1)
  g = jax.jit(lambda p: forget_gradient(apply_fn, p, x, y, rows))(params)  # p1 = 1/2.
  np.testing.assert_allclose([float(g["a"]), float(g["b"])], [0.5, -1.0], rtol=1e-6)
  assert jax.tree.map(float, saliency_mask(g, 0.5)) == {"a": 0.0, "b": 1.0}
  assert jax.tree.map(float, saliency_mask(g, 1.0)) == {"a": 1.0, "b": 1.0}
  assert jax.tree.map(float, saliency_mask(g, 0.0)) == {"a": 0.0, "b": 0.0}
  # Masked SGD: the weight outside the mask stays put, even under weight decay.
  opt = masked(base.sgd(0.1, 0.0, 0.01), {"a": jnp.float32(0.0), "b": jnp.float32(1.0)})
  updates, _ = opt.update(g, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  assert float(new["a"]) == 1.0
  np.testing.assert_allclose(float(new["b"]), 0.5 - 0.1 * (-1.0 + 0.01 * 0.5), rtol=1e-6)


@pytest.mark.parametrize("penalty", ["subgradient", "proximal"])
def test_l1_sparse_step_by_hand(penalty):
  kernel = np.array([[0.5, -0.2], [0.0, 0.3], [-0.4, 1e-4]], np.float32)  # One exact 0.
  bundle = linear_bundle(kernel, [0.1, -0.1], (1, 1, 3), std=(1 / 255,))
  images = np.array([[[[1, 2, 0]]], [[[0, 1, 3]]]], np.uint8)  # Inputs = pixel values.
  labels = np.array([0, 1])
  lr, gamma = 0.1, 0.01
  optimizer = base.sgd(lr, 0.0, 0.0)
  step = make_step(bundle, optimizer, penalty, lr)
  state, _ = step(base.init_loop(bundle, optimizer), jnp.asarray(images), jnp.asarray(labels),
                  jnp.float32(gamma))
  grads = jax.jit(jax.grad(lambda p: jnp.mean(cross_entropy(
      bundle.apply_fn()(p, bundle.normalize(images)), labels))))(bundle.params)
  if penalty == "subgradient":  # theta - lr (g + gamma sign theta), sign(0) = 0.
    expected = jax.tree.map(lambda p, g: p - lr * (g + gamma * np.sign(p)), bundle.params, grads)
  else:  # Soft thresholding of the plain step by lr * gamma.
    expected = soft_threshold(jax.tree.map(lambda p, g: p - lr * g, bundle.params, grads),
                              lr * gamma)
  chex.assert_trees_all_close(state.params, expected, atol=1e-7)
  np.testing.assert_allclose(soft_threshold(jnp.array([0.5, -0.05, 0.0]), 0.1),
                             [0.4, 0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(gamma_schedule(1.0, 4), [1.0, 0.75, 0.5, 0.25])


def test_bad_teacher_loss_by_hand():
  s = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
  competent = np.array([[3.0, 0.0], [0.0, 3.0]], np.float32)
  incompetent = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
  is_forget = np.array([1.0, 0.0], np.float32)
  softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  target = np.stack([softmax(incompetent[0]), softmax(competent[1])])
  expected = np.mean(target * (np.log(target) - np.log(softmax(s))))  # Over B and C.
  got = unlearner_loss(jnp.asarray(s), jnp.asarray(competent), jnp.asarray(incompetent),
                       jnp.asarray(is_forget), 1.0)
  np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_boundary_shrink_neighbour_is_across_the_nearest_boundary():
  # One pixel x in [0, 1]: logits (x, 1 - x), boundary at 1/2. FGSM on class 0 lowers x.
  bundle = linear_bundle([[1.0, -1.0]], [0.0, 1.0], (1, 1, 1))
  images = jnp.array([140, 230, 115], jnp.uint8)[:, None, None, None]
  labels = jnp.array([0, 0, 1], jnp.int32)
  got = neighbour_labels(bundle.apply_fn(), bundle.params, images, labels,
                         jnp.zeros(1), jnp.ones(1), jnp.float32(0.1))
  # 0.549 -> 0.449 crosses; 0.902 -> 0.802 does not; class 1 at 0.451 -> 0.549 crosses.
  np.testing.assert_array_equal(got, [1, 0, 0])


def test_lfssd_importance_of_a_linear_model():
  kernel = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
  bias = np.array([0.1, 0.2], np.float32)
  bundle = linear_bundle(kernel, bias, (1, 1, 2))
  x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]], np.float32)[:, None, None, :]
  got = output_norm_importance(bundle.apply_fn(), bundle.params, jnp.asarray(x), 2)
  flat = x.reshape(3, 2)
  grads = []  # d mean_b ||x K + c||^2 = (2/|b|) sum x f^T, (2/|b|) sum f: batches {0,1}, {2}.
  for rows in ([0, 1], [2]):
    f = flat[rows] @ kernel + bias
    grads.append((2 / len(rows) * flat[rows].T @ f, 2 / len(rows) * f.sum(0)))
  np.testing.assert_allclose(got["Dense_0"]["kernel"],
                             (np.abs(grads[0][0]) + np.abs(grads[1][0])) / 2, rtol=1e-6)
  np.testing.assert_allclose(got["Dense_0"]["bias"],
                             (np.abs(grads[0][1]) + np.abs(grads[1][1])) / 2, rtol=1e-6)


def test_jit_lipschitz_loss_of_a_linear_model_and_its_step():
  kernel = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
  bundle = linear_bundle(kernel, [0.0, 0.0], (1, 1, 2))
  x = jnp.array([[1.0, 1.0], [0.0, 2.0]])[:, None, None, :]
  delta = np.array([[[0.1, 0.0], [0.0, -0.2]], [[0.3, 0.4], [0.1, 0.1]]], np.float32)
  perturbed = x + delta[:, :, None, None, :]
  apply_fn = bundle.apply_fn()
  outputs = jax.vmap(lambda xp: apply_fn(bundle.params, xp))(perturbed)
  ratios = np.linalg.norm(delta @ kernel, axis=-1) / np.linalg.norm(delta, axis=-1)
  got = lipschitz_loss(apply_fn, bundle.params, x, perturbed, outputs)
  np.testing.assert_allclose(float(got), ratios.sum() / 2, rtol=1e-6)
  # One step on the same noise (same key) lowers the estimate.
  key, params = jax.random.key(0), jax.tree.map(jnp.array, bundle.params)
  new, before = lipschitz_step(apply_fn, params, x, key, 0.5, 0.05, n_samples=3)
  _, after = lipschitz_step(apply_fn, new, x, key, 0.5, 0.05, n_samples=3)
  assert float(after) < float(before)


def test_svd_projection_removes_a_planted_direction():
  # Retained classes 0, 1 live in pixels 0-1; the forgotten class 2 in pixel 2 alone.
  rng = np.random.default_rng(0)
  retain = np.zeros((40, 1, 1, 3), np.uint8)
  retain[..., :2] = rng.integers(1, 255, (40, 1, 1, 2))
  forget = np.zeros((20, 1, 1, 3), np.uint8)
  forget[..., 2] = rng.integers(1, 255, (20, 1, 1))
  kernel = rng.normal(size=(3, 3)).astype(np.float32)
  bundle = linear_bundle(kernel, [0.1, 0.2, 0.3], (1, 1, 3))
  data = baselines.UnlearnData(retain=base.Split(retain, np.repeat([0, 1], 20)),
                               forget=base.Split(forget, np.full(20, 2)))
  new, report = baselines.unlearn("svd-projection", bundle, [2], data,
                                  SVDProjectionConfig(samples=20))
  got = np.asarray(new.params["Dense_0"]["kernel"])
  np.testing.assert_allclose(got[2], 0.0, atol=1e-6)  # The forget direction is gone.
  np.testing.assert_allclose(got[:2], kernel[:2], atol=1e-6)  # The rest is untouched.
  np.testing.assert_array_equal(new.params["Dense_0"]["bias"], bundle.params["Dense_0"]["bias"])
  assert report.details["per_class"] == {0: 10, 1: 10} and report.examples["forget"] == 20
  # The scaled projection by hand: rows (3, 0), (0, 4): energies 9/25, 16/25.
  m = scaled_projection(jnp.array([[3.0, 0.0], [0.0, 4.0]]), 1.0)
  np.testing.assert_allclose(m, np.diag([9 / 25, 16 / 25]), atol=1e-6)
  m = scaled_projection(jnp.array([[3.0, 0.0], [0.0, 4.0]]), 100.0)  # 100 r / (99 r + 1).
  np.testing.assert_allclose(np.diag(m), [900 / 916, 1600 / 1609], rtol=1e-5)
  # Against the SVD in float64, with more rows than features and fewer (rank 5 of 7).
  rng = np.random.default_rng(2)
  for rows, features in ((12, 7), (5, 7)):
    a = rng.normal(size=(rows, features)) * np.linspace(3.0, 0.5, features)
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    r = sv ** 2 / np.sum(sv ** 2)
    expected = (vt.T * (30 * r / (29 * r + 1))) @ vt
    np.testing.assert_allclose(scaled_projection(jnp.asarray(a, jnp.float32), 30.0), expected,
                               atol=2e-5)


@pytest.mark.slow  # The planted-direction check on an MLP runs by default.
def test_svd_projection_conv_rows_are_the_im2col_rows():
  strides, padding = (2, 1), "SAME"
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  every = layer_taps._patches(x, (3, 3), strides, padding)
  rows = jax.jit(_patch_rows, static_argnums=(1, 2, 3, 5))
  got = rows(x, (3, 3), strides, padding, jax.random.key(1), 10_000)
  np.testing.assert_allclose(got, every.reshape(-1, every.shape[-1]), atol=1e-6)
  some = rows(x, (3, 3), strides, padding, jax.random.key(1), 7)
  assert some.shape == (7, 27)
  assert all(np.isclose(every.reshape(-1, 27), row, atol=1e-6).all(-1).any() for row in some)


@pytest.mark.slow  # About 19 s: a conv + BatchNorm model.
def test_svd_projection_on_a_convolutional_model(conv_bn_bundle, tiny_digits_bundle):
  bundle = conv_bn_bundle
  _, train, _ = tiny_digits_bundle
  before = _host(_arrays(bundle))
  new, report = baselines.unlearn("svd-projection", bundle, FORGET, _data(train),
                                  SVDProjectionConfig(samples=90, max_patches=300))
  assert report.details["layers"] == ["Conv_0", "Dense_0"]
  conv = new.params["Conv_0"]["kernel"]
  assert conv.shape == bundle.params["Conv_0"]["kernel"].shape
  assert bool(jnp.any(conv != bundle.params["Conv_0"]["kernel"]))
  chex.assert_trees_all_equal(new.batch_stats, bundle.batch_stats)  # Inference mode.
  chex.assert_trees_all_equal(_host(_arrays(bundle)), before)


def test_svd_projection_kernels_of_every_rank():
  rng = np.random.default_rng(1)
  u4, u6 = rng.normal(size=(4, 4)), rng.normal(size=(6, 6))
  cases = [  # (kernel shape, update, expected as an einsum over the input axes).
      ((4, 5), u4, lambda u, k: u @ k),  # Dense (in, out).
      ((4, 2, 3), u4, lambda u, k: np.einsum("ij,jhd->ihd", u, k)),  # Query (dim, h, d).
      ((2, 3, 4), u6, lambda u, k: (u @ k.reshape(6, 4)).reshape(2, 3, 4)),  # Out (h, d, dim).
      ((1, 2, 3, 5), u6, lambda u, k: (u @ k.reshape(6, 5)).reshape(1, 2, 3, 5)),  # Conv.
  ]
  for shape, u, expected in cases:
    kernel = rng.normal(size=shape).astype(np.float32)
    got = project_kernel(jnp.asarray(kernel), jnp.asarray(u, jnp.float32))
    assert got.shape == shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected(u, kernel), rtol=1e-5, atol=1e-5)
  with pytest.raises(errors.BadRequest, match="no input axes of 5"):
    project_kernel(jnp.zeros((4, 2, 3)), jnp.eye(5))


@pytest.mark.slow  # Heavy (a ViT trained and projected); project_kernel's ranks are tested above.
def test_svd_projection_on_a_tiny_vit(tiny_digits_bundle):
  """Every Dense, DenseGeneral (attention) and Conv kernel of a ViT projected, shapes kept."""
  from mnemonic_jax import models

  _, train, _ = tiny_digits_bundle
  model = models.create_model("vit_tiny", 10, patch_size=4, dim=8, depth=1, num_heads=2,
                              mlp_dim=12)
  params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1))))(jax.random.key(0))["params"]
  bundle = Bundle("vit_tiny", {"patch_size": 4, "dim": 8, "depth": 1, "num_heads": 2,
                               "mlp_dim": 12}, params, {}, jnp.zeros((10, 8, 8, 1)), 10,
                  (8, 8, 1), mean=(0.3,), std=(0.4,))
  before = _host(_arrays(bundle))
  new, report = baselines.unlearn("svd-projection", bundle, FORGET, _data(train),
                                  SVDProjectionConfig(samples=45, max_patches=200))
  attention = "EncoderBlock_0/MultiHeadDotProductAttention_0/"
  assert {attention + n for n in ("query", "key", "value", "out")} <= set(report.details["layers"])
  assert {"Conv_0", "Dense_0", "EncoderBlock_0/Dense_0"} <= set(report.details["layers"])
  chex.assert_trees_all_equal_shapes_and_dtypes(new.params, bundle.params)
  chex.assert_tree_all_finite(new.params)
  for layer in report.details["layers"]:
    path = layer.split("/")
    old_kernel, new_kernel = bundle.params, new.params
    for name in path:
      old_kernel, new_kernel = old_kernel[name], new_kernel[name]
    assert bool(jnp.any(old_kernel["kernel"] != new_kernel["kernel"])), layer
    if "bias" in old_kernel:  # Biases are never touched.
      np.testing.assert_array_equal(new_kernel["bias"], old_kernel["bias"])
  chex.assert_trees_all_equal(_host(_arrays(bundle)), before)


# ----------------------------------------------------------------------------------------
# The sweep: the strongest rung of a ladder that spares held-out retained accuracy.


def test_every_ladder_starts_at_the_published_defaults():
  for name in METHODS:
    spec = baselines.get_method(name)
    if spec.sweep:
      assert spec.sweep[0] == {}
      for overrides in spec.sweep:  # Each a real field of the config.
        dataclasses.replace(spec.config_cls(), **overrides)


def test_salun_and_svd_ladders_are_ordered_by_strength():
  # salun: random-labelling pressure (rate x epochs) rises after the defaults, mask at 0.5.
  ladder = baselines.get_method("salun").sweep
  assert ladder == salun_lib.SWEEP and len(ladder) >= 3 and ladder[0] == {}
  configs = [dataclasses.replace(SalUnConfig(), **o) for o in ladder[1:]]
  pressure = [c.learning_rate * c.epochs for c in configs]
  assert pressure == sorted(pressure) and len(set(pressure)) == len(pressure)
  assert pressure[0] < 0.013 * 10 < pressure[-1]
  assert all(c.threshold == 0.5 for c in configs)
  # svd-projection: the retain scaling falls (stronger), then the defaults' forget scaling
  # rises; every rung on the authors' alpha axes.
  ladder = baselines.get_method("svd-projection").sweep
  assert ladder == svd_lib.SWEEP and len(ladder) >= 3 and ladder[0] == {}
  configs = [dataclasses.replace(SVDProjectionConfig(), **o) for o in ladder[1:]]
  strength = [(-c.alpha_r, c.alpha_f) for c in configs]
  assert strength == sorted(strength) and len(set(strength)) == len(strength)
  assert configs[0].alpha_r > SVDProjectionConfig().alpha_r
  assert all(c.samples == 900 and c.max_patches == 10000 for c in configs)


@pytest.mark.parametrize("name", ["salun", "svd-projection"])
def test_the_outer_rungs_run_on_a_tiny_model(name, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  ladder = baselines.get_method(name).sweep
  for overrides in (ladder[1], ladder[-1]):  # The gentlest and the strongest but defaults.
    config = dataclasses.replace(TINY[name], **overrides)
    if name == "salun":
      config = dataclasses.replace(config, epochs=1)  # The rate is what differs here.
    new, report = baselines.unlearn(name, bundle, FORGET, _data(train), config)
    for field, value in overrides.items():
      if field != "epochs":
        assert report.details[field] == value
    chex.assert_tree_all_finite(new.params)
    assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(new.params),
                                                      jax.tree.leaves(bundle.params)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["salun", "svd-projection"])
def test_every_rung_runs_through_sweep(name, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  ladder = baselines.get_method(name).sweep
  data = _data(train)
  held_out = baselines.Split(data.retain.images[::4], data.retain.labels[::4])
  # The ladder's own rungs, made cheap where a field only sets the cost.
  cheap = {"salun": {"batch_size": 512}, "svd-projection": {"max_patches": 500}}[name]
  candidates = [{**cheap, **o} for o in ladder]
  new, report = base.sweep(name, bundle, FORGET, data, held_out, candidates=candidates)
  trials = report.details["sweep"]
  assert [t["overrides"] for t in trials] == candidates
  assert all(np.isfinite(t["held_out_accuracy"]) for t in trials)
  assert report.details["chosen"] in candidates
  chosen = dataclasses.replace(baselines.get_method(name).config_cls(),
                               **report.details["chosen"])
  for field in {"salun": ("epochs", "learning_rate"), "svd-projection": ("alpha_r",
                                                                        "alpha_f")}[name]:
    assert report.details[field] == getattr(chosen, field)  # The chosen rung's run.
  assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(new.params),
                                                    jax.tree.leaves(bundle.params)))


@dataclasses.dataclass(frozen=True)
class _Scale:
  scale: float = 1.0


def test_sweep_keeps_the_last_rung_within_tolerance(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle

  @base.register("test-scale", _Scale, data="none", reference="test", sweep=(
      {}, {"scale": 0.999}, {"scale": 0.0}, {"scale": float("nan")}))
  def scaled(bundle, classes, data, config, key):
    return base.Outcome(jax.tree.map(lambda p: p * config.scale, bundle.params),
                        bundle.batch_stats)

  try:
    held_out = _data(train).retain
    new, report = base.sweep("test-scale", bundle, FORGET, None, held_out)
    assert report.details["chosen"] == {"scale": 0.999}  # 0 ruins it; nan diverges.
    assert [t["ok"] for t in report.details["sweep"]] == [True, True, False, False]
    assert report.details["sweep"][3]["held_out_accuracy"] is None
    assert new.history[-1]["details"]["chosen"] == {"scale": 0.999}
    chex.assert_trees_all_close(new.params, jax.tree.map(lambda p: p * 0.999, bundle.params))
    # Nothing passes: the published defaults stand.
    _, report = base.sweep("test-scale", bundle, FORGET, None, held_out,
                           candidates=({}, {"scale": 0.0}), tolerance=-100.0)
    assert report.details["chosen"] == {}
    with pytest.raises(errors.BadRequest, match="remaining classes only"):
      base.sweep("test-scale", bundle, FORGET, None, _data(train).forget)
  finally:
    del base.METHODS["test-scale"]


# ----------------------------------------------------------------------------------------
# Heavier: the published defaults, and BatchNorm models.


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_published_defaults_run_and_keep_the_rest(name, tiny_digits_bundle):
  from mnemonic_jax.metrics import per_class_accuracy

  bundle, train, test = tiny_digits_bundle
  new, report = baselines.unlearn(name, bundle, FORGET, _data(train))
  chex.assert_tree_all_finite(new.params)
  logits = np.asarray(new.apply_fn()(new.params, new.normalize(test.images)))
  accuracy = per_class_accuracy(logits, test.labels, new.num_classes)
  assert np.delete(accuracy, FORGET).mean() >= 80.0, (name, accuracy)
  assert report.seconds >= 0 and report.compile_seconds > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_batch_norm_statistics_follow_the_mode(name, conv_bn_bundle, tiny_digits_bundle):
  bundle = conv_bn_bundle
  _, train, _ = tiny_digits_bundle
  before = _host(_arrays(bundle))
  new, _ = baselines.unlearn(name, bundle, FORGET, _data(train), TINY[name])
  chex.assert_trees_all_equal(_host(_arrays(bundle)), before)
  chex.assert_trees_all_equal_shapes_and_dtypes(new.batch_stats, bundle.batch_stats)
  same = all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.batch_stats,
                                          bundle.batch_stats)))
  assert same != getattr(TINY[name], "train_mode", False), name
