"""Every registered forgetting move on tiny MLPs fitted to their codes.

Per move: the margin reached on the forgotten codes, the remaining codes kept, the
tensors it declares moved and no others, and the sign of its direction. The registry is
the one source of the names the command line and the baselines use.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, errors
from mnemonic_jax.forgetting import DEFAULT_MOVE, Rule, moves, primitives
from mnemonic_jax.forgetting.moves import directional

from codes_support import mlp_fitted_to_codes
from random_support import init_variables, uniform

NUM_CLASSES = 5
MARGIN = 3.0
FORGET = [1]
REST = [0, 2, 3, 4]


@pytest.fixture(scope="module")
def tanh_model():
  return mlp_fitted_to_codes(NUM_CLASSES, 16, "tanh")


@pytest.fixture(scope="module")
def sigmoid_model():
  return mlp_fitted_to_codes(NUM_CLASSES, 16, "sigmoid")


def margins(apply_fn, params, codes):
  margin, correct = primitives.code_margins(apply_fn(params, codes), jnp.arange(NUM_CLASSES))
  return np.asarray(margin), np.asarray(correct)


def moved(new, old):
  """Per tensor (key path), the flat indices whose value changed."""
  flat = jax.tree_util.tree_flatten_with_path(new)[0]
  return {jax.tree_util.keystr(p): np.flatnonzero(np.asarray(a) != np.asarray(b)).tolist()
          for (p, a), b in zip(flat, jax.tree.leaves(old))}


def forget_margin_grad(apply_fn, params, codes):
  in_forget = jnp.isin(jnp.arange(NUM_CLASSES), jnp.array(FORGET))

  def summed(p):
    margin, _ = primitives.code_margins(apply_fn(p, codes), jnp.arange(NUM_CLASSES))
    return jnp.sum(jnp.where(in_forget, margin, 0.0))
  return jax.grad(summed)(params)


#: The moves that end by lowering the output bias, with the guard phase on a model that
#: bounds its head's input (tanh): every input, not only the codes, is ruled out.
GUARDED = ("bias", "project", "erase", "reassign")


@pytest.mark.parametrize("name", ["bias", "project", "erase", "reassign", "signed", "head",
                                  "steps", "shrink", "shrink+bias"])
def test_step_moves_reach_the_margin_and_keep_the_rest(tanh_model, name):
  apply_fn, params, codes = tanh_model
  new, report = mj.forget(apply_fn, params, codes, FORGET,
                          move=moves.MOVES[name](rule=Rule(margin=MARGIN)))
  margin, correct = margins(apply_fn, new, codes)
  assert report.move == name and report.met is True
  if name in GUARDED:
    assert report.verified == "every input"
  assert np.all(margin[FORGET] <= -MARGIN) and np.all(correct[REST] == 1.0)
  assert report.after.forget_accuracy == 0.0 and report.after.remain_accuracy == 1.0
  assert jax.tree.structure(new) == jax.tree.structure(params)
  assert jax.tree.map(lambda a: a.dtype, new) == jax.tree.map(lambda a: a.dtype, params)
  changed = {k for k, v in moved(new, params).items() if v}
  assert changed and changed <= set(report.details.layers)
  if report.acts_on == "concentrated layers":  # Those of the codes' Fisher ratio.
    f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, FORGET, eps=primitives.EPS)
    mask = directional.concentrated_layers(mj.fisher_ratio(f_forget, f_remain))
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    assert changed <= {jax.tree_util.keystr(p) for p, m in flat if m}
  elif name == "bias":
    assert changed == {"['Dense_1']['bias']"}
  elif name in ("project", "erase", "reassign"):
    assert changed == {"['Dense_1']['bias']", "['Dense_1']['kernel']"}


def test_bias_lowers_only_the_forgotten_entries_of_the_output_bias(tanh_model):
  apply_fn, params, codes = tanh_model
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=moves.Bias(Rule(MARGIN)))
  assert moved(new, params) == {"['Dense_0']['bias']": [], "['Dense_0']['kernel']": [],
                                "['Dense_1']['bias']": [1], "['Dense_1']['kernel']": []}
  drop = float(params["Dense_1"]["bias"][1] - new["Dense_1"]["bias"][1])
  bias_step, guard = report.details.steps  # tanh bounds the head's input: a guard phase.
  assert (bias_step.phase, guard.phase) == ("bias", "guard")
  assert drop == pytest.approx(bias_step.t + guard.t, rel=1e-5) and bias_step.t > 0


def test_signed_moves_against_the_forgotten_codes_margin_gradient(tanh_model):
  apply_fn, params, codes = tanh_model
  new, _ = mj.forget(apply_fn, params, codes, FORGET, move=moves.Signed(Rule(MARGIN)))
  grad = forget_margin_grad(apply_fn, params, codes)
  for step, g in zip(jax.tree.leaves(jax.tree.map(jnp.subtract, new, params)),
                     jax.tree.leaves(grad)):
    nz = np.asarray(step) != 0
    assert np.all(np.sign(np.asarray(step)[nz]) == -np.sign(np.asarray(g)[nz]))


def test_shrink_moves_the_head_towards_zero(tanh_model):
  apply_fn, params, codes = tanh_model
  new, _ = mj.forget(apply_fn, params, codes, FORGET, move=moves.Shrink(Rule(MARGIN)))
  w0, w1 = np.asarray(params["Dense_1"]["kernel"]), np.asarray(new["Dense_1"]["kernel"])
  nz = w1 != w0
  assert nz.any() and np.all(np.sign(w1 - w0)[nz] == -np.sign(w0)[nz])


def test_project_puts_the_forgotten_head_row_in_the_span_of_the_others(tanh_model):
  apply_fn, params, codes = tanh_model
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=moves.Project(Rule(MARGIN)))
  kernel = np.asarray(new["Dense_1"]["kernel"], np.float64)
  others = kernel[:, REST]
  coef, *_ = np.linalg.lstsq(others, kernel[:, FORGET], rcond=None)
  np.testing.assert_allclose(others @ coef, kernel[:, FORGET], atol=1e-5)
  np.testing.assert_array_equal(kernel[:, REST], np.asarray(params["Dense_1"]["kernel"])[:, REST])
  assert [(s.phase, s.target) for s in report.details.steps] == [
      ("project", 0.0), ("bias", MARGIN), ("guard", 0.0)]


def head_move(model, move):
  """``(new params, report, old kernel, new kernel, d)`` of ``move`` on ``model``, ``d`` the
  forgotten class's head direction (its column minus the remaining columns' mean)."""
  apply_fn, params, codes = model
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=move)
  old_k = np.asarray(params["Dense_1"]["kernel"], np.float64)
  d = old_k[:, FORGET[0]] - old_k[:, REST].mean(axis=1)
  return new, report, old_k, np.asarray(new["Dense_1"]["kernel"], np.float64), d


def assert_same_at_the_remaining_codes_mean(model, new):
  """At the remaining codes' mean head input the remaining logits are unchanged."""
  _, params, codes = model
  hidden = lambda p: jnp.tanh(codes.reshape(len(codes), -1) @ p["Dense_0"]["kernel"]
                              + p["Dense_0"]["bias"])
  mu = np.asarray(hidden(params))[REST].mean(axis=0)
  head = lambda p: mu @ np.asarray(p["Dense_1"]["kernel"]) + np.asarray(p["Dense_1"]["bias"])
  np.testing.assert_allclose(head(new)[REST], head(params)[REST], atol=1e-4)


