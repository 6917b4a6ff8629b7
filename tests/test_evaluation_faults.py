"""Faults a user composing the evaluation functions found (notes/walk_py_faults.md F2-F5,
F21): ties in the exact one-constant attack, wrong shapes, non-finite inputs, FrozenDict
parameters, unchecked step counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

from mnemonic_jax import errors, mia
from mnemonic_jax.baselines import Split
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.evaluation import attacks, depth, features, logit_attacks
from mnemonic_jax.evaluation import report as report_lib

# ----------------------------------------------------------------------------------------
# F2: best_constant is the maximum over every real constant, argmax's ties included.


def _accuracy(logits, labels, forgotten, delta):
  shifted = logits.copy()
  shifted[:, forgotten] += delta
  return np.mean(np.argmax(shifted, -1) == labels)


def _brute_force_best(logits, labels, forgotten):
  """Accuracy changes only where a forgotten logit plus delta meets a remaining one: every
  such point, every midpoint between two and one beyond each end covers every real delta."""
  remaining = [c for c in range(logits.shape[1]) if c not in forgotten]
  meets = np.unique((logits[:, remaining][:, :, None]
                     - logits[:, forgotten][:, None, :]).ravel())
  candidates = [0.0, meets[0] - 1.0, meets[-1] + 1.0, *meets, *((meets[1:] + meets[:-1]) / 2)]
  return max(_accuracy(logits, labels, forgotten, d) for d in candidates)


def test_best_constant_matches_a_brute_force_maximum_with_exact_ties():
  # Multiples of 1/4 in [-1.5, 1.5]: every sum and midpoint is exact in float64, and ties
  # between a forgotten and a remaining logit are frequent.
  rng = np.random.default_rng(0)
  ties = 0
  for case in range(400):
    num_classes, n = int(rng.integers(2, 6)), int(rng.integers(1, 9))
    logits = rng.integers(-6, 7, (n, num_classes)) / 4.0
    labels = rng.integers(0, num_classes, n)
    forgotten = sorted(rng.choice(num_classes, int(rng.integers(1, num_classes)),
                                  replace=False).tolist())
    delta = attacks.best_constant(logits, labels, forgotten)
    best = _brute_force_best(logits, labels, forgotten)
    assert _accuracy(logits, labels, forgotten, delta) == best, (case, logits, labels,
                                                                forgotten, delta)
    if _accuracy(logits, labels, forgotten, 0.0) == best:
      assert delta == 0.0
    remaining = [c for c in range(num_classes) if c not in forgotten]
    ties += int(np.any(np.isin(logits[:, forgotten].max(1)[:, None] - logits[:, remaining],
                               [0.0])))
  assert ties > 100  # The cases hold many exact ties.


def test_best_constant_on_the_reported_tie():
  logits = np.array([[-1.0, -1.0, -5.1, -2.9], [-3.5, 1.2, -1.8, 0.5],
                     [1.3, -1.1, -2.1, 2.4], [0.5, -2.5, 1.0, -1.3]])
  labels = np.array([1, 1, 3, 1])
  delta = attacks.best_constant(logits, labels, [0])
  assert _accuracy(logits, labels, [0], delta) == 0.75
  # Only a tie at the threshold scores both rows right: the threshold itself is returned.
  tied = np.array([[0.0, 0.0], [0.0, 0.0]])  # Forgotten class 1; argmax gives ties to 0.
  assert attacks.best_constant(tied, np.array([0, 0]), [1]) == 0.0
  logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # Forgotten 0: t = -1 and 1.
  delta = attacks.best_constant(logits, np.array([0, 2]), [0])
  assert _accuracy(logits, np.array([0, 2]), [0], delta) == 1.0


def test_the_one_constant_attack_scores_the_exact_constant():
  # Row 0 ties class 0 (forgotten, the lower index: argmax's pick) with class 1, its label:
  # only a negative constant gets both rows right (it was 0, scoring row 0 wrong), and that
  # constant (-1) then turns the forgotten example of the score set to class 1.
  choose = np.array([[-1.0, -1.0, -3.0], [0.0, 1.0, 0.0]])
  labels = np.array([1, 1])
  delta = attacks.best_constant(choose, labels, [0])
  assert delta < 0 and _accuracy(choose, labels, [0], delta) == 1.0
  score = np.array([[0.5, 0.0, 0.0], [-1.0, -1.0, -3.0]])
  assert attacks.one_constant_recovery(choose, labels, score, np.array([0, 1]), [0]) == 0.0


# ----------------------------------------------------------------------------------------
# F4: NaN or inf logits, features and heads are refused, as forgetting_metrics does.

_L = np.random.default_rng(1).normal(size=(12, 4))
_Y = np.arange(12) % 4
_KEY = jax.random.key(0)


def _with(value, row=0):
  bad = _L.copy()
  bad[row, 1] = value
  return bad


_LOGIT_CALLS = {
    "forgotten_accuracy": lambda lg: attacks.forgotten_accuracy(lg, _Y, [3]),
    "best_constant": lambda lg: attacks.best_constant(lg, _Y, [3]),
    "one_constant_choose": lambda lg: attacks.one_constant_recovery(lg, _Y, _L, _Y, [3]),
    "one_constant_score": lambda lg: attacks.one_constant_recovery(_L, _Y, lg, _Y, [3]),
    "half_split_recovery": lambda lg: attacks.half_split_recovery(lg, _Y, [3], key=_KEY),
    "input_scale_recovery": lambda lg: attacks.input_scale_recovery(
        lambda x: lg, np.ones((12, 2)), _Y, [3]),
}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", list(_LOGIT_CALLS))
def test_every_logit_attack_refuses_non_finite_logits(name, value):
  with pytest.raises(errors.BadRequest, match="1 non-finite value"):
    _LOGIT_CALLS[name](_with(value))


def test_nan_logits_are_not_scored_as_right():
  with pytest.raises(errors.BadRequest, match="forgotten_accuracy: logits hold 6 non-finite"):
    attacks.forgotten_accuracy(np.full((2, 3), np.nan), [0, 1], [0])


@pytest.mark.parametrize("logits", [_L + 1j, _L > 0, np.full((12, 4), "a")],
                         ids=["complex", "bool", "str"])
@pytest.mark.parametrize("name", list(_LOGIT_CALLS))
def test_every_logit_attack_refuses_logits_that_are_not_real_numbers(name, logits):
  # Complex logits lost their imaginary part silently, booleans were scored as 0/1 logits.
  with pytest.raises(errors.BadRequestType, match="real-valued"):
    _LOGIT_CALLS[name](logits)


_Z = np.random.default_rng(2).normal(size=(24, 3))
_ZY = np.repeat(np.arange(4), 6)
_W, _B = np.random.default_rng(3).normal(size=(3, 4)), np.zeros(4)

_FEATURE_CALLS = {
    "probe_recall": lambda z: attacks.probe_recall(z, _ZY, _Z, _ZY, [3]),
    "ncm_recall": lambda z: attacks.ncm_recall(z, _ZY, _Z, _ZY, [3]),
    "ncm_recall_test": lambda z: attacks.ncm_recall(_Z, _ZY, z, _ZY, [3]),
    "prototype_attack": lambda z: attacks.prototype_attack(z, _ZY, _W, _B, _Z, _ZY, [3]),
    "head_finetune_recovery": lambda z: attacks.head_finetune_recovery(
        z, _ZY, _W, _B, _Z, _ZY, [3], steps=(1,)),
    "linear_cka": lambda z: attacks.linear_cka(z, _Z),
}


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("name", list(_FEATURE_CALLS))
def test_every_feature_attack_refuses_non_finite_features(name, value):
  # NaN features gave ncm_recall 0% and prototype_attack 100% without a word.
  bad = _Z.copy()
  bad[5, 2] = value
  with pytest.raises(errors.BadRequest, match="1 non-finite value"):
    _FEATURE_CALLS[name](bad)


@pytest.mark.parametrize("attack", [attacks.prototype_attack, attacks.head_finetune_recovery])
def test_the_head_attacks_refuse_a_non_finite_head(attack):
  kernel, bias = _W.copy(), _B.copy()
  kernel[0, 0], bias[1] = np.nan, np.inf
  with pytest.raises(errors.BadRequest, match="kernel hold 1 non-finite"):
    attack(_Z, _ZY, kernel, _B, _Z, _ZY, [3])
  with pytest.raises(errors.BadRequest, match="bias hold 1 non-finite"):
    attack(_Z, _ZY, _W, bias, _Z, _ZY, [3])


def test_head_finetuning_that_diverges_is_refused():
  with pytest.raises(errors.BadRequest, match="became NaN or inf within 1 SGD steps"):
    attacks.head_finetune_recovery(_Z * 1e20, _ZY, _W, _B, _Z, _ZY, [3], steps=(1,),
                                   learning_rate=1e30)


def test_the_mias_refuse_logits_that_are_not_real_numbers():
  logits = np.random.default_rng(4).normal(size=(6, 3))
  for bad in (logits + 1j, np.full((6, 3), "a")):
    with pytest.raises(errors.BadRequestType, match="retain_logits must be real numbers"):
      mia.entropy_mia(bad, logits, logits)
    with pytest.raises(errors.BadRequestType, match="logits must be real numbers"):
      mia.softmax_entropy(bad)
  with pytest.raises(errors.BadRequestType, match="n_splits"):
    mia.loss_mia(np.ones(4), np.ones(4), n_splits=3.0)
  with pytest.raises(errors.BadRequest, match="n_splits"):
    mia.loss_mia(np.ones(4), np.ones(4), n_splits=1)


# ----------------------------------------------------------------------------------------
# F3: wrong shapes and kinds give the documented errors, naming the argument.

_F = np.random.default_rng(0).normal(size=(60, 4))
_FY = np.repeat(np.arange(3), 20)
_K = np.random.default_rng(1).normal(size=(4, 3))
_BIAS = np.zeros(3)

_SHAPE_CASES = [
    ("headft_kernel", lambda: attacks.head_finetune_recovery(_F, _FY, _K[:3], _BIAS, _F, _FY,
                                                             [1]),
     errors.BadRequest, r"head_finetune_recovery: the head's kernel \(3, 3\) .* width 4"),
    ("headft_bias", lambda: attacks.head_finetune_recovery(_F, _FY, _K, _BIAS[:2], _F, _FY, [1]),
     errors.BadRequest, r"head_finetune_recovery: the head's kernel \(4, 3\) and bias \(2,\)"),
    ("headft_bias_none", lambda: attacks.head_finetune_recovery(_F, _FY, _K, None, _F, _FY, [1]),
     errors.BadRequestType, "head_finetune_recovery bias must be real numbers"),
    ("prototype_kernel", lambda: attacks.prototype_attack(_F, _FY, _K.T, _BIAS, _F, _FY, [1]),
     errors.BadRequest, r"prototype_attack: the head's kernel \(3, 4\)"),
    ("headft_steps", lambda: attacks.head_finetune_recovery(_F, _FY, _K, _BIAS, _F, _FY, [1],
                                                            steps=10),
     errors.BadRequestType, "steps must be a sequence"),
    ("labels_2d", lambda: attacks.forgotten_accuracy(_L, _Y[:, None], [3]), errors.BadRequest,
     r"forgotten_accuracy: labels must have shape \(N,\)"),
    ("labels_none", lambda: attacks.best_constant(_L, None, [3]), errors.BadRequestType,
     "best_constant: labels must be integers"),
    ("logits_1d", lambda: attacks.best_constant(_L[0], _Y[:1], [3]), errors.BadRequest,
     r"best_constant: logits must have shape \(N, C\)"),
    ("score_labels", lambda: attacks.one_constant_recovery(_L, _Y, _L, _Y[:3], [3]),
     errors.BadRequest, "one_constant_recovery score_logits, score_labels: logits"),
    ("half_split_2d", lambda: attacks.half_split(_Y[:, None], _KEY), errors.BadRequest,
     r"half_split labels must have shape \(N,\)"),
    ("half_split_negative", lambda: attacks.half_split(_Y - 1, _KEY), errors.BadRequest,
     "half_split labels run from -1"),
    ("half_split_float", lambda: attacks.half_split(_Y * 1.0, _KEY), errors.BadRequestType,
     "half_split labels must be integers"),
    ("host_rng", lambda: attacks.host_rng(0), errors.BadRequestType, "jax.random.key"),
    ("predict_not_callable", lambda: attacks.input_scale_recovery(3, np.ones((12, 2)), _Y, [3]),
     errors.BadRequestType, "predict must be callable"),
    ("predict_tuple", lambda: attacks.input_scale_recovery(lambda x: (_L, 0), np.ones((12, 2)),
                                                           _Y, [3]),
     errors.BadRequestType, "predict must return one"),
    ("scales_none", lambda: attacks.input_scale_recovery(lambda x: _L, np.ones((12, 2)), _Y,
                                                         [3], None),
     errors.BadRequestType, "scales must be a sequence"),
    ("inputs_str", lambda: attacks.input_scale_recovery(lambda x: _L, "abc", _Y, [3]),
     errors.BadRequestType, "inputs must be real numbers"),
    ("probe_labels_2d", lambda: attacks.probe_recall(_F, _FY[:, None], _F, _FY, [1]),
     errors.BadRequest, r"probe_recall train_labels must have shape \(N,\)"),
    ("ncm_features_1d", lambda: attacks.ncm_recall(_F[:, 0], _FY, _F, _FY, [1]),
     errors.BadRequest, r"ncm_recall support_features must be features \(N, D\)"),
    ("ncm_test_labels_none", lambda: attacks.ncm_recall(_F, _FY, _F, None, [1]),
     errors.BadRequestType, "ncm_recall test_labels must be integers"),
    ("ncm_widths", lambda: attacks.ncm_recall(_F, _FY, _F[:, :3], _FY, [1]), errors.BadRequest,
     r"test_features \(60, 3\)"),
    ("cka_str", lambda: attacks.linear_cka(np.full((4, 2), "a"), np.ones((4, 2))),
     errors.BadRequestType, "linear_cka x must be real numbers"),
    ("distance_str", lambda: attacks.weight_distance({"a": "x"}, {"a": "y"}),
     errors.BadRequestType, r"params\['a'\] is not an array of real numbers"),
    ("distance_empty", lambda: attacks.weight_distance({}, {}), errors.BadRequest,
     "params holds no arrays"),
    ("distance_nan", lambda: attacks.weight_distance({"a": np.ones(2)}, {"a": np.full(2, np.nan)}),
     errors.BadRequest, r"reference\['a'\] holds 2 non-finite"),
    ("verdict", lambda: report_lib.verdict(None), errors.BadRequestType,
     "verdict takes a DepthReport"),
    ("depth_goals", lambda: report_lib.depth_goals({}), errors.BadRequestType,
     "depth_goals takes a DepthReport"),
    ("figure_specs", lambda: depth.figure_specs(None), errors.BadRequestType,
     "config must be a DepthConfig"),
    ("model_attributes", lambda: depth.model_attributes(None), errors.BadRequestType,
     "bundle must be a Bundle"),
]


@pytest.mark.parametrize("name, call, error, match", _SHAPE_CASES,
                         ids=[c[0] for c in _SHAPE_CASES])
def test_wrong_shapes_and_kinds_give_the_documented_error(name, call, error, match):
  with pytest.raises(error, match=match):
    call()


def _bundle(params=None, **kwargs):
  params = params or {"Dense_0": {"kernel": jnp.eye(4, 3), "bias": jnp.zeros(3)},
                      "Dense_1": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)}}
  return Bundle("mlp", {"hidden": (3,)}, params, {}, None, 4, (2, 2, 1), **kwargs)


def test_the_bundle_functions_refuse_what_is_not_a_bundle():
  b = _bundle()
  images, labels = np.zeros((8, 2, 2, 1), np.uint8), np.arange(8) % 4
  test = Split(images, labels)
  for call in (lambda: features.forward("runs/x", images), lambda: features.head_of("x"),
               lambda: features.head_path(3), lambda: features.features_fn(None),
               lambda: depth.check_comparable(None, b, "oracle"),
               lambda: depth.check_references(test, [3], oracles=[("oracle", "x")])):
    with pytest.raises(errors.BadRequestType, match="must be a Bundle"):
      call()
  with pytest.raises(errors.BadRequestType, match=r"oracles=\[\(name, bundle\)"):
    depth.check_references(test, [3], oracles=[b])
  with pytest.raises(errors.BadRequestType, match="test must have images and labels"):
    depth.check_references((images, labels), [3], oracles=[("oracle", b)])
  with pytest.raises(errors.BadRequest, match=r"test labels must have shape \(N,\)"):
    depth.check_references(Split(images, labels[:, None]), [3], oracles=[("oracle", b)])
  with pytest.raises(errors.BadRequest, match="one label per image"):
    depth.check_references(Split(images, labels[:3]), [3], oracles=[("oracle", b)])
  with pytest.raises(errors.BadRequest, match="out of range"):
    depth.check_references(test, [9], oracles=[("oracle", b)])
  with pytest.raises(errors.BadRequestType, match="oracle_seeds must be a sequence"):
    depth.depth_report(b, b, b, depth.DepthData(test, test), [3], oracle_seeds=b)
  with pytest.raises(errors.BadRequestType, match="path must be a tuple"):
    features.forward(b, images, path="Dense_1")
  with pytest.raises(features.NoFeatures, match=r"no module at path \('nope',\)"):
    features.forward(b, images, path=("nope",))
  with pytest.raises(errors.BadRequestType, match="features must be True or False"):
    features.forward(b, images, features="no")


# ----------------------------------------------------------------------------------------
# F5: a FrozenDict and a dict of the same model are the same architecture.


def test_weight_distance_compares_a_frozen_dict_with_a_dict_by_paths():
  a = {"w": np.array([3.0, 4.0]), "b": {"x": np.zeros(1)}}
  frozen = FrozenDict({"b": {"x": np.ones(1)}, "w": np.array([3.0, 4.0])})
  assert attacks.weight_distance(frozen, a) == pytest.approx(np.sqrt(1 / 26))
  assert attacks.weight_distance(a, frozen) == pytest.approx(np.sqrt(1 / 25))
  with pytest.raises(errors.BadRequest, match="reference differs from params .*missing c/x; "
                     "unexpected b/x"):
    attacks.weight_distance(FrozenDict({"w": np.ones(2), "c": {"x": np.ones(1)}}), a)
  with pytest.raises(errors.BadRequest, match=r"w has shape \(3,\), expected \(2,\)"):
    attacks.weight_distance({"w": np.ones(2), "b": {"x": np.ones(1)}},
                            FrozenDict({"w": np.ones(3), "b": {"x": np.ones(1)}}))


def test_check_comparable_takes_frozen_dict_params_of_the_same_model():
  b = _bundle()
  depth.check_comparable(b, b.replace(params=FrozenDict(b.params)), "oracle")
  depth.check_comparable(b.replace(params=FrozenDict(b.params)), b, "oracle")
  wider = dict(b.params, Dense_1={"kernel": jnp.ones((3, 5)), "bias": jnp.zeros(5)})
  with pytest.raises(errors.BadRequest, match="Dense_1/bias has shape"):
    depth.check_comparable(b, b.replace(params=FrozenDict(wider)), "oracle")


# ----------------------------------------------------------------------------------------
# F21: relearning step counts.


@pytest.mark.parametrize("method, oracle, error, match", [
    (-5, 10, errors.BadRequest, "method_steps must be >= 0"),
    (5, -1, errors.BadRequest, "oracle_steps must be >= 0"),
    (2.5, 3, errors.BadRequestType, "method_steps must be an integer"),
    (2, True, errors.BadRequestType, "oracle_steps must be an integer"),
    ("3", 4, errors.BadRequestType, "method_steps must be an integer"),
])
def test_relearn_ratio_refuses_counts_that_are_not_steps(method, oracle, error, match):
  with pytest.raises(error, match=match):
    attacks.relearn_ratio(method, oracle)
  assert attacks.relearn_ratio(np.int64(3), None) == 0.0


def test_the_logit_attacks_stay_importable_from_attacks():
  for name in ("best_constant", "forgotten_accuracy", "half_split", "half_split_recovery",
               "host_rng", "input_scale_recovery", "one_constant_recovery"):
    assert getattr(attacks, name) is getattr(logit_attacks, name)
