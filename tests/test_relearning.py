import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import errors, metrics, relearning, training
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


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
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
  ]
  for change in cases:
    args = dict(sample=sample, retain=data.retain, probe=probe,
                reference_accuracy=reference, config=FAST, **{})
    args.update(change)
    with pytest.raises(ValueError):
      relearning.relearn_steps(bundle, key=jax.random.key(0), **args)


@pytest.fixture(scope="module")
def splits(tiny_digits_bundle):
  """(bundle, sample, retain, probe): class 3 forgotten, a few images each, untrained."""
  bundle, train, test = tiny_digits_bundle
  f, t = train.labels == 3, test.labels == 3
  sample = Split(train.images[f][:8], train.labels[f][:8])
  retain = Split(train.images[~f][:64], train.labels[~f][:64])
  return bundle, sample, retain, Split(test.images[t][:10], test.labels[t][:10])


def _relabel(split, labels):
  return Split(split.images, labels)


#: (argument, change of its value, error type, message): one kind of bad input each.
_STEPS_CASES = [
    ("sample", lambda s: _relabel(s, s.labels * 0 + 12), errors.BadRequest, "classes 0..9"),
    ("probe", lambda s: _relabel(s, s.labels * 0 + 12), errors.BadRequest, "classes 0..9"),
    ("retain", lambda s: _relabel(s, s.labels - 20), errors.BadRequest, "classes 0..9"),
    ("sample", lambda s: _relabel(s, s.labels.astype(np.float32)), errors.BadRequestType,
     "integers"),
    ("probe", lambda s: Split(s.images.astype(np.float32) / 255, s.labels),
     errors.BadRequestType, "uint8"),
    ("retain", lambda s: Split(s.images.astype(np.float32), s.labels), errors.BadRequestType,
     "uint8"),
    ("sample", lambda s: (s.images, s.labels), errors.BadRequestType, "Split"),
    ("retain", lambda s: (s.images, s.labels), errors.BadRequestType, "Split"),
    ("probe", lambda s: [s.images, s.labels], errors.BadRequestType, "Split"),
    ("reference_accuracy", lambda r: 0.973, errors.BadRequest, "pass 97.3"),
    ("reference_accuracy", lambda r: 1.0, errors.BadRequest, "percentage"),
    ("reference_accuracy", lambda r: float("nan"), errors.BadRequest, "reference_accuracy"),
    ("reference_accuracy", lambda r: "97.3", errors.BadRequestType, "number"),
    ("config", lambda c: {"max_steps": 3}, errors.BadRequestType, "RelearnConfig"),
    ("key", lambda k: 0, errors.BadRequestType, "jax.random.key"),
    ("bundle", lambda b: "runs/digits", errors.BadRequestType, "Bundle"),
]


@pytest.mark.parametrize("name, change, error, match", _STEPS_CASES)
def test_relearn_steps_refuses_each_kind_of_bad_input(splits, name, change, error, match):
  bundle, sample, retain, probe = splits
  args = dict(bundle=bundle, sample=sample, retain=retain, probe=probe,
              reference_accuracy=90.0, config=relearning.RelearnConfig(max_steps=0),
              key=jax.random.key(0))
  args[name] = change(args[name])
  with pytest.raises(error, match=match):
    relearning.relearn_steps(**args)


def test_relearn_steps_takes_a_reference_just_above_one_percent(splits):
  bundle, sample, retain, probe = splits
  result = relearning.relearn_steps(bundle, sample, retain, probe, 1.5,
                                    relearning.RelearnConfig(max_steps=0),
                                    key=jax.random.key(0))
  assert result.steps == 0 and result.reference_accuracy == 1.5