def test_erase_removes_the_class_direction_from_every_head_row(tanh_model):
  new, report, old_k, new_k, d = head_move(tanh_model, moves.Erase(Rule(MARGIN)))
  u = d / np.linalg.norm(d)
  np.testing.assert_allclose(u @ new_k, 0.0, atol=1e-5)  # No logit reads it any more.
  np.testing.assert_allclose(new_k, old_k - np.outer(u, u @ old_k), atol=1e-5)
  assert_same_at_the_remaining_codes_mean(tanh_model, new)
  assert [s.phase for s in report.details.steps] == ["erase", "bias", "guard"]


def test_reassign_hands_the_class_direction_to_the_rows_nearest_it(tanh_model):
  new, report, old_k, new_k, d = head_move(tanh_model, moves.Reassign(Rule(MARGIN)))
  u = d / np.linalg.norm(d)
  # Hand-computed: softmax over the remaining rows of their cosine to the forgotten row.
  unit = old_k / np.linalg.norm(old_k, axis=0)
  cos = unit[:, FORGET[0]] @ unit[:, REST]
  q = np.exp((cos - cos.max()) / moves.reassign.TEMPERATURE)
  q /= q.sum()
  erased = old_k - np.outer(u, u @ old_k)
  np.testing.assert_allclose(new_k[:, REST], erased[:, REST] + np.outer(d, q), atol=1e-5)
  np.testing.assert_allclose(new_k[:, FORGET], erased[:, FORGET], atol=1e-5)
  # Only the direction moved: the forgotten row reads none of it, the remaining rows read
  # it in proportion to q, and at the remaining codes' mean head input nothing changed.
  np.testing.assert_allclose(d @ new_k[:, REST], (d @ d) * q, rtol=1e-4)
  np.testing.assert_allclose(u @ new_k[:, FORGET], 0.0, atol=1e-5)
  assert_same_at_the_remaining_codes_mean(tanh_model, new)
  # More of the class's evidence now raises its nearest remaining class, not the class.
  lift = lambda k: u @ k  # The logits' change from the mean input to the mean plus u.
  assert int(np.argmax(lift(new_k))) == REST[int(np.argmax(q))]
  assert int(np.argmax(lift(old_k))) == FORGET[0]
  assert [s.phase for s in report.details.steps] == ["reassign", "bias", "guard"]


