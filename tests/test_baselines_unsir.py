import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import baselines, metrics
from mnemonic_jax.bundle import host_copy
import mnemonic_jax.baselines.unsir as unsir

from random_support import normal

# Small numbers, so each call takes a fraction of a second on the tiny bundle.
SMALL = unsir.UnsirConfig(noise_batch_size=16, noise_steps=5, noise_copies=2,
                          retain_per_class=20, batch_size=32)


def retain_only(train, classes):
  return baselines.UnlearnData.from_training(train.images, train.labels, classes, forget=False)


def test_registered_with_its_data_and_reference():
  method = baselines.get_method("unsir")
  assert method.data == "retain"  # Class ids + retained data; the forget set is never read.
  assert "2111.08947" in method.reference and method.config_cls is unsir.UnsirConfig


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_changes_params_keeps_dtypes_never_touches_the_input_and_repeats(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  before = host_copy(bundle.params)
  data = retain_only(train, [3, 5])
  new, report = baselines.unlearn("unsir", bundle, [3, 5], data, SMALL, key=jax.random.key(0))
  chex.assert_trees_all_equal(host_copy(bundle.params), before)  # Bitwise unchanged.
  chex.assert_trees_all_equal_shapes_and_dtypes(new.params, bundle.params)
  chex.assert_tree_all_finite(new.params)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(host_copy(new.params)), jax.tree.leaves(before)))
  # Steps: one epoch over the noise (2 classes x 2 copies x 16 rows) and the retained
  # subset (8 classes x 20), then one epoch over the subset alone; batches of 32.
  noise, subset = 2 * 2 * 16, 8 * 20
  impair, repair = math.ceil((noise + subset) / 32), math.ceil(subset / 32)
  assert report.steps == impair + repair
  assert report.details["impair_steps"] == impair and report.details["repair_steps"] == repair
  assert report.details["noise_rows"] == noise and report.details["retain_subset"] == subset
  assert report.details["noise_steps"] == 5 and len(report.details["noise_cross_entropy"]) == 2
  assert report.data == "retain" and report.examples["forget"] == 0
  # Every subset row once per stage; the last impair batch is completed with a few repeats.
  assert subset + repair * 32 <= report.examples["retain"] < subset + 32 + repair * 32
  assert new.forgotten_classes == (3, 5)
  again, _ = baselines.unlearn("unsir", bundle, [3, 5], data, SMALL, key=jax.random.key(0))
  chex.assert_trees_all_equal(host_copy(again.params), host_copy(new.params))


@pytest.mark.parametrize("classes", [[10], [-1], list(range(10)), []])
def test_bad_classes_are_refused(tiny_digits_bundle, classes):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError):
    baselines.unlearn("unsir", bundle, classes, retain_only(train, [3]), SMALL)


def test_missing_retain_data_is_refused(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError, match="retain"):
    baselines.unlearn("unsir", bundle, [3], None, SMALL)
  forget_only = baselines.UnlearnData.from_training(train.images, train.labels, [3],
                                                    retain=False)
  with pytest.raises(ValueError, match="retain"):
    baselines.unlearn("unsir", bundle, [3], forget_only, SMALL)


@pytest.mark.parametrize("change", [{"noise_steps": -1}, {"impair_lr": 0.0},
                                    {"optimizer": "rmsprop"}, {"retain_per_class": 0}])
def test_bad_config_is_refused(tiny_digits_bundle, change):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError, match="unsir"):  # Refused when the config is built.
    config = unsir.UnsirConfig(**{**SMALL.__dict__, **change})
    baselines.unlearn("unsir", bundle, [3], retain_only(train, [3]), config)


def test_noise_maximises_the_forgotten_class_loss(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  noise_fn = unsir.make_noise_fn(bundle.apply_fn(), steps=40, learning_rate=0.1,
                                 l2_weight=0.1)
  init = normal(0, (32, *bundle.input_shape))  # random_support: nothing compiles for it.
  result = noise_fn(bundle.params, init, jnp.asarray(3))
  chex.assert_shape(result.noise, (32, *bundle.input_shape))
  chex.assert_type(result.noise, jnp.float32)
  chex.assert_shape([result.objective, result.cross_entropy], (41,))
  chex.assert_tree_all_finite(result)
  assert float(result.cross_entropy[-1]) > float(result.cross_entropy[0]) + 1.0
  assert float(result.objective[-1]) < float(result.objective[0])
  # Cross-check the reported loss against the model itself.
  logits = bundle.apply_fn()(bundle.params, result.noise)
  ce = -jnp.mean(jax.nn.log_softmax(logits)[:, 3])
  np.testing.assert_allclose(float(result.cross_entropy[-1]), float(ce), rtol=1e-4)
  # The L2 term keeps the noise small: a heavy weight gives a smaller noise.
  heavy = unsir.make_noise_fn(bundle.apply_fn(), steps=40, learning_rate=0.1,
                              l2_weight=10.0)(bundle.params, init, jnp.asarray(3))
  assert float(jnp.sum(heavy.noise ** 2)) < float(jnp.sum(result.noise ** 2))


def test_retain_subset_caps_each_class(tiny_digits_bundle):
  _, train, _ = tiny_digits_bundle
  retain = retain_only(train, [3]).retain
  subset = unsir.retain_subset(retain, 5, jax.random.key(0))
  np.testing.assert_array_equal(np.bincount(subset.labels, minlength=10),
                                [5, 5, 5, 0, 5, 5, 5, 5, 5, 5])
  assert len(unsir.retain_subset(retain, None, jax.random.key(0))) == len(retain)


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_forgetting_class_3_drops_its_test_accuracy(tiny_digits_bundle):
  bundle, train, test = tiny_digits_bundle

  def accuracy(b):
    logits = b.model.apply(b.variables, b.normalize(test.images), train=False)
    return metrics.per_class_accuracy(np.asarray(logits), test.labels, 10)

  new, _ = baselines.unlearn("unsir", bundle, [3], retain_only(train, [3]),
                             key=jax.random.key(0))  # Published defaults.
  before, after = accuracy(bundle), accuracy(new)
  assert before[3] > 80.0
  assert after[3] < 20.0  # Loose: the run here gives 0.
  assert np.mean(np.delete(after, 3)) > 70.0  # Retained classes mostly kept (here ~94).
