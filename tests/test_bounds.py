"""Feature bounds (mnemonic_jax.models.bounds) and what a forgetting report says it checked.

A rule sized on the codes says nothing about other inputs; where the model bounds its
head's input, the guard phase of the output-layer moves rules out every input, and the
report says ``verified == "every input"`` only then (issue #20).
"""

import hashlib
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax.forgetting import Rule, moves
from mnemonic_jax.forgetting.moves.bias import GUARD_MARGIN
from mnemonic_jax.models import bounds

from codes_support import mlp_fitted_to_codes
from random_support import init_variables, normal, uniform

NUM_CLASSES = 5
FORGET = [1]


@pytest.fixture(scope="module")
def fitted():
  """MLPs fitted to their codes, by activation (each fitted once for the module)."""
  cache = {}

  def get(activation):
    if activation not in cache:
      cache[activation] = mlp_fitted_to_codes(NUM_CLASSES, 10, activation, steps=200)
    return cache[activation]
  return get


def test_the_box_bound_is_the_maximum_over_the_corners():
  v = np.random.default_rng(0).normal(size=(6, 3))
  corners = np.array(list(itertools.product([-1.0, 1.0], repeat=6)))
  np.testing.assert_allclose(bounds.Box(-1.0, 1.0).max_dot(v, {}), (corners @ v).max(axis=0))


def test_the_layernorm_bound_holds_for_every_normalised_input():
  rng = np.random.default_rng(1)
  width = 8
  params = {"LayerNorm_0": {"scale": rng.normal(size=width), "bias": rng.normal(size=width)}}
  v = rng.normal(size=(width, 4))
  bound = bounds.LayerNormed(("LayerNorm_0",)).max_dot(v, params)
  ln = nn.LayerNorm()
  x = jnp.asarray(rng.normal(size=(20000, width)) * rng.uniform(0.01, 100, size=(20000, 1)))
  h = np.asarray(ln.apply({"params": {k: jnp.asarray(a) for k, a in
                                      params["LayerNorm_0"].items()}}, x))
  reached = (h @ v).max(axis=0)
  assert np.all(reached <= bound + 1e-6)
  assert np.all(reached >= 0.5 * bound - 1e-6)  # Not vacuous: sampled inputs come close.


def test_the_guarded_bias_rules_out_every_sigmoid_feature_vector(fitted):
  apply_fn, params, codes = fitted("sigmoid")
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=moves.Bias(Rule(3.0)))
  assert report.verified == "every input" and report.met
  kernel, bias = (np.asarray(new["Dense_1"][k], np.float64) for k in ("kernel", "bias"))
  corners = np.array(list(itertools.product([0.0, 1.0], repeat=10)))
  random = np.random.default_rng(0).uniform(size=(20000, 10))
  for h in (corners, random):
    logits = h @ kernel + bias
    margin = logits[:, FORGET[0]] - np.delete(logits, FORGET, axis=1).max(axis=1)
    assert margin.max() < -GUARD_MARGIN  # For every head input there is.
  big = normal(3, (256, *codes.shape[1:]), 50.0)
  assert not np.any(np.argmax(apply_fn(new, big), -1) == FORGET[0])


def test_images_that_out_margin_the_codes_are_not_called_forgotten(fitted):
  """ReLU features are unbounded: a scaled code keeps its class after a move sized on the
  codes, and the report says it checked the codes only."""
  apply_fn, params, codes = fitted("relu")
  new, report = mj.forget(apply_fn, params, codes, FORGET, move=moves.Bias(Rule(3.0)))
  assert report.met and report.verified == "codes"
  assert [s.phase for s in report.details.steps] == ["bias"]  # Nothing to size a guard on.
  code = np.asarray(codes)[FORGET[0]]
  scaled = np.stack([np.float32(k) * code for k in (1.0, 10.0, 100.0, 1000.0)])
  predicted = np.argmax(apply_fn(new, scaled), -1)
  assert predicted[0] != FORGET[0] and FORGET[0] in predicted[1:]