def linear_head(p, x):
  """A classifier that is only a head: the codes are its head inputs."""
  return x.reshape(len(x), -1) @ p["head"]["kernel"] + p["head"]["bias"]


def test_reassign_hands_over_the_largest_share_that_keeps_the_remaining_codes():
  rng = np.random.default_rng(40)  # A head on which handing all of class 0 over costs a code.
  k = rng.normal(size=(6, 4))
  h = k.T + 0.5 * rng.normal(size=(4, 6))  # Every code right.
  params = {"head": {"kernel": jnp.asarray(k, jnp.float32), "bias": jnp.zeros(4)}}
  new, report = mj.forget(linear_head, params, jnp.asarray(h, jnp.float32), [0],
                          move=moves.Reassign(Rule(1.0)))
  # By hand: erase class 0's direction d around the remaining codes' mean, then hand a
  # fraction of d to the remaining rows by the softmax of their cosines to row 0.
  k = np.asarray(params["head"]["kernel"], np.float64)
  rest, mu = [1, 2, 3], h[1:].mean(axis=0)
  d = k[:, 0] - k[:, rest].mean(axis=1)
  u = d / np.linalg.norm(d)
  unit = k / np.linalg.norm(k, axis=0)
  q = np.exp((unit[:, 0] @ unit[:, rest]) / moves.reassign.TEMPERATURE)
  q /= q.sum()

  def head(fraction):
    kernel, bias = k - np.outer(u, u @ k), (mu @ u) * (u @ k)
    kernel[:, rest] += fraction * np.outer(d, q)
    bias[rest] -= fraction * (mu @ d) * q
    return kernel, bias

  def remaining_right(fraction):
    return bool(((h @ head(fraction)[0] + head(fraction)[1])[rest].argmax(1) == rest).all())

  assert moves.reassign.HAND_OVER[:2] == (1.0, 0.5)
  assert not remaining_right(1.0) and remaining_right(0.5)
  assert report.details.steps[0].t == 0.5 and report.met is True
  np.testing.assert_allclose(new["head"]["kernel"], head(0.5)[0], atol=1e-5)
  np.testing.assert_allclose(np.asarray(new["head"]["bias"])[rest], head(0.5)[1][rest],
                             atol=1e-5)


