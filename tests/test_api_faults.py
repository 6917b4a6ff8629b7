"""Faults a Python user composing the API found (notes/walk_py_faults.md F11, F13, F20):
each bad argument is refused by name with the project's errors, before any work."""

import dataclasses
import importlib.util
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import models, training

errors = mj.errors


# --------------------------------------------------------------------------------------
# F11: FitConfig is checked when built.


@pytest.mark.parametrize("field, value, error, phrase", [
    ("epochs", 0, errors.BadConfig, "FitConfig.epochs must be an integer in [1,"),
    ("epochs", -1, errors.BadConfig, "FitConfig.epochs must be an integer"),
    ("epochs", 1.5, errors.BadConfig, "FitConfig.epochs must be an integer"),
    ("epochs", 2.0, errors.BadConfig, "FitConfig.epochs must be an integer"),
    ("epochs", True, errors.BadConfig, "FitConfig.epochs must be an integer"),
    ("epochs", "3", errors.BadConfig, "FitConfig.epochs must be an integer"),
    ("batch_size", 0, errors.BadConfig, "FitConfig.batch_size must be an integer in [1,"),
    ("batch_size", None, errors.BadConfig, "FitConfig.batch_size must be an integer"),
    ("learning_rate", math.nan, errors.BadConfig,
     "FitConfig.learning_rate must be a finite number > 0, got nan"),
    ("learning_rate", -1.0, errors.BadConfig, "FitConfig.learning_rate must be a finite"),
    ("learning_rate", 0.0, errors.BadConfig, "FitConfig.learning_rate must be a finite"),
    ("learning_rate", "0.1", errors.BadConfig, "FitConfig.learning_rate must be a finite"),
    ("momentum", 1.5, errors.BadConfig, "FitConfig.momentum must be a finite number in [0, 1)"),
    ("momentum", 1.0, errors.BadConfig, "FitConfig.momentum must be"),
    ("momentum", -0.1, errors.BadConfig, "FitConfig.momentum must be"),
    ("weight_decay", -1e-4, errors.BadConfig, "FitConfig.weight_decay must be a finite number"),
    ("weight_decay", math.inf, errors.BadConfig, "FitConfig.weight_decay must be"),
    ("t_mix", 1.5, errors.BadConfig, "FitConfig.t_mix must be a finite number in [0, 1]"),
    ("t_mix", "0.1", errors.BadConfig, "FitConfig.t_mix must be"),
    ("schedule", "linear", errors.BadConfig, "FitConfig.schedule: unknown schedule 'linear'"),
    ("augment", 1, errors.BadConfig, "FitConfig.augment must be True or False"),
])
def test_fit_config_refuses_bad_fields_when_built_naming_them(field, value, error, phrase):
  with pytest.raises(error) as info:
    mj.FitConfig(**{field: value})
  assert phrase in str(info.value) and "\n" not in str(info.value), str(info.value)
  valid = mj.FitConfig(epochs=1, batch_size=8)
  with pytest.raises(error):  # dataclasses.replace builds it again: checked too.
    dataclasses.replace(valid, **{field: value})


def test_fit_config_keeps_plain_python_values():
  config = mj.FitConfig(epochs=np.int64(2), batch_size=np.int32(8),
                        learning_rate=np.float32(0.5), momentum=0, augment=np.bool_(True))
  assert config == mj.FitConfig(epochs=2, batch_size=8, learning_rate=0.5, momentum=0.0,
                                augment=True)
  assert [type(getattr(config, f.name)) for f in dataclasses.fields(config)] == [
      int, int, float, float, float, str, float, bool]
  assert mj.FitConfig() == mj.FitConfig(epochs=200, batch_size=128, learning_rate=0.01)