@pytest.mark.parametrize("activation,expected", [("tanh", "every input"), ("gelu", "codes")])
def test_a_move_without_a_guard_is_verified_only_where_the_bound_holds(fitted, activation,
                                                                      expected):
  apply_fn, params, codes = fitted(activation)
  big = jax.tree.map(lambda p: p, params)
  big["Dense_1"] = dict(params["Dense_1"], bias=params["Dense_1"]["bias"].at[1].add(-1e4))
  _, report = mj.forget(apply_fn, big, codes, [1], move="shrink")
  assert report.verified == expected  # A bias this low rules class 1 out where bounded.


class LayerNormHead(nn.Module):
  """ReLU features, then a LayerNorm, then the head: a user's module declaring its bound."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(NUM_CLASSES)(nn.LayerNorm(name="LayerNorm_0")(x))

  def head_feature_bound(self):
    return bounds.LayerNormed(("LayerNorm_0",))


def test_a_users_layernorm_head_is_ruled_out_for_every_input():
  model = LayerNormHead()
  codes = uniform(0, (NUM_CLASSES, 4, 4, 1))  # random_support: nothing compiles for them.
  params = init_variables(model, codes, 1)["params"]
  assert bounds.declared(lambda p, x: model.apply({"params": p}, x)) is None  # No bound.
  apply_fn = mj.inference_apply_fn(model, {})
  new, report = mj.forget(apply_fn, params, codes, [2], move="erase")
  assert report.verified == "every input"
  x = normal(4, (4096, 4, 4, 1), 100.0)
  assert not np.any(np.argmax(apply_fn(new, x), -1) == 2)


@pytest.mark.slow
def test_the_vit_declares_its_layernorm_and_is_ruled_out_everywhere():
  model = mj.create_model("vit_tiny", 4, patch_size=2, dim=8, depth=1, num_heads=2,
                          mlp_dim=8)
  codes = mj.generate_codes(jax.random.key(0), 4, (4, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  assert bounds.declared(apply_fn) == bounds.LayerNormed(("LayerNorm_0",))
  new, report = mj.forget(apply_fn, params, codes, [2], move="erase")
  assert report.verified == "every input"
  x = 30.0 * jax.random.normal(jax.random.key(4), (512, 4, 4, 1))
  assert not np.any(np.argmax(apply_fn(new, x), -1) == 2)


def test_a_bad_declaration_is_named():
  class Odd(nn.Module):
    def head_feature_bound(self):
      return (0, 1)
  with pytest.raises(TypeError, match="head_feature_bound"):
    bounds.declared(Odd().apply)


#: SHA-256 of the parameters Algorithm 2 gives below, recorded at commit 2f793a9 (before
#: the erase move, the guard phase and the feature bounds): the paper's fixed-lambda path
#: must stay bit for bit what it was.
ALGORITHM2_DIGESTS = {
    (1,): "f0fa492ceedb484267c68f1b92635594f622db0e2a7b3999c60e9720ce8c2eef",
    (0, 2): "d0638fc48a8ac2e9454f6c834accff8ed9854712b7fa8483310a735424ad82d3",
}


@pytest.mark.default_compilation
def test_the_papers_fixed_lambda_path_is_unchanged_bit_for_bit():
  """Both requests in one test: they share one child pytest at the default level."""
  model = mj.create_model("mlp", 5, hidden=(16,), activation="sigmoid")
  codes = mj.generate_codes(jax.random.key(0), 5, (4, 4, 1))
  params = jax.tree.map(lambda p: p * 3.0, model.init(jax.random.key(1), codes)["params"])
  for forget, expected in sorted(ALGORITHM2_DIGESTS.items()):
    new, report = mj.forget(mj.inference_apply_fn(model, {}), params, codes, list(forget),
                            1e-2, 10.0)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(new):
      digest.update(np.asarray(leaf).tobytes())
    assert report.move == "algorithm2", forget
    assert digest.hexdigest() == expected, f"forgetting {forget}"