def test_reassign_weights_follow_the_temperature():
  kernel = np.array([[1.0, 0.9, 0.0, -1.0], [0.0, 0.1, 1.0, 0.0]])
  in_f, in_r = np.array([True, False, False, False]), np.array([False, True, True, True])
  sharp = moves.reassign.nearest_weights(kernel, in_f, in_r, 0.01)
  flat = moves.reassign.nearest_weights(kernel, in_f, in_r, 1e6)
  np.testing.assert_allclose(sharp, [[1.0, 0.0, 0.0]], atol=1e-12)  # Row 1 is the nearest.
  np.testing.assert_allclose(flat, np.full((1, 3), 1 / 3), atol=1e-6)
  for bad in (0.0, -1.0, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
      moves.Reassign(temperature=bad)
  for bad in (True, "0.1", None):  # Of the wrong kind: a TypeError, naming the option.
    with pytest.raises(TypeError, match="Reassign.temperature must be a finite number > 0"):
      moves.Reassign(temperature=bad)


def test_dampen_only_scales_parameters_down(tanh_model):
  apply_fn, params, codes = tanh_model
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=moves.Dampen(Rule(0.5)))
  margin, correct = margins(apply_fn, new, codes)
  assert report.met is True and margin[FORGET].max() <= -0.5 and correct[REST].all()
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.all(np.abs(a) <= np.abs(b) + 1e-7) and np.all(a * b >= 0)
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))


@pytest.mark.parametrize("name", [
    pytest.param("paper", marks=pytest.mark.slow),  # The search: test_paper_search covers it.
    "algorithm2"])
def test_the_papers_moves_add_one_signed_multiple_of_eta(sigmoid_model, name):
  apply_fn, params, codes = sigmoid_model
  move = (moves.Paper(rule=Rule(MARGIN)) if name == "paper"
          else moves.Algorithm2(lambda1=1e-2, lambda2=10.0))
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=move)
  sign = report.details.sign
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, FORGET, eps=primitives.EPS)
  alpha = mj.step_sizes(mj.fisher_ratio(f_forget, f_remain), report.details.lambda1,
                        report.details.lambda2)
  want = primitives.apply_step(params, alpha, mj.fisher_ratio(f_forget, f_remain), sign)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new, want)
  if name == "paper":
    margin, correct = margins(apply_fn, new, codes)
    assert report.met and margin[FORGET].max() <= -MARGIN and correct[REST].all()
  else:
    assert report.met is None and report.acts_on == "all layers"


def test_the_default_move_is_reassign(tanh_model):
  apply_fn, params, codes = tanh_model
  _, report = mj.forget(apply_fn, params, codes, FORGET)
  assert report.move == DEFAULT_MOVE == "reassign" and report.acts_on == "output layer"
  assert report.to_dict()["move"] == "reassign" and report.to_dict()["t"] > 0


def test_the_registry_is_the_one_source_of_names():
  assert set(moves.MOVES) == {"algorithm2", "paper", "bias", "project", "erase", "reassign",
                              "signed", "head", "steps", "shrink", "shrink+bias", "dampen"}
  methods = baselines.available_methods()
  for cls in moves.MOVES.values():
    assert cls.acts_on in moves.ACTS_ON and cls.summary
    assert cls.baseline in methods and cls.baseline.startswith("mnemonic")


