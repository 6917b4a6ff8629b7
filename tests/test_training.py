import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import parallel, training


def setup(model_name="mlp", shape=(4, 4, 1), n=16, seed=0, **model_kwargs):
  model = mj.create_model(model_name, 4, **model_kwargs)
  optimizer = mj.make_optimizer(0.05)
  key = jax.random.key(seed)
  codes = mj.generate_codes(key, 4, shape)
  state = mj.create_train_state(key, model, shape, optimizer)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
  labels = (np.arange(n) % 4).astype(np.int32)
  return model, optimizer, codes, state, images, labels


def test_train_step_reports_image_and_code_losses_and_learns():
  model, optimizer, codes, state, images, labels = setup(hidden=(32,))
  step = mj.make_train_step(model, optimizer, codes, 0.5, jax.random.key(1))
  state, first = step(state, images, labels)
  for _ in range(200):
    state, metrics = step(state, images, labels)
  assert int(state.step) == 201
  for name in ("loss", "image_loss", "code_loss", "accuracy", "code_fraction"):
    chex.assert_shape(metrics[name], ())
  assert 0.0 < float(first["code_fraction"]) < 1.0
  assert float(metrics["loss"]) < float(first["loss"])
  # The total is the batch mean: a mix of the two parts weighted by the code fraction.
  f = float(metrics["code_fraction"])
  np.testing.assert_allclose(
      float(metrics["loss"]), f * float(metrics["code_loss"]) + (1 - f) * float(metrics["image_loss"]),
      rtol=1e-5)
  # Codes are classified as their classes after training with them.
  logits = model.apply({"params": state.params}, codes)
  np.testing.assert_array_equal(np.argmax(logits, -1), np.arange(4))


def test_train_step_mixing_is_fresh_per_step_and_reproducible():
  model, optimizer, codes, state, images, labels = setup(hidden=(8,))
  step = mj.make_train_step(model, optimizer, codes, 0.5, jax.random.key(1))
  s1, m1 = step(jax.tree.map(jnp.copy, state), images, labels)
  s2, m2 = step(jax.tree.map(jnp.copy, state), images, labels)
  chex.assert_trees_all_equal(s1.params, s2.params)  # Same step, same key: same mixing.
  _, m3 = step(s1, images, labels)
  assert float(m1["code_fraction"]) != float(m3["code_fraction"]) or float(m1["loss"]) != float(m3["loss"])


def test_sharded_train_step_equals_single_device():
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  model, optimizer, codes, state, images, labels = setup(
      "resnet18_cifar", shape=(8, 8, 3), width=4)
  single = mj.make_train_step(model, optimizer, codes, 0.3, jax.random.key(2), augment=True)
  sharded = mj.make_train_step(
      model, optimizer, codes, 0.3, jax.random.key(2), augment=True, mesh=mesh)
  s_state, s_metrics = single(jax.tree.map(jnp.copy, state), images, labels)
  m_state, m_metrics = sharded(
      parallel.replicate(mesh, state), *parallel.shard_batch(mesh, (images, labels)))
  chex.assert_trees_all_close(m_metrics, s_metrics, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(m_state.params, s_state.params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(m_state.batch_stats, s_state.batch_stats, rtol=1e-4, atol=1e-5)


def test_fit_resumes_to_identical_parameters():
  model, _, codes, _, images, labels = setup(hidden=(16,), n=40)
  config = mj.FitConfig(epochs=3, batch_size=8, t_mix=0.2)
  key = jax.random.key(3)
  saved = {}

  def keep(step, state, metrics):
    if step == 7:
      saved["state"] = jax.tree.map(jnp.copy, state)

  full, _ = mj.fit(model, (images, labels), codes, config, key, on_step=keep, progress=False)
  resumed, _ = mj.fit(model, (images, labels), codes, config, key, state=saved["state"],
                      progress=False)
  assert int(full.step) == int(resumed.step) == 15
  chex.assert_trees_all_equal(full.params, resumed.params)


def test_optimizer_options():
  with pytest.raises(ValueError, match="total_steps"):
    mj.make_optimizer(0.1, schedule="cosine")
  with pytest.raises(ValueError, match="schedule"):
    mj.make_optimizer(0.1, schedule="step")
  with pytest.raises(ValueError, match="t_mix"):
    model, optimizer, codes, *_ = setup(hidden=(4,))
    mj.make_train_step(model, optimizer, codes, 1.5, jax.random.key(0))
  with pytest.raises(ValueError, match="larger than"):
    training.steps_per_epoch(10, 16)