def test_fit_refuses_a_config_that_is_not_a_fit_config_before_compiling():
  model = mj.create_model("mlp", 4, hidden=(4,))
  codes = jnp.zeros((4, 4, 4, 1))
  images, labels, key = np.zeros((8, 4, 4, 1), np.uint8), np.arange(8) % 4, jax.random.key(0)
  with mj.CompileClock() as clock, pytest.raises(errors.BadRequestType,
                                                 match="config must be a FitConfig, got dict"):
    mj.fit(model, (images, labels), codes, {"epochs": 1, "batch_size": 8}, key, progress=False)
  assert clock.programs == 0


def test_steps_per_epoch_and_make_optimizer_check_their_numbers():
  with pytest.raises(errors.BadConfig, match="batch_size must be an integer"):
    training.steps_per_epoch(10, 0)  # Was ZeroDivisionError.
  with pytest.raises(errors.BadConfig, match="batch size 16 is larger than the 10"):
    training.steps_per_epoch(10, 16)
  assert training.steps_per_epoch(10, 3) == 3
  with pytest.raises(errors.BadConfig, match="make_optimizer.learning_rate must be"):
    training.make_optimizer(math.nan)
  with pytest.raises(errors.BadConfig, match="make_optimizer.momentum must be"):
    training.make_optimizer(0.1, momentum=1.5)


# --------------------------------------------------------------------------------------
# F13: register_model refuses to replace a name silently, and a non-callable factory.


@pytest.fixture
def registry(monkeypatch):
  """The model registry, restored after the test."""
  monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
  monkeypatch.setattr(models, "_SOURCES", dict(models._SOURCES))
  return models


def test_register_model_refuses_a_built_in_name_unless_asked(registry):
  replacement = lambda num_classes, **kw: None  # noqa: E731
  with pytest.raises(errors.BadRequest, match="'mlp' is already registered \\(a built-in model\\)"
                     ".*replace=True"):
    registry.register_model("mlp", replacement)
  assert isinstance(registry.create_model("mlp", 10), models.MLP)  # Unchanged.
  registry.register_model("mlp", replacement, replace=True)
  assert registry.create_model("mlp", 10) is None


def test_register_model_refuses_a_name_registered_elsewhere(registry):
  registry.register_model("walk_mlp", models.MLP)
  with pytest.raises(errors.BadRequest, match="'walk_mlp' is already registered"):
    registry.register_model("walk_mlp", models.ResNet18)
  assert registry._REGISTRY["walk_mlp"] is models.MLP


