"""The training baselines: retrain (the oracle), finetune, neggrad, neggrad+, random-labels."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax.baselines.finetune
import mnemonic_jax.baselines.neggrad
import mnemonic_jax.baselines.random_labels
import mnemonic_jax.baselines.retrain  # noqa: F401  (each import registers its methods)
from mnemonic_jax import baselines, checkpointing, models, training
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines.finetune import FinetuneConfig
from mnemonic_jax.baselines.neggrad import NegGradConfig, NegGradPlusConfig
from mnemonic_jax.baselines.random_labels import RandomLabelsConfig, random_wrong_labels
from mnemonic_jax.baselines.retrain import RetrainConfig
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.fisher import cross_entropy
from mnemonic_jax.metrics import per_class_accuracy

FORGET = (3,)
DATA_KINDS = {"retrain": "retain", "finetune": "retain", "neggrad": "forget",
              "neggrad+": "all", "random-labels": "all"}
# Configs strong enough to forget class 3 of the tiny digits MLP in well under a second of
# compute each (the published defaults are sized for CIFAR/MNIST, see each module).
FAST = {
    "retrain": RetrainConfig(epochs=5),
    "finetune": FinetuneConfig(epochs=50, learning_rate=0.5),
    "neggrad": NegGradConfig(epochs=20, learning_rate=0.1),
    "neggrad+": NegGradPlusConfig(epochs=20, learning_rate=0.1),
    "random-labels": RandomLabelsConfig(epochs=5, learning_rate=1e-2),
}
# Cheap configs for the checks that do not look at accuracy.
TINY = {
    "retrain": RetrainConfig(epochs=1),
    "finetune": FinetuneConfig(epochs=1),
    "neggrad": NegGradConfig(epochs=1, stop_at_zero_accuracy=False),
    "neggrad+": NegGradPlusConfig(epochs=1),
    "random-labels": RandomLabelsConfig(epochs=1),
}
METHODS = tuple(DATA_KINDS)


def _data(train, classes=FORGET):
  return baselines.UnlearnData.from_training(train.images, train.labels, classes)


def _host(tree):
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _bundle_arrays(bundle):
  return {"params": bundle.params, "batch_stats": bundle.batch_stats, "codes": bundle.codes}


def _accuracy(bundle, test):
  logits = np.asarray(bundle.apply_fn()(bundle.params, bundle.normalize(test.images)))
  return per_class_accuracy(logits, test.labels, bundle.num_classes)


def _retained(acc, classes=FORGET):
  return float(np.delete(acc, list(classes)).mean())


def test_registered_with_their_data():
  for name, kind in DATA_KINDS.items():
    spec = baselines.get_method(name)
    assert spec.data == kind and spec.reference
    assert isinstance(spec.config_cls(), type(FAST[name]))


@pytest.mark.parametrize("name", METHODS)
def test_forgets_keeps_the_rest_and_leaves_the_input_alone(name, tiny_digits_bundle):
  bundle, train, test = tiny_digits_bundle
  before_arrays = _host(_bundle_arrays(bundle))
  before = _accuracy(bundle, test)
  new, report = baselines.unlearn(name, bundle, FORGET, _data(train), FAST[name],
                                  key=jax.random.key(1))

  # The input bundle: every array alive and bitwise as it was.
  for leaf in jax.tree.leaves(_bundle_arrays(bundle)):
    assert not (isinstance(leaf, jax.Array) and leaf.is_deleted())
  chex.assert_trees_all_equal(_host(_bundle_arrays(bundle)), before_arrays)
  assert bundle.history == () and new.history[-1]["method"] == name

  # The result: same structure, other values, finite.
  chex.assert_trees_all_equal_shapes_and_dtypes(new.params, bundle.params)
  chex.assert_tree_all_finite(new.params)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params,
                                         bundle.params))
  assert all(changed) if name == "retrain" else any(changed)

  # Forgetting: the class drops well below its accuracy before; the rest stays reasonable.
  after = _accuracy(new, test)
  forgotten = after[FORGET[0]]
  assert forgotten <= (2.0 if name == "retrain" else before[FORGET[0]] / 2), after
  assert _retained(after) >= 85.0, after
  assert new.forgotten_classes == FORGET

  # The report counts what it read.
  assert report.steps > 0 and report.data == DATA_KINDS[name]
  uses_retain, uses_forget = DATA_KINDS[name] in ("retain", "all"), DATA_KINDS[name] != "retain"
  assert (report.examples["retain"] > 0) == uses_retain
  assert (report.examples["forget"] > 0) == uses_forget


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("classes", [[10], [-1], list(range(10)), [], [3, 3]])
def test_refuses_bad_classes(name, classes, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError):
    baselines.unlearn(name, bundle, classes, _data(train), TINY[name])


@pytest.mark.parametrize("name", METHODS)
def test_refuses_missing_data(name, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  full = _data(train)
  kind = DATA_KINDS[name]
  missing = [baselines.UnlearnData()]
  if kind in ("retain", "all"):
    missing.append(baselines.UnlearnData(forget=full.forget))
  if kind in ("forget", "all"):
    missing.append(baselines.UnlearnData(retain=full.retain))
  for data in missing:
    with pytest.raises(ValueError, match="needs the"):
      baselines.unlearn(name, bundle, FORGET, data, TINY[name])


@pytest.mark.parametrize("name, config_cls, change", [
    ("finetune", FinetuneConfig, {"epochs": 0}),
    ("finetune", FinetuneConfig, {"learning_rate": -1.0}),
    ("finetune", FinetuneConfig, {"schedule": "linear"}),
    ("neggrad", NegGradConfig, {"batch_size": 0}),
    ("neggrad+", NegGradPlusConfig, {"alpha": 1.5}),
    ("random-labels", RandomLabelsConfig, {"optimizer": "lbfgs"}),
    ("retrain", RetrainConfig, {"epochs": 0}),
])
def test_refuses_bad_configs(name, config_cls, change, tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError):  # Refused when the config is built.
    baselines.unlearn(name, bundle, FORGET, _data(train), config_cls(**change))


def test_retrain_never_sees_a_forgotten_example(tiny_digits_bundle, monkeypatch):
  bundle, train, _ = tiny_digits_bundle
  classes = (3, 7)
  fed = []
  make_step = training.make_train_step

  def counting_make_step(*args, **kwargs):
    step = make_step(*args, **kwargs)

    def counted(state, images, labels):
      fed.append(np.asarray(labels))
      return step(state, images, labels)

    return counted

  monkeypatch.setattr(training, "make_train_step", counting_make_step)
  data = _data(train, classes)  # Holds the forget set too: retrain must not read it.
  _, report = baselines.unlearn("retrain", bundle, classes, data, RetrainConfig(epochs=2))
  labels = np.concatenate(fed)
  batch = bundle.config["batch_size"]
  assert len(fed) == report.steps == 2 * (len(data.retain) // batch)
  assert labels.size == report.examples["retain"] == report.steps * batch
  assert np.isin(labels, classes).sum() == 0 and report.examples["forget"] == 0
  assert set(np.unique(labels).tolist()) == set(range(10)) - set(classes)


def test_retrain_is_deterministic_and_follows_the_seed(tiny_digits_bundle, monkeypatch):
  bundle, train, _ = tiny_digits_bundle
  data = _data(train)
  run = lambda config, key: baselines.unlearn("retrain", bundle, FORGET, data, config,
                                              key=key)[0].params
  # Same seed, same model, whatever key the caller passes.
  first = run(RetrainConfig(epochs=1), jax.random.key(0))
  chex.assert_trees_all_equal(first, run(RetrainConfig(epochs=1), jax.random.key(9)))

  # The key fit receives is workflow.train's: fold_in(key(seed), 1), seed from the bundle or
  # the config (read without training: fit is replaced by a recorder).
  class Recorded(Exception):
    pass

  def record(model, data, codes, config, key, **kwargs):
    raise Recorded(jax.random.key_data(key), config)

  monkeypatch.setattr(training, "fit", record)
  for seed, expected in ((None, bundle.config["seed"]), (5, 5)):
    with pytest.raises(Recorded) as got:
      run(RetrainConfig(epochs=3, seed=seed), jax.random.key(0))
    key_data, fit_config = got.value.args
    np.testing.assert_array_equal(
        key_data, jax.random.key_data(jax.random.fold_in(jax.random.key(expected), 1)))
    assert fit_config.epochs == 3
    assert fit_config.learning_rate == bundle.config["learning_rate"]
    assert fit_config.t_mix == bundle.config["t_mix"]


def test_retrain_needs_the_training_config(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  foreign = bundle.replace(config={})
  with pytest.raises(ValueError, match="seed and epochs"):
    baselines.unlearn("retrain", foreign, FORGET, _data(train))
  _, report = baselines.unlearn("retrain", foreign, FORGET, _data(train),
                                RetrainConfig(epochs=1, seed=0))
  assert report.steps > 0


def test_retrain_starts_from_the_runs_pretrained_weights(tiny_digits_bundle, monkeypatch):
  bundle, train, _ = tiny_digits_bundle
  read = []
  monkeypatch.setattr(checkpointing, "read_pretrained",
                      lambda path: read.append(path) or (bundle.params, bundle.batch_stats))
  # A run that started from pretrained weights, at a learning rate too small to move them.
  finetuned = bundle.replace(config={**bundle.config, "pretrained": "/weights",
                                     "learning_rate": 1e-12, "weight_decay": 0.0})
  new, report = baselines.unlearn("retrain", finetuned, FORGET, _data(train),
                                  RetrainConfig(epochs=1))
  assert read == ["/weights"] and report.details["pretrained"] == "/weights"
  chex.assert_trees_all_close(new.params, bundle.params, atol=1e-6)
  # Without pretrained weights (the other tests) every parameter starts afresh.


def test_neggrad_stops_at_zero_forget_accuracy(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  data = _data(train)
  batches_per_epoch = -(-len(data.forget) // 128)
  config = NegGradConfig(epochs=20, learning_rate=0.1)
  _, report = baselines.unlearn("neggrad", bundle, FORGET, data, config)
  assert report.details["stopped_early"] and report.steps < 20 * batches_per_epoch
  unbounded = NegGradConfig(epochs=3, learning_rate=0.1, stop_at_zero_accuracy=False)
  _, report = baselines.unlearn("neggrad", bundle, FORGET, data, unbounded)
  assert not report.details["stopped_early"] and report.steps == 3 * batches_per_epoch
  assert report.examples == {"retain": 0, "forget": report.steps * 128}


def test_neggrad_plus_loss_is_the_weighted_difference(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  data, key, alpha = _data(train), jax.random.key(4), 0.7
  _, report = baselines.unlearn("neggrad+", bundle, FORGET, data,
                                NegGradPlusConfig(alpha=alpha, epochs=1), key=key)
  retain_key, forget_key = jax.random.split(key)
  r = next(base.epoch_batches(jax.random.fold_in(retain_key, 0), data.retain, 128))
  f = next(base.forever(forget_key, data.forget, 128))
  ce = lambda split: float(jnp.mean(cross_entropy(
      bundle.apply_fn()(bundle.params, bundle.normalize(split.images)), split.labels)))
  expected = alpha * ce(r) - (1 - alpha) * ce(f)
  np.testing.assert_allclose(report.details["first_loss"], expected, rtol=1e-4, atol=1e-6)
  steps = -(-len(data.retain) // 128)
  assert report.examples == {"retain": steps * 128, "forget": steps * 128}


def test_random_labels_draw_only_remaining_classes():
  key = jax.random.key(0)
  labels = random_wrong_labels(key, 5000, (3, 7), 10)
  assert labels.dtype == np.int32 and labels.shape == (5000,)
  assert set(np.unique(labels).tolist()) == set(range(10)) - {3, 7}
  counts = np.bincount(labels, minlength=10)[[0, 1, 2, 4, 5, 6, 8, 9]]
  assert counts.min() > 5000 / 8 * 0.8  # Roughly uniform.
  np.testing.assert_array_equal(labels, random_wrong_labels(key, 5000, (3, 7), 10))


def test_random_labels_counts_each_set(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  data = _data(train)
  _, report = baselines.unlearn("random-labels", bundle, FORGET, data, TINY["random-labels"])
  n = len(data.retain) + len(data.forget)
  assert report.steps == -(-n // 128)
  assert sum(report.examples.values()) == report.steps * 128
  assert len(data.forget) <= report.examples["forget"] < len(data.forget) + 128
  assert sum(report.details["relabelled"].values()) == len(data.forget)
  assert str(FORGET[0]) not in map(str, report.details["relabelled"])


@pytest.mark.parametrize("name, train_mode", [("finetune", True), ("neggrad", True),
                                              ("neggrad+", False), ("random-labels", True)])
def test_batch_norm_statistics_come_back(name, train_mode, tiny_digits_bundle,
                                         conv_bn_bundle):
  bundle = conv_bn_bundle
  _, train, _ = tiny_digits_bundle
  before = _host(_bundle_arrays(bundle))
  config = dict(TINY)[name]
  assert config.train_mode == train_mode  # The published mode of each method.
  new, _ = baselines.unlearn(name, bundle, FORGET, _data(train), config)
  chex.assert_trees_all_equal(_host(_bundle_arrays(bundle)), before)
  chex.assert_trees_all_equal_shapes_and_dtypes(new.batch_stats, bundle.batch_stats)
  same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.batch_stats,
                                      bundle.batch_stats))
  assert all(same) != train_mode  # Updated in training mode, fixed in inference mode.


@pytest.mark.slow
def test_resnet18_cifar_finetune_and_retrain_keep_batch_stats(tiny_digits_bundle):
  _, train, _ = tiny_digits_bundle
  model = models.create_model("resnet18_cifar", 10, width=2)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)), train=False))(
      jax.random.key(0))
  bundle = Bundle("resnet18_cifar", {"width": 2}, variables["params"],
                  variables["batch_stats"], jnp.zeros((10, 8, 8, 1)), 10, (8, 8, 1),
                  config={"seed": 0, "epochs": 1, "batch_size": 32, "t_mix": 0.1})
  before = _host(_bundle_arrays(bundle))
  data = baselines.UnlearnData.from_training(train.images[:128], train.labels[:128], FORGET)
  for name, config in (("finetune", FinetuneConfig(epochs=1, batch_size=32)),
                       ("retrain", RetrainConfig())):
    new, report = baselines.unlearn(name, bundle, FORGET, data, config)
    assert report.steps > 0
    chex.assert_trees_all_equal_shapes_and_dtypes(new.batch_stats, bundle.batch_stats)
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                            new.batch_stats, bundle.batch_stats)))
  chex.assert_trees_all_equal(_host(_bundle_arrays(bundle)), before)
