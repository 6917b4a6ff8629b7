"""Models that forgetting cannot score right are refused, not forgotten quietly.

Each case a user met: the Flax variables dict passed as params (BatchNorm statistics moved
as parameters, NaN logits out), BatchNorm in training mode with its updates thrown away
(a margin reported that the model does not have), softmax outputs, arguments swapped, a
model without the ``train`` keyword behind ``inference_apply_fn``.
"""

import re
import dataclasses
import warnings
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax.forgetting import moves
from mnemonic_jax.forgetting.moves import stepping

from random_support import init_variables, uniform

NUM_CLASSES = 4


class BatchNormNet(nn.Module):
  """Dense -> BatchNorm -> relu -> Dense, train-mode switchable."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(8)(x.reshape((x.shape[0], -1)))
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(NUM_CLASSES)(nn.relu(x))


class NoTrainKeyword(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(NUM_CLASSES)(x.reshape((x.shape[0], -1)))


@pytest.fixture(scope="module")
def bn():
  model = BatchNormNet()
  codes = uniform(0, (NUM_CLASSES, 3, 3, 1))
  variables = init_variables(model, codes, 1)
  variables["batch_stats"] = jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])
  return model, variables, codes


def test_a_variables_dict_with_batch_stats_is_refused(bn):
  """Given as params, the running variance was moved below 0: NaN logits, no error."""
  model, variables, codes = bn
  with pytest.raises(ValueError, match="Flax variables dict with 'batch_stats' beside"):
    mj.forget(lambda v, x: model.apply(v, x), variables, codes, [3], 1e-3, 10.0)
  with pytest.raises(ValueError, match="Flax variables dict"):
    mj.class_fishers(lambda v, x: model.apply(v, x), variables, codes, [3])


def test_examples_that_interact_are_refused(bn):
  """BatchNorm in training mode, its updates thrown away: each code's logits depend on the
  batch, so the margins a move reaches are not the model's."""
  model, variables, codes = bn
  stats = variables["batch_stats"]
  train_mode = lambda p, x: model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                        mutable=["batch_stats"])[0]
  for move in ("bias", "reassign"):
    with pytest.raises(ValueError, match="change with the other inputs of the batch"):
      mj.forget(train_mode, variables["params"], codes, [3], move=move)
  with pytest.raises(ValueError, match="change with the other inputs of the batch"):
    mj.select_lambdas(train_mode, variables["params"], codes, [3], grid=([1e-3], [10.0]))
  # The same model in inference mode is accepted.
  _, report = mj.forget(mj.inference_apply_fn(model, stats), variables["params"], codes, [3],
                        move="bias")
  assert report.move == "bias"


def test_probabilities_instead_of_logits_are_refused(bn):
  model, variables, codes = bn
  stats = variables["batch_stats"]
  probs = lambda p, x: jax.nn.softmax(model.apply({"params": p, "batch_stats": stats}, x))
  for move in ("paper", "shrink"):
    with pytest.raises(ValueError, match="returns probabilities"):
      mj.forget(probs, variables["params"], codes, [3], move=move)
  log_probs = lambda p, x: jax.nn.log_softmax(model.apply({"params": p, "batch_stats": stats},
                                                          x))
  mj.forget(log_probs, variables["params"], codes, [3], move="paper")  # Logits up to a shift.


def test_a_failing_apply_fn_names_the_likely_causes(bn):
  model, variables, codes = bn
  stats = variables["batch_stats"]
  swapped = lambda x, p: model.apply({"params": p, "batch_stats": stats}, x)
  with pytest.raises(ValueError, match=r"does not take \(params, x\), in that order"):
    mj.forget(swapped, variables["params"], codes, [3])
  plain = NoTrainKeyword()
  params = init_variables(plain, codes)["params"]
  with pytest.raises(TypeError, match="takes no 'train' argument"):
    mj.forget(mj.inference_apply_fn(plain, {}), params, codes, [3])
  mj.forget(lambda p, x: plain.apply({"params": p}, x), params, codes, [3])  # As it says.


@dataclasses.dataclass(frozen=True)
class _NegativeScale(moves.Move):
  """A move that sets a finite parameter the model takes the square root of below 0 (not
  registered: tests that run every registered move must not meet it)."""

  name: ClassVar[str] = "_negative_scale_for_tests"
  acts_on: ClassVar[str] = "output layer"
  summary: ClassVar[str] = "test only"

  def __call__(self, params, request):
    new = {**params, "v": -jnp.ones_like(params["v"])}
    before, _ = stepping.final_scores(request.apply_fn, params, request.codes,
                                      request.in_forget, request.in_remain)
    after, _ = stepping.final_scores(request.apply_fn, new, request.codes, request.in_forget,
                                     request.in_remain)
    return moves.Moved(new, before, after, None, _NoDetails())


class _NoDetails:
  def to_dict(self):
    return {}


def test_a_move_whose_finite_result_gives_nan_logits_is_refused():
  """Finite parameters can still give NaN (a variance below 0): nothing is returned."""
  codes = uniform(0, (NUM_CLASSES, 3, 3, 1))
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.standard_normal((9, NUM_CLASSES)), jnp.float32),
            "b": jnp.zeros(NUM_CLASSES), "v": jnp.ones(())}
  apply_fn = lambda p, x: (x.reshape(len(x), -1) @ p["w"] + p["b"]) / jnp.sqrt(p["v"])
  with pytest.raises(ValueError, match="give non-finite logits on the codes"):
    mj.forget(apply_fn, params, codes, [3], move=_NegativeScale())


def test_a_move_that_misses_its_rule_warns(bn):
  """``met`` False used to be the only sign that nothing was forgotten (the paper's move on
  a ReLU network with BatchNorm)."""
  model, variables, codes = bn
  apply_fn = mj.inference_apply_fn(model, variables["batch_stats"])
  with pytest.warns(mj.errors.RuleNotMetWarning, match="did not meet its rule") as warned:
    _, report = mj.forget(apply_fn, variables["params"], codes, [3],
                          move=moves.Shrink(grid=(1e-9,)))
  assert report.met is False
  # Both sides of the rule, so the one that gave way shows (it named only the forgotten).
  assert re.search(r"remaining classes' codes \d+% right, smallest margin .* \(before \d+%",
                   str(warned[0].message))


def test_given_lambdas_that_turn_remaining_codes_wrong_warn():
  """The paper's move with lambdas far too large (1e30): no rule (met None), so nothing said
  that the remaining codes went wrong; sizes that keep them say nothing."""
  codes = uniform(0, (NUM_CLASSES, 3, 3, 1))
  flat = codes.reshape(NUM_CLASSES, -1)
  params = {"w": 10 * (flat - flat.mean(0)).T, "b": jnp.zeros(NUM_CLASSES)}
  apply_fn = lambda p, x: x.reshape(len(x), -1) @ p["w"] + p["b"]
  with pytest.warns(mj.errors.RemainingCodesLostWarning, match="cost the remaining") as warned:
    _, report = mj.forget(apply_fn, params, codes, [3], lambda1=1e30, lambda2=1e30)
  assert report.met is None and report.after.remain_accuracy < report.before.remain_accuracy
  assert isinstance(warned[0].message, mj.errors.RuleNotMetWarning)  # One filter for both.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _, report = mj.forget(apply_fn, params, codes, [3], lambda1=1e-3, lambda2=10.0)
  assert report.after.remain_accuracy == report.before.remain_accuracy == 1.0
