"""A bundle records its model's attributes with the defaults filled in (walk5 G13).

A bundle whose ``model_kwargs`` leave an attribute to its default (``import`` records only
the kwargs given, a user's config may give ``{}``) was read, after a default changed (a new
release, an edited model class), as the other model, silently. Loading now warns.
"""

import functools
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import configs, errors, models
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing import load_bundle, save_bundle
from mnemonic_jax.models import MLP, create_model

SHAPE = (4, 4, 1)


def _bundle() -> Bundle:
  model = create_model("mlp", 3, hidden=[8])
  params = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))["params"]
  codes = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32)
  return Bundle(model_name="mlp", model_kwargs={"hidden": [8]}, params=params,
                batch_stats={}, codes=codes, num_classes=3, input_shape=SHAPE)


def test_the_defaults_are_recorded(tmp_path):
  path = save_bundle(tmp_path / "b", _bundle())
  meta = json.loads((path / "meta" / "metadata").read_text())
  assert meta["model_kwargs"] == {"hidden": [8]}
  assert meta["model_attributes"]["activation"] == "'sigmoid'"  # The default, not given.
  with warnings.catch_warnings():
    warnings.simplefilter("error", errors.ModelSourceChangedWarning)
    assert load_bundle(path).model_attributes == meta["model_attributes"]


def test_a_changed_default_is_told_and_kept_through_a_resave(tmp_path, monkeypatch):
  path = save_bundle(tmp_path / "b", _bundle())
  monkeypatch.setitem(models._REGISTRY, "mlp", functools.partial(MLP, activation="tanh"))
  with pytest.warns(errors.ModelSourceChangedWarning, match="activation: 'sigmoid' -> 'tanh'"):
    loaded = load_bundle(path)
  # A bundle derived from it (a forgetting, a re-save) keeps what the weights were saved
  # with, so the next load still tells.
  again = save_bundle(tmp_path / "again", loaded)
  with pytest.warns(errors.ModelSourceChangedWarning, match="activation"):
    load_bundle(again)


def test_attributes_in_words_are_the_same_in_every_process():
  described = models.model_attributes("mlp", 3, {"hidden": [8]})
  assert described == {"num_classes": "3", "hidden": "(8,)", "activation": "'sigmoid'"}
  # A function is named, never shown by its address.
  assert models._stable_repr(jax.nn.relu) == "relu"  # Not its module: a config file's
  assert models._stable_repr(jnp.float32) == "float32"  # differs with how it was loaded.
  assert models._stable_repr(object()) is None
  assert (models._stable_repr(functools.partial(jax.nn.leaky_relu, negative_slope=0.2))
          == "partial(leaky_relu, negative_slope=0.2)")
  assert models._stable_repr(frozenset({"b", "a"})) == "frozenset([\"'a'\", \"'b'\"])"
  # Nested the same way; NumPy numbers as JSON gives them back (walk6).
  assert models._stable_repr(((frozenset({"b", "a"}),), np.int64(16), [np.float32(0.5)])) == (
      "((frozenset([\"'a'\", \"'b'\"]),), 16, [0.5])")
  assert models._stable_repr((np.int64(16),)) == models._stable_repr((16,)) == repr((16,))
  assert models._stable_repr({"a": (1, 2)}) == repr({"a": (1, 2)})


def test_a_malformed_record_is_refused(tmp_path):
  path = save_bundle(tmp_path / "b", _bundle())
  meta_file = path / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  meta["model_attributes"] = {"hidden": 8}
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(Exception, match="model_attributes"):
    load_bundle(path)


def test_a_bundle_whose_model_spec_is_replaced_records_the_new_model(tmp_path):
  """The record is carried from the save the weights came from, but a bundle made from
  another with other model_kwargs (or classes) describes its own model: no false warning."""
  saved = load_bundle(save_bundle(tmp_path / "b", _bundle()))
  model = create_model("mlp", 3, hidden=[4])
  wider = saved.replace(model_kwargs={"hidden": [4]}, params=model.init(
      jax.random.key(1), jnp.zeros((1, *SHAPE)))["params"])
  path = save_bundle(tmp_path / "wider", wider)
  with warnings.catch_warnings():
    warnings.simplefilter("error", errors.ModelSourceChangedWarning)
    assert load_bundle(path).model_attributes["hidden"] == "(4,)"


OWN_MODEL = """
import flax.linen as nn
import mnemonic_jax
from typing import Callable


def my_act(x):
  return nn.sigmoid(x)


class OwnNet(nn.Module):
  num_classes: int = 3
  act: Callable = my_act

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(self.act(x.reshape((x.shape[0], -1))))


mnemonic_jax.register_model("g13_own_net", OwnNet)


def get_config():
  return mnemonic_jax.configs.load_config("digits_mlp")
"""


def test_a_function_defined_in_a_config_file_is_the_same_in_the_next_process(
    tmp_path, monkeypatch):
  """walk6: a model attribute that is a function of the config file was named with the
  module the file ran under ('config_config' when train loads it,
  'mnemonic_jax_model_source_...' when a later load registers it again): a false warning
  on every load."""
  config_file = tmp_path / "own_config.py"
  config_file.write_text(OWN_MODEL)
  monkeypatch.delitem(models._REGISTRY, "g13_own_net", raising=False)
  monkeypatch.delitem(models._SOURCES, "g13_own_net", raising=False)
  configs.load_config(str(config_file))  # As train does: registers the model.
  model = create_model("g13_own_net", 3)
  params = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))["params"]
  path = save_bundle(tmp_path / "b", Bundle(
      model_name="g13_own_net", model_kwargs={}, params=params, batch_stats={},
      codes=np.zeros((3, *SHAPE), np.float32), num_classes=3, input_shape=SHAPE))
  del models._REGISTRY["g13_own_net"]  # A new process: the file runs again, renamed.
  del models._SOURCES["g13_own_net"]
  with warnings.catch_warnings():
    warnings.simplefilter("error", errors.ModelSourceChangedWarning)
    assert load_bundle(path).model_attributes["act"] == "my_act"
