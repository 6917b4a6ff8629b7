"""The robust data-free rules (mnemonic_jax.robust) on tiny models trained on their codes.

The tests that forget from a model compile the rules' programs (seconds on 2 CPU cores):
they are ``slow`` (``python -m pytest -m slow tests/test_robust.py``); the default suite
runs the default move (``"bias"``), the step choice and the layer selection.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import forgetting, robust

from codes_support import mlp_fitted_to_codes

NUM_CLASSES = 5


def train_on_codes(activation):
  """A tiny MLP (16 hidden units) trained on its codes only: every code is right."""
  return mlp_fitted_to_codes(NUM_CLASSES, 16, activation)


@pytest.fixture(scope="module")
def tanh_model():
  return train_on_codes("tanh")


@pytest.mark.slow
@pytest.mark.parametrize("rule,classes", [
    ("bias", [1]),
    ("head", [1]), ("steps", [1]), ("shrink+bias", [1]), ("shrink+bias", [0, 2]),
    ("bias", [0, 2])])
def test_rule_forgets_the_codes_and_keeps_the_rest(tanh_model, rule, classes):
  apply_fn, params, codes = tanh_model
  new, report = robust.forget_robust(apply_fn, params, codes, classes, rule=rule, margin=3.0)
  margin, correct = forgetting.code_margins(apply_fn(new, codes), jnp.arange(NUM_CLASSES))
  margin, correct = np.asarray(margin), np.asarray(correct)
  rest = np.setdiff1d(np.arange(NUM_CLASSES), classes)
  assert report.met
  assert np.all(margin[classes] <= -3.0)  # Every forgotten code wrong, by the margin.
  assert np.all(correct[rest] == 1.0)  # Every remaining code still right.
  assert report.after.forget_accuracy == 0.0 and report.after.remain_accuracy == 1.0
  assert jax.tree.structure(new) == jax.tree.structure(params)


def test_the_default_move_lowers_only_the_forgotten_logits_bias(tanh_model):
  """``mj.forget`` without lambdas: the "bias" rule (in the default suite, as the default)."""
  apply_fn, params, codes = tanh_model
  new, report = mj.forget(apply_fn, params, codes, [3], rule=mj.lambda_search.Rule(3.0))
  assert report.rule == forgetting.DEFAULT_MOVE == "bias" and report.met is True
  margin, correct = forgetting.code_margins(apply_fn(new, codes), jnp.arange(NUM_CLASSES))
  assert float(margin[3]) <= -3.0 and np.asarray(correct)[[0, 1, 2, 4]].all()
  moved = jax.tree.map(lambda a, b: np.flatnonzero(np.asarray(a != b)), new, params)
  assert moved["Dense_0"]["kernel"].size == 0 and moved["Dense_0"]["bias"].size == 0
  assert moved["Dense_1"]["kernel"].size == 0
  assert moved["Dense_1"]["bias"].tolist() == [3]
  assert float(new["Dense_1"]["bias"][3]) < float(params["Dense_1"]["bias"][3])


def test_concentrated_layers_selects_the_module_of_the_largest_ratio():
  eta = {"a": {"kernel": jnp.ones((10, 20)), "bias": jnp.ones(20)},
         "b": {"kernel": jnp.full((20, 5), 40.0), "bias": jnp.ones(5)}}
  assert robust.concentrated_layers(eta) == {
      "a": {"kernel": False, "bias": False}, "b": {"kernel": True, "bias": True}}


def test_select_step_takes_the_first_step_that_meets_the_rule():
  before = forgetting.CodeScores(forget_accuracy=1.0, remain_accuracy=1.0,
                                 forget_margin=5.0, remain_margin=4.0)
  fm = np.array([4.0, -1.0, -6.0, -9.0])
  rm = np.array([4.0, 3.0, 2.0, 1.8])  # Steps 2 and 3 both meet the rule at guard 0.4.
  ra = np.ones(4)
  assert robust.select_step(fm, rm, ra, before, 5.0, 0.4) == (2, True, None)
  # Guard 0.6 (2.4) excludes steps 2 and 3: the fallback takes the step that forgets with
  # the largest remaining margin.
  assert robust.select_step(fm, rm, ra, before, 5.0, 0.6) == (2, False, "guard")
  # Nothing forgets: the lowest forgotten margin among the steps that keep the rest.
  assert robust.select_step(fm, rm, ra, before, 20.0, 0.4) == (3, False, "target")


@pytest.mark.slow
def test_forget_takes_the_move_by_name_and_keeps_the_paper_default(tanh_model):
  apply_fn, params, codes = tanh_model
  new, report = forgetting.forget(apply_fn, params, codes, [1], move="bias")
  assert isinstance(report, robust.RobustReport) and report.rule == "bias"
  assert report.after.forget_accuracy == 0.0 and report.after.remain_accuracy == 1.0
  with pytest.raises(ValueError, match="leave lambda1"):
    forgetting.forget(apply_fn, params, codes, [1], 1e-3, 10.0, move="bias")
  with pytest.raises(ValueError, match="unknown move"):
    forgetting.forget(apply_fn, params, codes, [1], move="nope")


@pytest.mark.slow
def test_forget_with_dispatches_and_refuses_unknown(tanh_model):
  apply_fn, params, codes = tanh_model
  _, summary = robust.forget_with("bias", apply_fn, params, codes, [1], margin=3.0)
  assert summary["rule"] == "bias" and summary["after"]["forget_accuracy"] == 0.0
  with pytest.raises(ValueError, match="unknown method"):
    robust.forget_with("nope", apply_fn, params, codes, [1])
  with pytest.raises(ValueError, match="unknown rule"):
    robust.forget_robust(apply_fn, params, codes, [1], rule="nope")
  with pytest.raises(ValueError):
    robust.forget_robust(apply_fn, params, codes, [NUM_CLASSES], rule="bias")


def test_shift_recovery_undoes_a_constant_and_not_a_constant_logit():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 25)
  logits = rng.normal(size=(100, 4)) + 6 * np.eye(4)[labels]  # Every example right.
  shifted = logits.copy()
  shifted[:, 2] -= 40.0  # Class 2 "forgotten" by a shift: one constant undoes it.
  assert mj.metrics.shift_recovery(shifted, labels, [2]) == 100.0
  flat = logits.copy()
  flat[:, 2] = -40.0  # Its logit carries nothing, and its examples look like class 1's:
  flat[labels == 2, 1] += 6.0  # no constant tells them apart.
  assert mj.metrics.shift_recovery(flat, labels, [2]) < 50.0
  with pytest.raises(mj.errors.BadRequest, match="at least one"):
    mj.metrics.shift_recovery(logits, labels, [])


def test_the_default_move_names_the_papers_for_a_model_without_an_output_bias():
  codes = mj.generate_codes(jax.random.key(0), 3, (2, 2, 1))
  params = {"w": jax.random.normal(jax.random.key(1), (4, 3))}
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]  # No bias: nothing to lower.
  with pytest.raises(mj.errors.BadRequest, match=r"no output bias.*move='paper'"):
    mj.forget(apply_fn, params, codes, [0])
