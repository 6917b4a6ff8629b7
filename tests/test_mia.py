"""Tests for mnemonic_jax.mia (membership-inference attacks on numpy logits)."""

import math

import numpy as np
import pytest

from mnemonic_jax import errors, mia

K = 10


def _logits(rng: np.random.Generator, labels: np.ndarray, margin: float,
            noise: float = 1.0) -> np.ndarray:
  """Gaussian logits with ``margin`` added to each row's true class."""
  x = rng.normal(0.0, noise, size=(len(labels), K))
  x[np.arange(len(labels)), labels] += margin
  return x


def _labels(rng: np.random.Generator, n: int, classes=range(K)) -> np.ndarray:
  return rng.choice(np.asarray(list(classes)), size=n)


@pytest.fixture
def data():
  """Members very confident (margin 12), non-members not (margin 0.5)."""
  rng = np.random.default_rng(123)
  out = {}
  for name, n, margin in [("retain", 300, 12.0), ("test", 200, 0.5),
                          ("forget_member", 100, 12.0), ("forget_nonmember", 100, 0.5)]:
    labels = _labels(rng, n)
    out[name] = (_logits(rng, labels, margin), labels)
  return out


# ----------------------------------------------------------------------------------
# Helpers.


def test_softmax_entropy_hand_values():
  logits = np.array([[0.0, math.log(3.0)],   # p = (1/4, 3/4)
                     [5.0, 5.0],             # uniform over 2
                     [1000.0, 1000.0],       # overflow-prone, still uniform
                     [0.0, 0.0]])
  h = mia.softmax_entropy(logits)
  expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  assert h.dtype == np.float64 and h.shape == (4,)
  np.testing.assert_allclose(h, [expected, math.log(2), math.log(2), math.log(2)],
                             rtol=1e-12)
  np.testing.assert_allclose(mia.softmax_entropy(np.zeros((1, K))), [math.log(K)])
  # A saturated row has zero entropy (0 log 0 = 0), also with masked -inf logits.
  np.testing.assert_allclose(mia.softmax_entropy([[1e4, 0.0, 0.0]]), [0.0], atol=1e-12)
  np.testing.assert_allclose(mia.softmax_entropy([[0.0, -np.inf], [0.0, 0.0]])[0], 0.0)
  np.testing.assert_allclose(mia.softmax_entropy([[1.0, 1.0, -np.inf]]), [math.log(2)])


def test_true_class_probability_hand_values():
  logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [1000.0, 0.0]])
  p = mia.true_class_probability(logits, np.array([1, 0, 0]))
  assert p.dtype == np.float64
  np.testing.assert_allclose(p, [0.75, 0.25, 1.0], rtol=1e-12)
  p3 = mia.true_class_probability([[1.0, 2.0, 3.0]], [2])
  np.testing.assert_allclose(p3, [math.exp(3) / (math.e + math.exp(2) + math.exp(3))])


def test_cross_entropy_losses_hand_values():
  logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [1000.0, 0.0],
                     [1000.0, 0.0]])
  loss = mia.cross_entropy_losses(logits, np.array([1, 0, 1, 0]))
  assert loss.dtype == np.float64
  # log-sum-exp keeps the 1000-logit row finite and exact.
  np.testing.assert_allclose(loss, [-math.log(0.75), -math.log(0.25), 1000.0, 0.0],
                             rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(3), "2-D"),
    (np.zeros((0, 3)), r"^logits has too few samples \(0\): softmax_entropy needs 1 or more"),
    (np.array([[0.0, np.nan]]), "NaN"),
    (np.array([[0.0, np.inf]]), "NaN or \\+inf"),
    (np.array([[-np.inf, -np.inf]]), "no finite"),
])
def test_helpers_reject_bad_logits(bad, match):
  with pytest.raises(ValueError, match=match):
    mia.softmax_entropy(bad)


def test_helpers_reject_bad_labels():
  logits = np.zeros((2, 3))
  with pytest.raises(ValueError, match="entries"):
    mia.true_class_probability(logits, [0])
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    mia.cross_entropy_losses(logits, [0, 3])
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    mia.cross_entropy_losses(logits, [-1, 0])
  with pytest.raises(ValueError, match="integers"):
    mia.cross_entropy_losses(logits, [0.0, 1.0])


