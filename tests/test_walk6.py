"""Faults a fresh user found in this session's changes (walk6), through what they used."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, configs, errors, models, workflow
from mnemonic_jax.baselines.finetune import FinetuneConfig
from mnemonic_jax.forgetting import moves
from mnemonic_jax.models import MLP

from cli_support import small_config


def test_a_config_json_cannot_write_is_refused_before_training(tmp_path):
  """Fault 4: model_kwargs holding jnp.bfloat16 trained the whole run, then failed at its
  first checkpoint ('metadata is not JSON-serialisable'), keeping nothing; every rerun the
  same."""
  config = small_config(model_kwargs={"hidden": (8,), "dtype": jnp.bfloat16})
  with pytest.raises(configs.ConfigError, match="config.model_kwargs is not JSON"):
    configs.validate_config(config)
  with pytest.raises(configs.ConfigError, match="write a dtype or a function by its name"):
    workflow.train(config, tmp_path / "work", progress=False)
  assert not (tmp_path / "work").exists()


def test_a_sweep_ladder_of_moves_with_array_grids(tiny_digits_bundle):
  """Fault 5: a move with an array grid in the ladder failed in the duplicate check with a
  raw TypeError; fault 8: a candidate writing out a default was not seen as a repeat."""
  bundle, train, _ = tiny_digits_bundle
  held_out = baselines.UnlearnData.from_training(train.images, train.labels, (3,)).retain
  ladder = baselines.options.sweep_ladder(
      "mnemonic-reassign", moves.Reassign, moves.Reassign(),
      [moves.Reassign(grid=jnp.asarray([1.0, 10.0])), moves.Reassign(grid=(2.0, 20.0))])
  assert [sorted(overrides) for overrides, _ in ladder] == [["grid"], ["grid"]]
  written_out = {"epochs": 1, "learning_rate": FinetuneConfig().learning_rate}
  with pytest.raises(errors.BadRequest, match=r"candidates\[1\] .* is a config given before"):
    baselines.base.sweep("finetune", bundle, [3], None, held_out,
                         candidates=[{"epochs": 1}, written_out])


def test_a_string_among_the_statistics_is_one_clear_refusal():
  """Fault 7: a string in the statistics gave NumPy's "data type 'nan' not understood"."""
  model = mj.create_model("mlp", 3, hidden=(4,))
  with pytest.raises(errors.BadRequestType, match=r"batch_stats\['m'\] is <U3, not floating"):
    mj.inference_apply_fn(model, {"m": "nan"})
  with pytest.raises(errors.BadRequest, match="holds NaN"):
    mj.inference_apply_fn(model, {"m": np.float32("nan")})


def test_a_resume_under_another_model_default_is_refused(tmp_path, monkeypatch):
  """model_attributes' kind in train's checkpoints: a run stopped, a default changed (a
  release, an edited class), the resume finished the run as a mix of two models."""
  config = small_config(epochs=2, checkpoint_every=1)
  with pytest.raises(workflow.RunStopped):
    workflow.train(config, tmp_path / "w", progress=False, stop=lambda: True)
  monkeypatch.setitem(models._REGISTRY, "mlp", functools.partial(MLP, activation="tanh"))
  with pytest.raises(errors.BadRequest, match="activation: 'sigmoid' -> 'tanh'"):
    workflow.train(config, tmp_path / "w", progress=False)


def test_python_train_never_writes_into_its_tfds_data_dir(tmp_path):
  """G5's kind: config.data_dir inside what the run writes, as the command line refuses."""
  config = small_config(data_dir=str(tmp_path / "w" / "train" / "data"))
  with pytest.raises(configs.ConfigError, match="config.data_dir .* training writes"):
    workflow.train(config, tmp_path / "w", progress=False)
  assert not (tmp_path / "w").exists()