_SAMPLE_CASES = [
    ("forget", lambda s: (s.images, s.labels), errors.BadRequestType, "Split"),
    ("forget", lambda s: Split(s.images.astype(np.float32) / 255, s.labels),
     errors.BadRequestType, "uint8"),
    ("forget", lambda s: _relabel(s, s.labels.astype(float)), errors.BadRequestType,
     "integers"),
    ("forget", lambda s: _relabel(s, s.labels - 10), errors.BadRequest, ">= 0"),
    ("fraction", lambda f: "0.1", errors.BadRequestType, "fraction"),
    ("fraction", lambda f: 0.0, errors.BadRequest, "fraction"),
    ("min_examples", lambda m: 1.5, errors.BadRequestType, "min_examples must be an integer"),
    ("min_examples", lambda m: 0, errors.BadRequest, "min_examples"),
    ("key", lambda k: 0, errors.BadRequestType, "jax.random.key"),
]


@pytest.mark.parametrize("name, change, error, match", _SAMPLE_CASES)
def test_relearn_sample_refuses_each_kind_of_bad_input(splits, name, change, error, match):
  _, sample, _, _ = splits
  args = dict(forget=sample, fraction=0.5, min_examples=2, key=jax.random.key(0))
  args[name] = change(args[name])
  with pytest.raises(error, match=match):
    relearning.relearn_sample(**args)


@pytest.mark.parametrize("field, value, error", [
    ("batch_size", 1, errors.BadRequest), ("batch_size", 2.5, errors.BadRequestType),
    ("sample_share", 1.0, errors.BadRequest), ("sample_share", 0.0, errors.BadRequest),
    ("learning_rate", 0.0, errors.BadRequest), ("learning_rate", float("nan"), errors.BadRequest),
    ("learning_rate", "0.1", errors.BadRequestType), ("momentum", -0.9, errors.BadRequest),
    ("momentum", 1.0, errors.BadRequest), ("weight_decay", -1e-4, errors.BadRequest),
    ("eval_every", 0, errors.BadRequest), ("max_steps", -1, errors.BadRequest),
    ("max_steps", 1.5, errors.BadRequestType), ("max_steps", True, errors.BadRequestType),
    ("eval_batch_size", 0, errors.BadRequest), ("train_mode", "yes", errors.BadRequestType),
    ("stop_early", 1, errors.BadRequestType),
])
def test_relearn_config_refuses_each_bad_field_on_construction(field, value, error):
  with pytest.raises(error, match=f"RelearnConfig.{field}"):
    relearning.RelearnConfig(**{field: value})
  relearning.RelearnConfig(**{field: getattr(relearning.RelearnConfig(), field)})


def test_relearn_steps_refuses_non_finite_logits_instead_of_scoring_them(splits):
  """argmax calls a NaN row class 0: a diverged model read as relearned (class 0) or as
  never relearned (any other class), without a word."""
  bundle, sample, retain, probe = splits
  head = max(bundle.params)  # "Dense_1": the output layer.
  kernel = np.sign(np.asarray(bundle.params[head]["kernel"])) * np.float32(3e38)  # Finite.
  huge = bundle.replace(params={**bundle.params, head: {**bundle.params[head],
                                                        "kernel": kernel}})
  with pytest.raises(errors.TrainingDiverged, match="after 0 step.*NaN or inf logits on"):
    relearning.relearn_steps(huge, sample, retain, probe, 90.0,
                             relearning.RelearnConfig(max_steps=0), key=jax.random.key(0))
  with pytest.raises(errors.TrainingDiverged, match="after [1-5] step"):
    relearning.relearn_steps(bundle, sample, retain, probe, 90.0,
                             relearning.RelearnConfig(max_steps=5, learning_rate=1e38,
                                                      stop_early=False),
                             key=jax.random.key(0))
  nan = bundle.replace(params=jax.tree.map(lambda p: p * np.nan, bundle.params))
  with pytest.raises(errors.BadRequest, match=r"bundle.params\[.*non-finite"):
    relearning.relearn_steps(nan, sample, retain, probe, 90.0,
                             relearning.RelearnConfig(max_steps=0), key=jax.random.key(0))