# ----------------------------------------------------------------------------------
# entropy_mia.


def test_entropy_mia_separates_members(data):
  retain, test = data["retain"][0], data["test"][0]
  assert mia.entropy_mia(retain, test, data["forget_member"][0]) >= 95.0  # A percentage.
  assert mia.entropy_mia(retain, test, data["forget_nonmember"][0]) <= 5.0


def test_entropy_mia_balances_unequal_sets(data):
  rng = np.random.default_rng(0)
  retain = _logits(rng, _labels(rng, 2000), 12.0)  # 10x more members than non-members
  test = data["test"][0]
  assert mia.entropy_mia(retain, test, data["forget_member"][0]) >= 95.0  # A percentage.
  assert mia.entropy_mia(retain, test, data["forget_nonmember"][0]) <= 5.0


def test_entropy_mia_deterministic_per_seed():
  rng = np.random.default_rng(7)
  # Overlapping member/non-member entropies, so the subsample matters.
  retain = _logits(rng, _labels(rng, 400), 2.0)
  test = _logits(rng, _labels(rng, 150), 1.0)
  forget = _logits(rng, _labels(rng, 200), 1.5)
  runs = {s: [mia.entropy_mia(retain, test, forget, seed=s) for _ in range(2)]
          for s in range(3)}
  for a, b in runs.values():
    assert a == b
  assert len({a for a, _ in runs.values()}) > 1, "seed should change the subsample"


def test_entropy_mia_validation(data):
  retain, test, forget = data["retain"][0], data["test"][0], data["forget_member"][0]
  with pytest.raises(ValueError, match="number of classes"):
    mia.entropy_mia(retain, test[:, :5], forget)


# ----------------------------------------------------------------------------------
# confidence_mia.


def test_confidence_mia_direction(data):
  args = (*data["retain"], *data["test"])
  leaked = mia.confidence_mia(*args, *data["forget_member"])
  forgotten = mia.confidence_mia(*args, *data["forget_nonmember"])
  assert leaked <= 5.0      # forgotten samples still look like members: bad
  assert forgotten >= 95.0  # forgotten samples look unseen: good
  assert 0.0 <= leaked <= forgotten <= 100.0


def test_confidence_mia_uses_true_class(data):
  # Confident logits but on the wrong class: probability of the true class is ~0, so
  # the samples look like non-members (a max-probability feature would say "member").
  logits, labels = data["forget_member"]
  wrong = (labels + 1) % K
  assert mia.confidence_mia(*data["retain"], *data["test"], logits, wrong) >= 95.0


def test_confidence_mia_deterministic_per_seed():
  rng = np.random.default_rng(3)
  r_lab, t_lab, f_lab = _labels(rng, 500), _labels(rng, 100), _labels(rng, 200)
  args = (_logits(rng, r_lab, 3.0), r_lab, _logits(rng, t_lab, 2.0), t_lab,
          _logits(rng, f_lab, 2.5), f_lab)
  runs = {s: [mia.confidence_mia(*args, seed=s) for _ in range(2)] for s in range(3)}
  for a, b in runs.values():
    assert a == b
  assert len({a for a, _ in runs.values()}) > 1, "seed should change the subsample"


def test_confidence_mia_validation(data):
  (rl, ry), (tl, ty), (fl, fy) = data["retain"], data["test"], data["forget_member"]
  with pytest.raises(ValueError, match="test_labels has 199 entries"):
    mia.confidence_mia(rl, ry, tl, ty[:-1], fl, fy)
  with pytest.raises(ValueError, match="retain_labels must lie"):
    mia.confidence_mia(rl, ry + K, tl, ty, fl, fy)


# ----------------------------------------------------------------------------------
# loss_mia.


def test_loss_mia_well_separated():
  rng = np.random.default_rng(0)
  forget = rng.exponential(0.01, size=300)       # memorised: near-zero loss
  test = rng.normal(3.0, 0.3, size=300).clip(0)  # unseen: high loss
  assert mia.loss_mia(forget, test) >= 98.0


