"""Faults of the fifth round left open then (walk5 G5's kind in Python, G8, V11, V13, moves
keeping 0-d arrays), fixed since."""

import json
import pathlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, checkpointing, configs, errors, models, workflow
from mnemonic_jax.baselines.finetune import FinetuneConfig
from mnemonic_jax.forgetting import moves
from mnemonic_jax.forgetting.criterion import Rule

from cli_support import small_config


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def test_an_under_trained_model_is_called_so_not_foreign_codes(bundle):
  """G8: a bundle that train made with these codes, trained too briefly, was told it was
  'probably not trained with these codes' and sent to attach-codes."""
  trained = checkpointing.load_bundle(bundle)
  model = models.create_model(trained.model_name, trained.num_classes, **trained.model_kwargs)
  fresh = model.init(jax.random.key(7), trained.codes[:1])["params"]
  brief = trained.replace(params=fresh, config={**trained.config, "epochs": 1})
  imported = trained.replace(params=fresh, history=({"event": "import", "classes": []},))
  said = {name: " ".join(workflow.forget_bundle(b, [3])[0].history[-1]["warnings"])
          for name, b in (("brief", brief), ("imported", imported))}
  assert "under-trained (1 epoch with t_mix" in said["brief"]
  assert "train it for more epochs" in said["brief"]
  assert "probably not trained with these codes" not in said["brief"]
  assert "probably not trained with these codes" in said["imported"]


def test_a_sweep_ladder_is_checked_before_anything_runs(tiny_digits_bundle):
  """V13: a config object in the ladder, or a misspelt field, failed as a bare TypeError
  from dataclasses; a candidate given twice ran twice."""
  bundle, train, _ = tiny_digits_bundle
  held_out = baselines.UnlearnData.from_training(train.images, train.labels, (3,)).retain
  sweep = lambda candidates: baselines.base.sweep("finetune", bundle, [3], None, held_out,
                                                  candidates=candidates)
  with pytest.raises(errors.BadRequest, match=r"candidates\[0\] overrides \['epoch'\], not "
                     "fields of FinetuneConfig"):
    sweep([{"epoch": 1}])
  with pytest.raises(errors.BadRequest,
                     match=r"candidates\[1\] \{'epochs': 1\} is a config given before"):
    sweep([{"epochs": 1}, FinetuneConfig(epochs=1)])  # An object is taken as its overrides.
  with pytest.raises(errors.BadRequestType, match=r"candidates\[0\] must be a dict"):
    sweep(["epochs=1"])
  with pytest.raises(errors.BadRequestType, match="must be a list of dicts"):
    sweep({"epochs": 1})
  with pytest.raises(ValueError, match=r"candidates\[0\] \{'epochs': 0\}"):
    sweep([{"epochs": 0}])
  ladder = baselines.options.sweep_ladder("finetune", FinetuneConfig, FinetuneConfig(),
                                  [FinetuneConfig(epochs=2)])
  assert ladder == [({"epochs": 2}, FinetuneConfig(epochs=2))]


class _BN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(jnp.tanh(h))


def test_statistics_of_a_diverged_run_are_refused_where_they_are_given():
  """V11: NaN BatchNorm statistics gave NaN Fishers and codes scored as forgotten (argmax
  of NaN logits), silently; integer ones were cast."""
  model, x = _BN(), jnp.ones((3, 2, 2, 1))
  variables = model.init(jax.random.key(0), x)
  stats = variables["batch_stats"]
  nan = jax.tree.map(lambda a: a.at[0].set(jnp.nan), stats)
  with pytest.raises(errors.BadRequest, match=r"batch_stats\['BatchNorm_0'\]\['mean'\] holds NaN"):
    mj.inference_apply_fn(model, nan)
  with pytest.raises(errors.BadRequestType, match="int32, not floating point"):
    mj.inference_apply_fn(model, jax.tree.map(lambda a: a.astype(jnp.int32), stats))
  # Abstract statistics (shapes only, as the depth attacks pass) and traced ones (a
  # caller's jit) are not read; finite ones pass.
  mj.inference_apply_fn(model, jax.eval_shape(lambda: stats))
  logits = jax.jit(lambda s: mj.inference_apply_fn(model, s)(variables["params"], x))(stats)
  chex.assert_shape(logits, (3, 3))
  chex.assert_tree_all_finite(mj.inference_apply_fn(model, stats)(variables["params"], x))


@pytest.mark.parametrize("name", ["metrics.jsonl", ".lock", "train/weights.npz"])
def test_python_train_never_writes_over_the_pretrained_weights_it_reads(tmp_path, name):
  """G5's kind through workflow.train (the command line checked it since walk5, Python
  did not): pretrained weights at the run's lock or metrics log were written over."""
  work = tmp_path / "work"
  weights = work / name
  weights.parent.mkdir(parents=True)
  weights.write_bytes(b"trained weights")
  config = small_config(pretrained=str(weights))
  with pytest.raises(configs.ConfigError, match="config.pretrained .* training writes"):
    workflow.train(config, work, progress=False)
  assert weights.read_bytes() == b"trained weights"
  assert sorted(p.name for p in work.iterdir()) == [weights.relative_to(work).parts[0]]


@pytest.mark.parametrize("given, plain", [
    (lambda: moves.Bias(rule=Rule(margin=jnp.float32(10), guard=np.array(0.3))),
     lambda: moves.Bias(rule=Rule(margin=10.0, guard=0.3))),
    (lambda: moves.Reassign(temperature=jnp.float32(0.25)),
     lambda: moves.Reassign(temperature=0.25)),
    (lambda: moves.Algorithm2(lambda1=jnp.float32(0.5), lambda2=jnp.float32(10),
                              microbatch_size=jnp.int32(5)),
     lambda: moves.Algorithm2(lambda1=0.5, lambda2=10.0, microbatch_size=5)),
    (lambda: moves.Paper(chunk=jnp.int32(4), microbatch_size=np.array(2)),
     lambda: moves.Paper(chunk=4, microbatch_size=2)),
])
def test_a_move_given_0d_arrays_keeps_numbers(given, plain):
  """A move or Rule given a 0-d JAX number kept it: unhashable, and the bias move's report
  could not be written as JSON (the history entry of a saved bundle)."""
  move = given()
  assert move == plain() and hash(move) == hash(plain())
  model = models.create_model("mlp", 3, hidden=(8,))
  codes = mj.generate_codes(jax.random.key(0), 3, (2, 2, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  if isinstance(move, moves.Bias):
    _, report = mj.forget(mj.inference_apply_fn(model, {}), params, codes, [0], move=move)
    json.dumps(report.to_dict())
