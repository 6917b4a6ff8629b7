import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import metrics, relearning, training
from mnemonic_jax.baselines import Split, UnlearnData
from mnemonic_jax.bundle import host_copy

FAST = relearning.RelearnConfig(max_steps=200)


@pytest.fixture(scope="module")
def setting(tiny_digits_bundle):
  """The tiny model that knew class 3, one trained without it (an oracle), the splits."""
  bundle, train, test = tiny_digits_bundle
  keep = train.labels != 3
  state, _ = training.fit(
      bundle.model, (train.images[keep], train.labels[keep]), jnp.asarray(bundle.codes),
      training.FitConfig(epochs=20, batch_size=128, learning_rate=0.1), jax.random.key(1),
      mean=bundle.mean, std=bundle.std, progress=False)
  never_knew = bundle.replace(params=state.params, batch_stats=state.batch_stats)
  data = UnlearnData.from_training(train.images, train.labels, [3])
  probe = Split(test.images[test.labels == 3], test.labels[test.labels == 3])
  logits = bundle.model.apply(bundle.variables, bundle.normalize(test.images), train=False)
  reference = float(metrics.per_class_accuracy(np.asarray(logits), test.labels, 10)[3])
  sample = relearning.relearn_sample(data.forget, key=jax.random.key(0))
  return bundle, never_knew, data, probe, reference, sample


def test_a_model_that_never_knew_the_class_takes_longer(setting):
  bundle, never_knew, data, probe, reference, sample = setting
  knew = relearning.relearn_steps(bundle, sample, data.retain, probe, reference, FAST,
                                  key=jax.random.key(0))
  assert knew.steps_to_50 == 0 and knew.steps_to_90 == 0 and knew.steps == 0
  assert knew.curve == [(0, pytest.approx(reference))]
  fresh = relearning.relearn_steps(never_knew, sample, data.retain, probe, reference, FAST,
                                   key=jax.random.key(0))
  assert fresh.curve[0] == (0, 0.0)  # It never predicts 3 before fine-tuning.
  assert fresh.steps_to_50 is not None and fresh.steps_to_50 > 0  # Learnable from 8 images.
  assert fresh.steps_to_90 is None or fresh.steps_to_90 >= fresh.steps_to_50
  assert fresh.steps_to(0.5) == fresh.steps_to_50
  assert all(s % FAST.eval_every == 0 for s, _ in fresh.curve)
  assert fresh.sample_size == len(sample) == 8


def test_none_when_max_steps_is_too_small_and_determinism(setting):
  _, never_knew, data, probe, reference, sample = setting
  config = relearning.RelearnConfig(max_steps=10, eval_every=5)
  short = relearning.relearn_steps(never_knew, sample, data.retain, probe, reference, config,
                                   key=jax.random.key(3))
  assert short.steps_to_50 is None and short.steps_to_90 is None
  assert [s for s, _ in short.curve] == [0, 5, 10] and short.steps == 10
  again = relearning.relearn_steps(never_knew, sample, data.retain, probe, reference, config,
                                   key=jax.random.key(3))
  assert again.curve == short.curve
  # A longer run with the same key starts with the same batches: the short run is a prefix.
  longer = relearning.relearn_steps(
      never_knew, sample, data.retain, probe, reference,
      relearning.RelearnConfig(max_steps=20, eval_every=5, stop_early=False),
      key=jax.random.key(3))
  assert longer.curve[:3] == short.curve and len(longer.curve) == 5
  assert short.to_dict()["curve"][0] == [0, short.curve[0][1]]


def test_input_bundle_is_untouched(setting):
  _, never_knew, data, probe, reference, sample = setting
  before = host_copy(never_knew.params)
  relearning.relearn_steps(never_knew, sample, data.retain, probe, reference,
                           relearning.RelearnConfig(max_steps=5), key=jax.random.key(0))
  chex.assert_trees_all_equal(host_copy(never_knew.params), before)


def test_relearn_sample_sizes_and_determinism(tiny_digits_bundle):
  _, train, _ = tiny_digits_bundle
  forget = UnlearnData.from_training(train.images, train.labels, [3, 5]).forget
  counts = np.bincount(forget.labels, minlength=10)
  one = relearning.relearn_sample(forget, key=jax.random.key(0))  # 1% < 8: 8 per class.
  np.testing.assert_array_equal(np.bincount(one.labels, minlength=10)[[3, 5]], [8, 8])
  chex.assert_type(one.images, np.uint8)
  tenth = relearning.relearn_sample(forget, 0.1, key=jax.random.key(0))
  np.testing.assert_array_equal(np.bincount(tenth.labels, minlength=10)[[3, 5]],
                                np.ceil(0.1 * counts[[3, 5]]))
  again = relearning.relearn_sample(forget, 0.1, key=jax.random.key(0))
  np.testing.assert_array_equal(again.images, tenth.images)
  other = relearning.relearn_sample(forget, 0.1, key=jax.random.key(1))
  assert not np.array_equal(other.images, tenth.images)
  everything = relearning.relearn_sample(forget, 1.0, key=jax.random.key(0))
  assert len(everything) == len(forget)
  for bad in ({"fraction": 0.0}, {"fraction": 1.5}, {"min_examples": 0}):
    with pytest.raises(ValueError):
      relearning.relearn_sample(forget, **bad, key=jax.random.key(0))
  with pytest.raises(ValueError, match="none"):
    relearning.relearn_sample(Split(forget.images[:0], forget.labels[:0]), key=jax.random.key(0))


def test_bad_requests_are_refused(setting):
  bundle, _, data, probe, reference, sample = setting
  wrong_probe = Split(data.retain.images[:10], data.retain.labels[:10])
  leaky_retain = Split(np.concatenate([data.retain.images, sample.images]),
                       np.concatenate([data.retain.labels, sample.labels]))
  cases = [
      dict(probe=wrong_probe),
      dict(retain=leaky_retain),
      dict(reference_accuracy=0.0),
      dict(reference_accuracy=150.0),
      dict(sample=Split(sample.images[:0], sample.labels[:0])),
      dict(sample=Split(sample.images[:, :4], sample.labels)),
      dict(config=relearning.RelearnConfig(sample_share=1.0)),
      dict(config=relearning.RelearnConfig(eval_every=0)),
  ]
  for change in cases:
    args = dict(sample=sample, retain=data.retain, probe=probe,
                reference_accuracy=reference, config=FAST, **{})
    args.update(change)
    with pytest.raises(ValueError):
      relearning.relearn_steps(bundle, key=jax.random.key(0), **args)