def test_loss_mia_identical_distributions():
  rng = np.random.default_rng(1)
  forget = rng.exponential(1.0, size=300)
  test = rng.exponential(1.0, size=300)
  assert abs(mia.loss_mia(forget, test) - 50.0) <= 15.0


def test_loss_mia_balances_unequal_sets():
  # Without balancing, predicting the majority class alone would score ~99%.
  rng = np.random.default_rng(2)
  forget = rng.exponential(1.0, size=40)
  test = rng.exponential(1.0, size=4000)
  assert abs(mia.loss_mia(forget, test) - 50.0) <= 15.0
  assert abs(mia.loss_mia(test, forget) - 50.0) <= 15.0


def test_loss_mia_deterministic_per_seed():
  rng = np.random.default_rng(4)
  forget, test = rng.exponential(1.0, size=200), rng.exponential(1.2, size=500)
  runs = {s: [mia.loss_mia(forget, test, seed=s) for _ in range(2)] for s in range(3)}
  for a, b in runs.values():
    assert a == b
  assert len({a for a, _ in runs.values()}) > 1, "seed should change subsample/folds"
  # Equal sizes: nothing is subsampled, so only the fold shuffle depends on the seed.
  test = test[:200]
  assert len({mia.loss_mia(forget, test, seed=s) for s in range(3)}) > 1


def test_loss_mia_reduces_n_splits_for_small_sets():
  rng = np.random.default_rng(5)
  # Only 3 forget samples -> 3 per class after balancing -> 3 folds instead of 10.
  score = mia.loss_mia(rng.exponential(0.01, size=3), rng.normal(5.0, 0.1, size=50))
  assert score == 100.0
  score2 = mia.loss_mia(np.array([0.0, 0.01]), np.array([5.0, 5.1, 5.2]), n_splits=10)
  assert 0.0 <= score2 <= 100.0


@pytest.mark.parametrize("forget, test, kwargs, match", [
    (np.ones(10), np.ones(10), {"n_splits": 1}, "n_splits"),
    (np.ones((5, 2)), np.ones(10), {}, "1-D"),
    (np.array([1.0, np.nan, 2.0]), np.ones(10), {}, "NaN or inf"),
    (np.ones(10), np.array([0.5, -0.1, 2.0]), {}, "test_losses has negative values"),
    (-np.ones(10), np.ones(10), {}, "forget_losses has negative values"),
])
def test_loss_mia_validation(forget, test, kwargs, match):
  with pytest.raises(ValueError, match=match):
    mia.loss_mia(forget, test, **kwargs)


# ----------------------------------------------------------------------------------
# all_attacks.


def _class_unlearning_case():
  """Retained classes 1..9 confident on train; class 0 is forgotten."""
  rng = np.random.default_rng(11)
  r_lab = _labels(rng, 400, range(1, K))
  t_lab = _labels(rng, 300)  # full test set, class 0 included
  f_lab = np.zeros(80, dtype=np.int64)
  t_margin = np.where(t_lab == 0, 4.0, 0.5)  # forgotten-class test samples: medium
  t_log = rng.normal(size=(len(t_lab), K))
  t_log[np.arange(len(t_lab)), t_lab] += t_margin
  return (_logits(rng, r_lab, 12.0), r_lab, t_log, t_lab, _logits(rng, f_lab, 4.0), f_lab)


def test_all_attacks_routes_inputs():
  rl, ry, tl, ty, fl, fy = _class_unlearning_case()
  out = mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=[0], seed=3)
  assert set(out) == {"entropy_mia", "confidence_mia", "loss_mia"}
  assert all(isinstance(v, float) for v in out.values())

  keep = ty != 0
  assert out["entropy_mia"] == mia.entropy_mia(rl, tl, fl, seed=3)
  assert out["confidence_mia"] == mia.confidence_mia(rl, ry, tl[keep], ty[keep], fl, fy,
                                                     seed=3)
  # Loss attack: forgotten training samples vs test samples of the forgotten classes.
  assert out["loss_mia"] == mia.loss_mia(mia.cross_entropy_losses(fl, fy),
                                         mia.cross_entropy_losses(tl[~keep], ty[~keep]), seed=3)
  # The filtering matters on this data, so the equalities above are real checks.
  assert out["confidence_mia"] != mia.confidence_mia(rl, ry, tl, ty, fl, fy, seed=3)
  assert out["loss_mia"] != mia.loss_mia(mia.cross_entropy_losses(fl, fy),
                                         mia.cross_entropy_losses(tl, ty), seed=3)