def test_register_model_takes_the_same_file_registering_again(registry, tmp_path):
  """A config file that the loader runs twice registers its model twice: not a replacement;
  another file registering the name is, and so is the file registering another model."""
  def run(path):
    spec = importlib.util.spec_from_file_location("walk_model_file", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

  text = ("import flax.linen as nn\nimport mnemonic_jax\n"
          "class Net(nn.Module):\n  num_classes: int\n"
          "mnemonic_jax.register_model('walk_file_model', Net)\n")
  (tmp_path / "one.py").write_text(text)
  (tmp_path / "two.py").write_text(text)
  run(tmp_path / "one.py")
  first = registry._REGISTRY["walk_file_model"]
  run(tmp_path / "one.py")
  assert registry._REGISTRY["walk_file_model"] is not first
  with pytest.raises(errors.BadRequest, match=f"registered from file {tmp_path / 'one.py'}"):
    run(tmp_path / "two.py")
  (tmp_path / "one.py").write_text(text.replace("Net", "Other"))  # Another model, same file.
  with pytest.raises(errors.BadRequest, match="'walk_file_model' is already registered"):
    run(tmp_path / "one.py")


@pytest.mark.parametrize("name, factory, replace, phrase", [
    ("walk_int", 3, False, "factory must be callable"),
    ("walk_none", None, False, "factory must be callable"),
    ("", models.MLP, False, "name must be a non-empty string"),
    (("mlp",), models.MLP, False, "name must be a non-empty string"),
    ("walk_mlp", models.MLP, "yes", "replace must be True or False"),
])
def test_register_model_refuses_bad_arguments(registry, name, factory, replace, phrase):
  before = dict(registry._REGISTRY)
  with pytest.raises(errors.BadRequestType, match=phrase):
    registry.register_model(name, factory, replace=replace)
  assert registry._REGISTRY == before


# --------------------------------------------------------------------------------------
# F20: create_model checks num_classes and the built-in models' attributes when built.


@pytest.mark.parametrize("name, num_classes, kwargs, error, phrase", [
    ("mlp", 10.0, {}, errors.BadRequestType, "create_model: num_classes must be an int >= 1, "
     "got 10.0"),
    ("mlp", True, {}, errors.BadRequestType, "num_classes must be an int"),
    ("mlp", "10", {}, errors.BadRequestType, "num_classes must be an int"),
    ("mlp", 0, {}, errors.BadRequest, "num_classes must be an int >= 1, got 0"),
    ("resnet18", -2, {}, errors.BadRequest, "num_classes must be an int >= 1, got -2"),
    ("mlp", 10, {"hidden": 3}, errors.BadRequestType, "MLP: hidden must be a tuple of ints"),
    ("mlp", 10, {"hidden": (3, 0)}, errors.BadRequest, "MLP: hidden must be a tuple of ints"),
    ("mlp", 10, {"hidden": (2.5,)}, errors.BadRequestType, "MLP: hidden must be"),
    ("mlp", 10, {"hidden": "32"}, errors.BadRequestType, "MLP: hidden must be"),
    ("mlp", 10, {"hidden": np.array([32])}, errors.BadRequestType, "MLP: hidden must be"),
    ("mlp", 10, {"activation": "softplus"}, errors.BadRequest,
     "MLP: unknown activation 'softplus'"),
    ("mlp", 10, {"hiden": (3,)}, errors.BadRequestType,
     "create_model\\('mlp'\\): the model has no attribute\\(s\\) hiden; its attributes are "
     "activation, hidden"),
    ("resnet18_cifar", 10, {"stem": "tiny"}, errors.BadRequest, "ResNet18: unknown stem"),
    ("resnet18_cifar", 10, {"width": 0}, errors.BadRequest, "ResNet18: width must be"),
    ("resnet18", 10, {"widths": 8}, errors.BadRequestType, "stem, width"),
    ("vit_tiny", 10, {"patch_size": 0}, errors.BadRequest, "ViT: patch_size must be"),
    ("vit_tiny", 10, {"depth": -1}, errors.BadRequest, "ViT: depth must be an int >= 0"),
    ("vit_tiny", 10, {"dim": 8.0}, errors.BadRequestType, "ViT: dim must be an int"),
    ("vit_tiny", 10, {"dim": 10, "num_heads": 3}, errors.BadRequest,
     "ViT: dim=10 is not divisible by num_heads=3"),
])
def test_create_model_refuses_bad_attributes_before_init(name, num_classes, kwargs, error,
                                                         phrase):
  with pytest.raises(error) as info:
    models.create_model(name, num_classes, **kwargs)
  assert len(str(info.value).splitlines()) == 1
  assert re.search(phrase, str(info.value)), str(info.value)


def test_built_in_models_check_their_attributes_when_built_directly():
  with pytest.raises(errors.BadRequestType, match="MLP: hidden must be"):
    models.MLP(10, hidden=3)
  with pytest.raises(errors.BadRequest, match="MLP: num_classes must be"):
    models.MLP(0)


def test_create_model_builds_the_documented_attributes():
  mlp = models.create_model("mlp", np.int64(3), hidden=[4, 5], activation="relu")
  assert mlp.hidden == (4, 5)
  assert models.create_model("mlp", 3, hidden=()).hidden == ()
  vit = models.create_model("vit_tiny", 4, patch_size=2, dim=8, depth=0, num_heads=2,
                            mlp_dim=4)
  shapes = jax.eval_shape(lambda: vit.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1))))
  assert shapes["params"]["Dense_0"]["kernel"].shape == (8, 4)