def test_moves_refuse_options_they_do_not_have_and_bad_values():
  with pytest.raises(TypeError, match="'bias' has no option microbatch_size; its options: "
                                      "rule, grid"):
    moves.get("bias", {"microbatch_size": 4})
  with pytest.raises(TypeError, match="'algorithm2' needs lambda1 and lambda2; its options"):
    moves.get("algorithm2")
  with pytest.raises(ValueError, match="unknown move"):
    moves.get("nope")
  with pytest.raises(ValueError, match="step grid"):
    moves.Bias(grid=())
  with pytest.raises(ValueError, match="must be a positive"):
    moves.Algorithm2(lambda1=-1.0, lambda2=1.0)
  with pytest.raises(TypeError, match="lambda1='auto' asks for the paper's move"):
    moves.Algorithm2(lambda1="auto", lambda2=1.0)
  with pytest.raises(ValueError, match="strategy"):
    moves.Paper(strategy="greedy")
  assert not {f.name for f in dataclasses.fields(moves.Bias)} & {"microbatch_size", "mesh"}


def test_concentrated_layers_selects_the_module_of_the_largest_ratio():
  eta = {"a": {"kernel": jnp.ones((10, 20)), "bias": jnp.ones(20)},
         "b": {"kernel": jnp.full((20, 5), 40.0), "bias": jnp.ones(5)}}
  assert directional.concentrated_layers(eta) == {
      "a": {"kernel": False, "bias": False}, "b": {"kernel": True, "bias": True}}


def test_a_model_without_output_bias_is_told_which_move_fits():
  codes = uniform(0, (3, 2, 2, 1))  # random_support: nothing compiles for them.
  flat = np.asarray(codes).reshape(3, -1)  # A linear head fitted to margins of 10.
  params = {"w": jnp.asarray(np.linalg.pinv(flat) @ (10 * np.eye(3)), jnp.float32)}
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]  # No bias: nothing to lower.
  with pytest.raises(errors.BadRequest, match=r"no output bias.*move='shrink'"):
    mj.forget(apply_fn, params, codes, [0])
  _, report = mj.forget(apply_fn, params, codes, [0], move="shrink")  # The move it names.
  assert report.met and report.after.forget_accuracy == 0.0


def test_the_output_bias_is_found_in_bfloat16():
  model = mj.create_model("mlp", NUM_CLASSES, hidden=(8,))
  codes = uniform(0, (NUM_CLASSES, 4, 4, 1))
  params = jax.tree.map(lambda p: (p * 8).astype(jnp.bfloat16),
                        init_variables(model, codes, 1)["params"])
  mask = moves.bias.output_bias(mj.inference_apply_fn(model, {}), params,
                                codes.astype(jnp.bfloat16))
  assert mask["Dense_1"]["bias"] and not mask["Dense_1"]["kernel"]


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


class _BreaksARemainingCode(moves.stepping.DeltaPhase):
  """A first phase that lowers remaining class 0's output bias far enough to lose it."""

  name = "break"

  def delta(self, params, request):
    d = jax.tree.map(jnp.zeros_like, params)
    d["Dense_1"]["bias"] = d["Dense_1"]["bias"].at[0].set(-100.0)
    return d, jax.tree.map(lambda _: False, params), 1.0


def test_met_is_judged_against_the_codes_before_the_whole_move(tanh_model):
  apply_fn, params, codes = tanh_model
  request = primitives.validate_request(apply_fn, params, codes, FORGET, ())
  rule = Rule(MARGIN)
  moved_ = moves.stepping.run_phases(
      params, request, [(_BreaksARemainingCode(), 0.0), (moves.bias.BiasPhase(), MARGIN)],
      rule, moves.stepping.STEP_GRID)
  bias_step = moved_.details.steps[-1]
  assert bias_step.phase == "bias" and bias_step.met  # Met against the broken state ...
  assert moved_.after.remain_accuracy < moved_.before.remain_accuracy
  assert moved_.met is False  # ... but not against the codes before the move.
  fine = moves.stepping.run_phases(params, request, [(moves.bias.BiasPhase(), MARGIN)], rule,
                                   moves.stepping.STEP_GRID)
  assert fine.met is True