def test_all_attacks_validation():
  rl, ry, tl, ty, fl, fy = _class_unlearning_case()
  with pytest.raises(TypeError, match="forget_classes: class ids must be integers"):
    mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=[0.5])
  for bad in ([True], "01", 0):
    with pytest.raises(TypeError, match="forget_classes"):
      mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=bad)
  with pytest.raises(ValueError, match="out of range"):
    mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=[99])
  with pytest.raises(ValueError, match=r"^test_logits has too few samples outside "
                     r"forget_classes \[0, 1, .*\] \(0\): all_attacks needs 2 or more"):
    mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=range(K))


def test_all_attacks_gives_every_score_in_percent(data):
  """The entropy attack was a fraction beside two percentages in one dict."""
  rl, ry, tl, ty, fl, fy = _class_unlearning_case()
  out = mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=[0])
  assert all(0.0 <= v <= 100.0 for v in out.values())
  retain, test = data["retain"][0], data["test"][0]
  members = (data["forget_member"][0], data["forget_member"][1])
  assert mia.entropy_mia(retain, test, members[0]) == 100.0
  assert mia.confidence_mia(*data["retain"], *data["test"], *members) == 0.0


@pytest.mark.parametrize("which, labels, match", [
    ("forget", lambda fy: np.full_like(fy, 5), r"forget_labels hold classes \[5\] outside"),
    ("forget", lambda fy: np.concatenate([fy[:-1], [3]]), r"classes \[3\] outside"),
    ("retain", lambda ry: np.full_like(ry, 0), r"retain_labels hold forget_classes \[0\]"),
    ("retain", lambda ry: np.concatenate([ry[:-1], [0]]), r"retain_labels hold"),
])
def test_all_attacks_checks_labels_against_forget_classes(which, labels, match):
  rl, ry, tl, ty, fl, fy = _class_unlearning_case()
  if which == "forget":
    fy = labels(fy)
  else:
    ry = labels(ry)
  with pytest.raises(errors.BadRequest, match=match):
    mia.all_attacks(rl, ry, tl, ty, fl, fy, forget_classes=[0])


_SEEDED = {
    "entropy_mia": lambda c, seed: mia.entropy_mia(c[0], c[2], c[4], seed=seed),
    "confidence_mia": lambda c, seed: mia.confidence_mia(*c, seed=seed),
    "loss_mia": lambda c, seed: mia.loss_mia(mia.cross_entropy_losses(c[4], c[5]),
                                             mia.cross_entropy_losses(c[2], c[3]), seed=seed),
    "all_attacks": lambda c, seed: min(mia.all_attacks(*c, forget_classes=[0],
                                                       seed=seed).values()),
}


@pytest.mark.parametrize("attack", sorted(_SEEDED))
@pytest.mark.parametrize("seed, error", [(-1, errors.BadRequest), (1.5, errors.BadRequestType),
                                         (True, errors.BadRequestType),
                                         ("0", errors.BadRequestType)])
def test_every_attack_refuses_a_bad_seed_with_the_projects_error(attack, seed, error):
  case = _class_unlearning_case()
  with pytest.raises(error, match="seed must be"):
    _SEEDED[attack](case, seed)
  assert 0.0 <= _SEEDED[attack](case, np.int64(2)) <= 100.0


def test_labels_of_the_wrong_kind_are_the_projects_type_error():
  rl, ry, tl, ty, fl, fy = _class_unlearning_case()
  with pytest.raises(errors.BadRequestType, match="forget_labels must be integers"):
    mia.all_attacks(rl, ry, tl, ty, fl, fy.astype(float), forget_classes=[0])
  with pytest.raises(errors.BadRequestType, match="test_losses must be real numbers"):
    mia.loss_mia(np.ones(4), np.array(["a", "b", "c"]))


