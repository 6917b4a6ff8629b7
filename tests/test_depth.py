"""The depth suite (mnemonic_jax.evaluation) on constructed cases whose answer is known."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

from mnemonic_jax import errors, models
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.evaluation import attacks, depth, features, report as report_lib
from mnemonic_jax.relearning import RelearnConfig

from random_support import init_variables

FORGOTTEN = [3]


def _logits(labels, rng, noise=0.5):
  """Confident logits: 5 on the label, noise elsewhere."""
  out = rng.normal(0, noise, (len(labels), 4))
  out[np.arange(len(labels)), labels] += 5.0
  return out


def _labels(n_per_class=50, classes=4):
  return np.repeat(np.arange(classes), n_per_class)


# ----------------------------------------------------------------------------------------
# One constant.


def test_best_constant_beats_every_constant_of_a_grid():
  rng = np.random.default_rng(0)
  labels = _labels(30)
  logits = rng.normal(0, 2, (len(labels), 4))
  logits[np.arange(len(labels)), labels] += 1.0
  logits[:, 3] -= 4.0
  delta = attacks.best_constant(logits, labels, FORGOTTEN)

  def accuracy(d):
    shifted = logits.copy()
    shifted[:, 3] += d
    return np.mean(np.argmax(shifted, -1) == labels)

  grid = np.linspace(-20, 20, 4001)
  assert accuracy(delta) >= max(accuracy(d) for d in grid)
  assert accuracy(delta) > accuracy(0.0)


def test_a_bias_shift_is_undone_by_one_constant_and_a_retrained_model_is_not():
  rng = np.random.default_rng(1)
  labels = _labels()
  original = _logits(labels, rng)
  shifted = original.copy()
  shifted[:, 3] -= 30.0  # The 'bias' move: the forgotten logit lowered by a constant.
  retrained = original.copy()  # The oracle sees the forgotten images as class 0.
  forget = labels == 3
  retrained[forget] = _logits(np.zeros(forget.sum(), int), rng)
  retrained[:, 3] = rng.normal(-30.0, 0.5, len(labels))
  key = jax.random.key(0)
  assert attacks.forgotten_accuracy(shifted, labels, FORGOTTEN) == 0.0
  assert attacks.half_split_recovery(shifted, labels, FORGOTTEN, key=key) >= 95.0
  assert attacks.half_split_recovery(retrained, labels, FORGOTTEN, key=key) <= 5.0
  few = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(4)])
  assert attacks.one_constant_recovery(shifted[few], labels[few], shifted, labels,
                                       FORGOTTEN) >= 95.0
  assert attacks.one_constant_recovery(retrained[few], labels[few], retrained, labels,
                                       FORGOTTEN) <= 5.0


def test_half_split_is_stratified_and_disjoint():
  labels = _labels(7)
  a, b = attacks.half_split(labels, jax.random.key(3))
  assert not set(a) & set(b) and len(a) + len(b) == len(labels)
  assert np.bincount(labels[a]).tolist() == [3] * 4


# ----------------------------------------------------------------------------------------
# Input scale.


def _relu_mlp(forgotten_column: bool, offset: float = 1.7):
  """A 4-4-4 ReLU MLP (no normalisation) whose hidden layer copies its input.

  Class c's input lights pixel c; the head is the identity with the forgotten class's bias
  lowered by ``offset`` (``forgotten_column=False``: its column zeroed too, as if it was
  never learned).
  """
  model = models.create_model("mlp", 4, hidden=(4,), activation="relu")
  kernel = np.eye(4, dtype=np.float32)
  if not forgotten_column:
    kernel[:, 3] = 0.0
  params = {"Dense_0": {"kernel": jnp.eye(4), "bias": jnp.zeros(4)},
            "Dense_1": {"kernel": jnp.asarray(kernel),
                        "bias": jnp.asarray([0, 0, 0, -offset], jnp.float32)}}
  return model, params


def test_a_relu_model_without_normalisation_leaks_under_input_scaling():
  inputs = np.eye(4, dtype=np.float32)[np.repeat(np.arange(4), 5)].reshape(-1, 2, 2, 1)
  labels = np.repeat(np.arange(4), 5)
  model, params = _relu_mlp(forgotten_column=True)
  predict = lambda x: model.apply({"params": params}, x)
  # Logit 3 of a class-3 input at scale s is s - 1.7: wrong at 1.5, right at 2 and 3.
  assert attacks.input_scale_recovery(predict, inputs, labels, FORGOTTEN) == {
      1.5: 0.0, 2.0: 100.0, 3.0: 100.0}
  model, params = _relu_mlp(forgotten_column=False)
  predict = lambda x: model.apply({"params": params}, x)
  assert set(attacks.input_scale_recovery(predict, inputs, labels, FORGOTTEN).values()) == {0}


# ----------------------------------------------------------------------------------------
# Features: probe, nearest class mean, prototype, head fine-tuning, CKA.


def _clusters(rng, collapse: bool, n=40, dim=8, noise=0.5):
  """Four Gaussian clusters; ``collapse`` draws class 3's features from class 0's."""
  labels = _labels(n)
  centres = 3.0 * np.eye(4, dim)
  source = np.where((labels == 3) & collapse, 0, labels)
  return centres[source] + rng.normal(0, noise, (len(labels), dim)), labels


def test_the_probe_finds_a_class_whose_features_were_left_intact():
  rng = np.random.default_rng(2)
  for collapse, low, high in ((False, 95, 100), (True, 0, 70)):
    x, y = _clusters(rng, collapse)
    xt, yt = _clusters(rng, collapse)
    recall = attacks.probe_recall(x, y, xt, yt, FORGOTTEN)
    assert low <= recall <= high, (collapse, recall)
    few = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(4)])
    recall = attacks.ncm_recall(x[few], y[few], xt, yt, FORGOTTEN)
    assert low <= recall <= high, (collapse, recall)


def test_the_prototype_attack_restores_a_zeroed_head_row_only_where_the_features_stayed():
  rng = np.random.default_rng(3)
  kernel = np.eye(8, 4)
  kernel[:, 3] = 0.0
  bias = np.array([0, 0, 0, -1.0])
  x, y = _clusters(rng, collapse=False, noise=0.2)
  assert attacks.forgotten_accuracy(x @ kernel + bias, y, FORGOTTEN) == 0.0
  # w_3 <- 0.5 e_3, b_3 <- -0.5: logit 3 of a class-3 image is 0.5 * 3 - 0.5 = 1.
  assert attacks.prototype_attack(x, y, kernel, bias, x, y, FORGOTTEN) >= 95.0
  x, y = _clusters(rng, collapse=True, noise=0.2)
  assert attacks.prototype_attack(x, y, kernel, bias, x, y, FORGOTTEN) <= 10.0
  with pytest.raises(errors.BadRequest, match="5 support images of forgotten class 3"):
    attacks.prototype_attack(x[y != 3], y[y != 3], kernel, bias, x, y, FORGOTTEN)


def test_head_finetuning_brings_back_a_lowered_bias_on_intact_features():
  rng = np.random.default_rng(4)
  x, y = _clusters(rng, collapse=False)
  kernel, bias = np.eye(8, 4), np.array([0, 0, 0, -6.0])
  few = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(4)])
  out = attacks.head_finetune_recovery(x[few], y[few], kernel, bias, x, y, FORGOTTEN,
                                       steps=(50, 0, 10))
  assert list(out) == [50, 0, 10]
  assert out[0] == 0.0 and out[10] < 50.0 and out[50] >= 90.0


def test_cka_of_a_representation_with_itself_is_one():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(60, 6))
  rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  assert attacks.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
  assert attacks.linear_cka(x, 3.0 * x @ rotation + 7.0) == pytest.approx(1.0, abs=1e-9)
  assert attacks.linear_cka(x, rng.normal(size=(60, 4))) < 0.4
  with pytest.raises(errors.BadRequest, match="same >= 2 examples"):
    attacks.linear_cka(x, x[:10])


def test_weight_distance_and_relearn_ratio():
  a = {"w": np.array([3.0, 4.0]), "b": np.zeros(1)}
  assert attacks.weight_distance(a, a) == 0.0
  assert attacks.weight_distance(a, {"w": np.zeros(2), "b": np.zeros(1)}) == pytest.approx(1.0)
  with pytest.raises(errors.BadRequest, match="another architecture"):
    attacks.weight_distance(a, {"w": np.zeros(2)})
  with pytest.raises(errors.BadRequest, match="paths or shapes"):
    attacks.weight_distance(a, {"w": np.zeros(3), "b": np.zeros(1)})
  assert attacks.relearn_ratio(9, 18) == 0.5
  assert attacks.relearn_ratio(None, 18) == float("inf")
  assert attacks.relearn_ratio(5, None) == 0.0
  assert attacks.relearn_ratio(0, 0) == 1.0
  assert np.isnan(attacks.relearn_ratio(None, None))


def test_attacks_refuse_bad_classes():
  labels, logits = _labels(5), np.zeros((20, 4))
  with pytest.raises(errors.BadRequest, match="every class is forgotten"):
    attacks.best_constant(logits, labels, [0, 1, 2, 3])
  with pytest.raises(errors.BadRequest, match="out of range"):
    attacks.forgotten_accuracy(logits, labels, [4])
  with pytest.raises(errors.BadRequest, match="one label per row"):
    attacks.forgotten_accuracy(logits, labels[:3], FORGOTTEN)


# ----------------------------------------------------------------------------------------
# Where the features are.


def _abstract_bundle(name, num_classes=4, shape=(8, 8, 1), **kwargs):
  model = models.create_model(name, num_classes, **kwargs)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape))))
  return Bundle(name, kwargs, variables["params"], variables.get("batch_stats", {}), None,
                num_classes, shape)


@pytest.mark.parametrize("name, kwargs, path", [
    ("mlp", {"hidden": (16, 8)}, ("Dense_2",)),
    ("resnet18_cifar", {"width": 2}, ("Dense_0",)),
    ("vit_tiny", {"patch_size": 4, "dim": 8, "depth": 1, "num_heads": 2, "mlp_dim": 8},
     ("Dense_0",)),
])
def test_the_built_in_models_heads_are_found(name, kwargs, path):
  assert features.head_path(_abstract_bundle(name, **kwargs)) == path


class _ScaledHead(nn.Module):
  """Logits that are not the raw output of a Dense: its head must be declared."""

  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    z = nn.tanh(nn.Dense(6)(x.reshape(x.shape[0], -1)))
    return 2.0 * nn.Dense(self.num_classes)(z)


def test_a_registered_model_declares_its_head_or_gets_a_clear_error(monkeypatch):
  monkeypatch.setitem(models._REGISTRY, "scaled_head_test", _ScaledHead)
  monkeypatch.setattr(features, "_DECLARED", {})
  model = models.create_model("scaled_head_test", 4)
  params = init_variables(model, np.zeros((1, 2, 2, 1), np.float32))["params"]  # NumPy.
  bundle = Bundle("scaled_head_test", {}, params, {}, None, 4, (2, 2, 1))
  with pytest.raises(features.NoFeatures, match="no classifier head found.*register_head"):
    features.head_of(bundle)
  images = np.zeros((3, 2, 2, 1), np.uint8)
  assert features.forward(bundle, images, features=False).logits.shape == (3, 4)
  features.register_head("scaled_head_test", ("Dense_1",))
  head = features.head_of(bundle)
  out = features.forward(bundle, images)
  assert head.kernel.shape == (6, 4) and out.features.shape == (3, 6)
  np.testing.assert_allclose(out.logits, 2 * (out.features @ head.kernel + head.bias),
                             rtol=1e-5, atol=1e-6)
  features.register_head("scaled_head_test", ("Dense_0",))
  with pytest.raises(features.NoFeatures, match="not an nn.Dense called once.*4 outputs"):
    features.head_path(bundle)
  features.register_head("scaled_head_test", None)
  with pytest.raises(features.NoFeatures, match="declares no features"):
    features.features_fn(bundle)
  with pytest.raises(errors.BadRequestType, match="sequence of module names"):
    features.register_head("scaled_head_test", "Dense_1")


# ----------------------------------------------------------------------------------------
# The report, end to end, on hand-made bundles.


def _images(rng, labels):
  """2x2 images: pixel ``label`` bright (200-255), the others dark (0-30)."""
  x = rng.integers(0, 31, (len(labels), 4))
  x[np.arange(len(labels)), labels] = rng.integers(200, 256, len(labels))
  return x.astype(np.uint8).reshape(-1, 2, 2, 1)


def _bundle(dense0, dense1_kernel, dense1_bias):
  params = {"Dense_0": {"kernel": jnp.asarray(dense0, jnp.float32), "bias": jnp.zeros(4)},
            "Dense_1": {"kernel": jnp.asarray(dense1_kernel, jnp.float32),
                        "bias": jnp.asarray(dense1_bias, jnp.float32)}}
  return Bundle("mlp", {"hidden": (4,), "activation": "relu"}, params, {},
                jnp.zeros((4, 2, 2, 1)), 4, (2, 2, 1))


@pytest.fixture(scope="module")
def hand_made():
  """(original, bias-shifted, oracle, data): class 3 forgotten.

  The original reads pixel c into hidden unit c and logit c; the 'bias' move lowers logit
  3 by 10; the oracle never learned class 3: pixel 3 feeds hidden unit 0 (its images look
  like class 0) and logit 3 reads nothing.
  """
  rng = np.random.default_rng(6)
  train_labels, test_labels = _labels(30), _labels(30)
  data = depth.DepthData.of((_images(rng, train_labels), train_labels),
                            (_images(rng, test_labels), test_labels))
  original = _bundle(np.eye(4), 4 * np.eye(4), np.zeros(4))
  shifted = _bundle(np.eye(4), 4 * np.eye(4), [0, 0, 0, -10.0])
  oracle_in = np.eye(4)
  oracle_in[3] = [1, 0, 0, 0]
  oracle_out = 4 * np.eye(4)
  oracle_out[:, 3] = 0
  oracle = _bundle(oracle_in, oracle_out, [0, 0, 0, -10.0])
  return original, shifted, oracle, data


_CONFIG = depth.DepthConfig(
    probe_per_class=None, relearn=RelearnConfig(batch_size=16, max_steps=30, learning_rate=0.5))


def test_depth_report_calls_a_bias_shift_output_level_only(hand_made):
  original, shifted, oracle, data = hand_made
  report = depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=_CONFIG)
  assert report["E_F"].method == 100.0 and report["A_R"].method == 100.0
  assert report["one_constant_half"].method == 100.0
  assert report["one_constant_half"].oracle <= 5.0
  assert report["one_constant_half"].gap >= 95.0
  assert report["cka_to_original"].method == pytest.approx(1.0)
  assert report["distance_to_original"].method > 0
  relearn = report["relearn_50"]  # The lowered bias comes back faster than the class is learnt.
  assert relearn.ratio and relearn.method < relearn.oracle < 30
  assert relearn.gap == relearn.method / relearn.oracle
  assert report["probe_recall"].method == report["probe_recall"].original == 100.0
  # Halving the bias (-10 -> -5) and half a unit prototype do not outweigh this offset.
  assert report["prototype"].original == 100.0 and report["prototype"].method == 0.0
  assert report.verdict.output_level_only
  assert report.verdict.text.startswith("Output-level only")
  goals = dict((g.name, g.passed) for g in report_lib.depth_goals(report))
  assert goals["forgetting"] is True and goals["one_constant"] is False
  assert goals["probe"] is False and goals["prototype"] is True
  assert goals["relearning"] is False
  assert "linear probe recall" in report.to_markdown()
  assert report.to_dict()["figures"][0]["name"] == "E_F"

  same = depth.depth_report(oracle, oracle, original, data, FORGOTTEN, config=_CONFIG,
                            check_references_first=False)  # The oracle as its own stand-in.
  assert all(f.gap in (0.0, 1.0) or np.isnan(f.gap) for f in same.figures), same.figures
  assert not same.verdict.output_level_only
  assert all(g.passed in (True, None) for g in report_lib.depth_goals(same))


def test_a_relearning_run_of_no_steps_is_not_measured_never_met(hand_made):
  """walk7 F8: max_steps=0 read "never" for the method and the oracle alike, and the goal
  counted as met (experiments.depth --relearn-steps 0, "no relearning attack")."""
  original, shifted, oracle, data = hand_made
  config = dataclasses.replace(_CONFIG, relearn=RelearnConfig(max_steps=0), scales=(),
                               head_steps=())
  report = depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=config)
  assert report.get("relearn_50") is None and "relearn" in report.skipped
  goals = dict((g.name, g.passed) for g in report_lib.depth_goals(report))
  assert goals["relearning"] is None


def test_depth_report_refuses_references_that_cannot_be_what_they_are_named(hand_made):
  """The original passed as the oracle met every goal; a model that never knew the class
  passed as the original made every figure read against it meaningless."""
  original, shifted, oracle, data = hand_made
  with pytest.raises(errors.BadRequest, match="oracle gets 100.0% .* oracle must be"):
    depth.depth_report(shifted, original, original, data, FORGOTTEN, config=_CONFIG)
  with pytest.raises(errors.BadRequest, match="original gets 0.0% .* original must be"):
    depth.depth_report(shifted, oracle, oracle, data, FORGOTTEN, config=_CONFIG)
  with pytest.raises(errors.BadRequest, match=r"oracle_seeds\[0\] gets 100.0%"):
    depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=_CONFIG,
                       oracle_seeds=[original])


def test_depth_report_refuses_an_oracle_that_is_not_retrained(hand_made):
  """The unlearned model itself, or a model forgotten another way, passed as the oracle
  met every goal by construction (the command line refused them; the library did not)."""
  original, shifted, oracle, data = hand_made
  copy = dataclasses.replace(shifted, params=jax.tree.map(jnp.array, shifted.params))
  with pytest.raises(errors.BadRequest, match="oracle holds the unlearned model's own"):
    depth.depth_report(shifted, copy, original, data, FORGOTTEN, config=_CONFIG)
  forgotten = dataclasses.replace(oracle, history=[{"event": "forget", "move": "bias"}])
  with pytest.raises(errors.BadRequest, match=r"oracle_seeds\[0\] forgot classes with bias"):
    depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=_CONFIG,
                       oracle_seeds=[forgotten])
  retrained = dataclasses.replace(oracle, history=[{"event": "forget", "method": "retrain"}])
  depth.check_retrained(shifted, retrained)


def test_depth_report_runs_the_logit_attacks_on_a_model_without_features(hand_made,
                                                                        monkeypatch):
  original, shifted, oracle, data = hand_made
  monkeypatch.setattr(features, "_DECLARED", {"mlp": None})
  config = depth.DepthConfig(relearn=None)
  report = depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=config)
  assert report["one_constant_shots"].method == 100.0
  assert report.get("probe_recall") is None and "declares no features" in \
      report.skipped["probe_recall"]
  # The one-constant attack alone calls it output-level.
  assert report.verdict.output_level_only and "features were not read" in report.verdict.text


def test_depth_report_refuses_an_oracle_of_another_architecture(hand_made):
  original, shifted, oracle, data = hand_made
  wider = Bundle("mlp", {"hidden": (5,), "activation": "relu"}, oracle.params, {}, None, 4,
                 (2, 2, 1))
  with pytest.raises(errors.BadRequest, match="oracle bundle has model attributes"):
    depth.depth_report(shifted, wider, original, data, FORGOTTEN, config=_CONFIG)
  more = oracle.replace(num_classes=5)
  with pytest.raises(errors.BadRequest, match="oracle bundle has class count 5"):
    depth.depth_report(shifted, more, original, data, FORGOTTEN, config=_CONFIG)
  with pytest.raises(errors.BadRequestType, match="original must be a Bundle"):
    depth.depth_report(shifted, oracle, "original/bundle", data, FORGOTTEN)
  with pytest.raises(errors.BadRequest, match="cannot forget every class"):
    depth.depth_report(shifted, oracle, original, data, [0, 1, 2, 3])
  test = data.test
  keep = test.labels != 3
  no_forgotten = depth.DepthData(data.train, type(test)(test.images[keep], test.labels[keep]))
  with pytest.raises(errors.BadRequest, match="test split holds no example of forgotten"):
    depth.depth_report(shifted, oracle, original, no_forgotten, FORGOTTEN)


@pytest.mark.parametrize("one_constant, probe", [(90.0, 97.0), (50.0, 97.0), (50.0, None)])
def test_verdict_says_what_was_read_in_one_level_of_parentheses(one_constant, probe):
  """A report without the CKA to the original (no original to compare with): the verdict
  says the probe was read where it was, and never nests parentheses."""
  Fig = report_lib.Figure
  figures = [Fig("E_F", "E_F", "%", 100.0, 100.0, 0.0, 0.0, None),
             Fig("A_R", "A_R", "%", 97.0, 97.0, 97.0, 0.0, None),
             Fig("one_constant_half", "one", "%", one_constant, 55.0, 100.0, 0.0, None)]
  if probe is not None:
    figures.append(Fig("probe_recall", "probe", "%", probe, 96.0, 97.0, 1.0, None))
  skipped = {"cka_to_original": "there is no original (it was not given)"}
  report = report_lib.DepthReport((3,), tuple(figures), skipped,
                                  report_lib.Verdict(False, ""))
  text = report_lib.verdict(report).text
  depth_now = deepest = 0
  for char in text:
    depth_now += {"(": 1, ")": -1}.get(char, 0)
    deepest = max(deepest, depth_now)
  assert deepest <= 1, text
  if probe is None:
    assert "the features were not read: there is no original" in text, text
  else:
    assert "the linear probe was read, recall 97.0%" in text and "not read" not in text, text


# ----------------------------------------------------------------------------------------
# Refusals up front: the config, the data, the references' architecture.


@pytest.mark.parametrize("field, value, error", [
    ("batch_size", 0, errors.BadRequest), ("batch_size", 8.0, errors.BadRequestType),
    ("shots", 0, errors.BadRequest), ("prototype_shots", -1, errors.BadRequest),
    ("probe_per_class", 0, errors.BadRequest), ("probe_max_iter", 0, errors.BadRequest),
    ("relearn_min_examples", 0, errors.BadRequest), ("scales", (-1.0, 0.0), errors.BadRequest),
    ("scales", (2.0, float("inf")), errors.BadRequest), ("scales", (2.0, 2.0), errors.BadRequest),
    ("scales", 2.0, errors.BadRequestType), ("head_steps", (0,), errors.BadRequest),
    ("head_steps", (10, 10), errors.BadRequest),
    ("head_steps", (2.5,), errors.BadRequestType), ("head_learning_rate", -1.0, errors.BadRequest),
    ("head_learning_rate", 0.0, errors.BadRequest), ("head_momentum", 1.0, errors.BadRequest),
    ("probe_c", 0.0, errors.BadRequest), ("prototype_alpha", 1.5, errors.BadRequest),
    ("prototype_metric", "dot", errors.BadRequest), ("relearn_fraction", 0.0, errors.BadRequest),
    ("relearn", {"max_steps": 3}, errors.BadRequestType),
])
def test_depth_config_refuses_each_bad_field_on_construction(field, value, error):
  with pytest.raises(error, match=f"DepthConfig.{field}"):
    depth.DepthConfig(**{field: value})
  depth.DepthConfig(**{field: getattr(depth.DepthConfig(), field)})


def test_depth_config_takes_no_probe_cap_no_scales_and_no_relearning():
  config = depth.DepthConfig(probe_per_class=None, scales=(), relearn=None)
  assert [n for n, _, _ in depth.figure_specs(config) if n.startswith("input_scale")] == []


def test_depth_report_refuses_one_test_image_of_a_forgotten_class_before_any_attack(
    hand_made, monkeypatch):
  original, shifted, oracle, data = hand_made
  test = data.test
  keep = (test.labels != 3) | (np.cumsum(test.labels == 3) == 1)  # One image of class 3.
  one = depth.DepthData(data.train, type(test)(test.images[keep], test.labels[keep]))
  ran = []
  monkeypatch.setattr(depth, "_measure", lambda *a, **k: ran.append(1))
  with pytest.raises(errors.BadRequest, match=r"test split holds too few images of forgotten "
                     r"classes \(class: images\) \{3: 1\}.*2 or more"):
    depth.depth_report(shifted, oracle, original, one, FORGOTTEN, config=_CONFIG)
  assert not ran


def test_depth_report_refuses_an_int_key(hand_made):
  original, shifted, oracle, data = hand_made
  with pytest.raises(errors.BadRequestType, match="jax.random.key"):
    depth.depth_report(shifted, oracle, original, data, FORGOTTEN, config=_CONFIG, key=0)


@pytest.mark.parametrize("mine, theirs", [
    ({}, {"hidden": [1000], "activation": "sigmoid"}),
    ({"hidden": (1000,)}, {"activation": "sigmoid"}),
    ({"hidden": [4], "activation": "relu"}, {"hidden": (4,), "activation": "relu"}),
])
def test_check_comparable_fills_in_the_models_defaults(mine, theirs):
  params = {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}
  a = Bundle("mlp", mine, params, {}, None, 4, (2, 2, 1))
  depth.check_comparable(a, a.replace(model_kwargs=theirs), "oracle")
  assert depth.model_attributes(a) == depth.model_attributes(a.replace(model_kwargs=theirs))


@pytest.mark.parametrize("mine, theirs", [
    ({}, {"activation": "tanh"}),
    ({"hidden": [1000]}, {"hidden": [999]}),
])
def test_check_comparable_still_refuses_a_real_difference(mine, theirs):
  params = {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}
  a = Bundle("mlp", mine, params, {}, None, 4, (2, 2, 1))
  with pytest.raises(errors.BadRequest, match="oracle bundle has model attributes"):
    depth.check_comparable(a, a.replace(model_kwargs=theirs), "oracle")


def _feature_case():
  rng = np.random.default_rng(0)
  y = _labels(6)
  z = rng.normal(size=(len(y), 3))
  return z, y, np.zeros((3, 4)), np.zeros(4)


_ATTACK_CASES = [
    ("half_split", lambda: attacks.half_split(_labels(3), 0), errors.BadRequestType,
     "jax.random.key"),
    ("input_scale", lambda: attacks.input_scale_recovery(
        lambda x: jnp.zeros((len(x), 4)), np.ones((4, 2)), _labels(1), FORGOTTEN, (2.0, -1.0)),
     errors.BadRequest, r"scales\[1\]"),
    ("probe_c", lambda: attacks.probe_recall(*_feature_case()[:2], *_feature_case()[:2],
                                             FORGOTTEN, c=0.0), errors.BadRequest, "c must"),
    ("probe_iter", lambda: attacks.probe_recall(*_feature_case()[:2], *_feature_case()[:2],
                                                FORGOTTEN, max_iter=1.5),
     errors.BadRequestType, "max_iter"),
    ("prototype_alpha", lambda: attacks.prototype_attack(
        *_feature_case(), *_feature_case()[:2], FORGOTTEN, alpha=-0.5), errors.BadRequest,
     "alpha"),
    ("prototype_shots", lambda: attacks.prototype_attack(
        *_feature_case(), *_feature_case()[:2], FORGOTTEN, shots=2.5), errors.BadRequestType,
     "shots"),
    ("head_lr", lambda: attacks.head_finetune_recovery(
        *_feature_case(), *_feature_case()[:2], FORGOTTEN, learning_rate=-1.0),
     errors.BadRequest, "learning_rate"),
    ("head_momentum", lambda: attacks.head_finetune_recovery(
        *_feature_case(), *_feature_case()[:2], FORGOTTEN, momentum=-0.9), errors.BadRequest,
     "momentum"),
    ("head_steps", lambda: attacks.head_finetune_recovery(
        *_feature_case(), *_feature_case()[:2], FORGOTTEN, steps=(1.5,)),
     errors.BadRequestType, r"steps\[0\]"),
]


@pytest.mark.parametrize("name, call, error, match", _ATTACK_CASES,
                         ids=[c[0] for c in _ATTACK_CASES])
def test_the_attacks_refuse_bad_settings_with_the_projects_errors(name, call, error, match):
  with pytest.raises(error, match=match):
    call()


@pytest.mark.parametrize("images, kwargs, error, match", [
    (np.zeros((3, 2, 2, 1), np.float32), {}, errors.BadRequestType, "uint8"),
    (np.zeros((3, 2, 2, 1), np.uint8), {"batch_size": 0}, errors.BadRequest, "batch_size"),
    (np.zeros((3, 2, 2, 1), np.uint8), {"scale": -1.0}, errors.BadRequest, "scale"),
])
def test_forward_refuses_float_images_and_bad_settings(hand_made, images, kwargs, error, match):
  original = hand_made[0]
  with pytest.raises(error, match=match):
    features.forward(original, images, features=False, **kwargs)


def test_suppression_one_constant_undoes_is_output_level_even_with_moved_features():
  """The verdict called a finetune 'deeper than the output layer' (its features had moved)
  while one constant brought back 89% of the class against the oracle's 2.6%."""
  Fig = report_lib.Figure
  figures = (Fig("E_F", "E_F", "%", 100.0, 100.0, 0.0, 0.0, None),
             Fig("one_constant_half", "one", "%", 89.0, 2.6, 100.0, 86.4, None),
             Fig("cka_to_original", "cka", "CKA", 1 - 0.0034, 1 - 9.7e-6, 1.0, 0.0, None),
             Fig("probe_recall", "probe", "%", 97.0, 96.0, 97.0, 1.0, None))
  report = report_lib.DepthReport((3,), figures, {}, report_lib.Verdict(False, ""))
  found = report_lib.verdict(report)
  assert found.output_level_only and found.text.startswith("Output-level:"), found
  assert "brings back 89.0%" in found.text and "moved from the original's" in found.text


def test_depth_report_takes_frozen_dict_params_of_the_same_model(hand_made):
  """forget keeps a FrozenDict as it is given; bundles hold dicts: the same architecture."""
  original, shifted, oracle, data = hand_made
  config = depth.DepthConfig(relearn=None, probe_per_class=5, head_steps=(1,))
  report = depth.depth_report(shifted.replace(params=FrozenDict(shifted.params)), oracle,
                              original, data, FORGOTTEN, config=config)
  assert report["E_F"].method == 100.0 and report["one_constant_half"].method == 100.0
  distance = attacks.weight_distance(shifted.params, original.params)
  assert report["distance_to_original"].method == distance > 0