@pytest.mark.parametrize("on_host", [True, False])
def test_host_scores_are_the_traced_scores_and_finiteness_survives_overflowing_sums(
    monkeypatch, on_host):
  from mnemonic_jax import _validate  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.forgetting.moves import stepping
  monkeypatch.setattr(_validate, "on_host", lambda x: on_host)  # In place, or jitted.
  logits = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
  logits[2, :2] = logits[2, 2] = 5.0  # A tie for the top logit: argmax takes the first.
  in_f = np.array([False, True, True, False, False, False])
  traced = jax.jit(lambda z: primitives.scores_from_margins(
      *primitives.code_margins(z, jnp.arange(6)), in_f, ~in_f))(logits)
  host = stepping.host_scores(logits, in_f, ~in_f)
  for field in primitives.SCORE_FIELDS:
    assert np.asarray(host[field]).dtype == np.float32
    assert np.asarray(host[field]) == np.asarray(traced[field]), field
  huge = {"w": jnp.full((4,), 3e38, jnp.float32)}  # Finite entries, an infinite sum.
  assert not primitives.sums_finite(huge) and primitives.finite(huge) is True
  assert primitives.finite({"w": jnp.array([1.0, jnp.inf])}) is False


def test_algorithm2_refuses_a_step_that_overflows_the_parameters(sigmoid_model):
  """Finite parameters and lambdas whose step takes entries past the largest float32: the
  kept candidate is checked on the host (no program of its own) and refused by name, by
  Algorithm 2 and by the paper's search."""
  apply_fn, params, codes = sigmoid_model
  codes = codes.at[:, 0].set(0.0)  # Input 0 is always 0: its weights never reach a logit.
  kernel = params["Dense_0"]["kernel"]
  row = jnp.where(jnp.arange(kernel.shape[1]) % 2 == 0, 3.3e38, -3.3e38)
  params = {**params, "Dense_0": {**params["Dense_0"], "kernel": kernel.at[0].set(row)}}
  mj.forget(apply_fn, params, codes, FORGET, 1e-3, 10.0)  # A small step is kept.
  with pytest.raises(errors.BadRequest, match="made parameters non-finite"):
    mj.forget(apply_fn, params, codes, FORGET, 1e38, 1e38)
  # The paper's search, given only such a pair, refuses its choice the same way.
  with pytest.raises(errors.BadRequest, match="made parameters non-finite.*smaller grid"):
    mj.forget(apply_fn, params, codes, FORGET, move=moves.Paper(grid=((1e38,), (1e38,))))


def test_the_head_is_found_once_per_model_and_parameter_structure(monkeypatch):
  """head_tensors perturbs candidate tensors and runs the model; a later request on the same
  model and structure (other values) reuses the answer, another structure finds its own."""
  from mnemonic_jax.forgetting.moves import outputs, stepping  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(outputs, "_HEADS", {})
  forward, runs = stepping.logits, []
  monkeypatch.setattr(stepping, "logits", lambda *a: runs.append(1) or forward(*a))
  found = []
  for hidden, seed in (((16,), 0), ((16,), 1), ((8, 8), 0)):
    model = mj.create_model("mlp", 4, hidden=hidden)
    codes = uniform(seed, (4, 3, 3, 1))
    params = init_variables(model, codes, seed + 1)["params"]
    apply_fn = mj.inference_apply_fn(model, {})  # A new object each time: equal models match.
    runs.clear()
    k, b = outputs.head_tensors(apply_fn, params, codes)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    found.append((paths[k], paths[b], len(runs)))
  assert found[0][:2] == ("['Dense_1']['kernel']", "['Dense_1']['bias']") and found[0][2] > 0
  assert found[1] == (*found[0][:2], 0)  # The same model and structure: no forward pass.
  assert found[2][:2] == ("['Dense_2']['kernel']", "['Dense_2']['bias']") and found[2][2] > 0