# ----------------------------------------------------------------------------------
# Degenerate sets: every attack refuses them through the one shared check.


def _tiny_sets(n_retain: int = 6, n_test_kept: int = 6, n_test_forgotten: int = 4,
               n_forget: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Class 0 forgotten: retained samples of 1..9, test samples of both, forget of 0."""
  rng = np.random.default_rng(21)
  r_lab = _labels(rng, n_retain, range(1, K))
  t_lab = np.concatenate([_labels(rng, n_test_kept, range(1, K)),
                          np.zeros(n_test_forgotten, np.int64)])
  f_lab = np.zeros(n_forget, np.int64)
  return {"retain": (_logits(rng, r_lab, 6.0), r_lab), "test": (_logits(rng, t_lab, 1.0), t_lab),
          "forget": (_logits(rng, f_lab, 3.0), f_lab)}


def _losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Cross-entropy per sample, also of an empty set (which the helper refuses)."""
  return mia.cross_entropy_losses(logits, labels) if len(labels) else np.zeros(0)


# attack -> (call on the sets, {argument: the set it holds}).
ATTACKS = {
    "entropy_mia": (
        lambda s: mia.entropy_mia(s["retain"][0], s["test"][0], s["forget"][0]),
        {"retain_logits": "retain", "test_logits": "test", "forget_logits": "forget"}),
    "confidence_mia": (
        lambda s: mia.confidence_mia(*s["retain"], *s["test"], *s["forget"]),
        {"retain_logits": "retain", "test_logits": "test", "forget_logits": "forget"}),
    "loss_mia": (
        lambda s: mia.loss_mia(_losses(*s["forget"]), _losses(*s["test"])),
        {"forget_losses": "forget", "test_losses": "test"}),
    "all_attacks": (
        lambda s: mia.all_attacks(*s["retain"], *s["test"], *s["forget"], forget_classes=[0]),
        {"retain_logits": "retain", "test_logits": "test", "forget_logits": "forget"}),
}


def test_every_public_attack_is_covered():
  public = {name for name in mia.__all__ if name.endswith("_mia") or name == "all_attacks"}
  assert public == set(ATTACKS)


@pytest.mark.parametrize("attack, argument, n", [
    (attack, argument, n) for attack, (_, arguments) in ATTACKS.items()
    for argument in arguments for n in (0, 1)])
def test_every_attack_refuses_a_degenerate_set_the_same_way(attack, argument, n):
  call, arguments = ATTACKS[attack]
  sets = _tiny_sets()
  logits, labels = sets[arguments[argument]]
  sets[arguments[argument]] = (logits[:n], labels[:n])
  message = (rf"^{argument} has too few samples \({n}\): {attack} needs 2 or more; "
             rf"pass 2 or more samples in {argument}$")
  with pytest.raises(ValueError, match=message):
    call(sets)


@pytest.mark.parametrize("side, n", [("outside", 0), ("outside", 1), ("of", 0), ("of", 1)])
def test_all_attacks_refuses_too_few_test_samples_on_either_side(side, n):
  kept, forgotten = (n, 4) if side == "outside" else (6, n)
  sets = _tiny_sets(n_test_kept=kept, n_test_forgotten=forgotten)
  message = (rf"^test_logits has too few samples {side} forget_classes \[0\] \({n}\): "
             rf"all_attacks needs 2 or more; pass 2 or more samples {side} forget_classes "
             r"\[0\] in test_logits$")
  with pytest.raises(ValueError, match=message):
    ATTACKS["all_attacks"][0](sets)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_attack_scores_sets_of_the_minimum_size(attack):
  assert mia.MIN_SAMPLES == 2
  sets = _tiny_sets(n_retain=2, n_test_kept=2, n_test_forgotten=2, n_forget=2)
  out = ATTACKS[attack][0](sets)
  scores = out.values() if isinstance(out, dict) else [out]
  assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in scores)
