"""Faults a Python user composing the API found (notes/walk_py_faults.md F8-F11, F13, F20):
each bad argument is refused by name with the project's errors, before any work."""

import dataclasses
import importlib.util
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import metrics, models, training, workflow
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.data import DatasetError

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
# F8-F10: predict and evaluate check batch_size, labels and the images' shape.


@pytest.fixture(scope="module")
def bundle():
  """An untrained digits-shaped MLP 64-4-10: the checks need no trained weights."""
  model = models.create_model("mlp", 10, hidden=(4,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
  return Bundle("mlp", {"hidden": (4,)}, params, {}, np.zeros((10, 8, 8, 1), np.float32), 10,
                (8, 8, 1), mean=(0.5,), std=(0.25,))


def _images(n=12):
  return np.random.default_rng(0).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


@pytest.mark.parametrize("batch_size, error", [
    (-1, errors.BadRequest), (0, errors.BadRequest), (2.5, errors.BadRequestType),
    (True, errors.BadRequestType), ("8", errors.BadRequestType)])
def test_predict_refuses_a_bad_batch_size(bundle, batch_size, error):
  with pytest.raises(error, match="batch_size must be a positive int"):
    workflow.predict(bundle, _images(), batch_size=batch_size)  # -1 gave (0, 0) logits.
  with pytest.raises(error, match="batch_size must be a positive int"):
    metrics.predict_in_batches(lambda x: x, _images(), batch_size)
  with pytest.raises(errors.BadRequest, match="multiple must be a positive int"):
    metrics.predict_in_batches(lambda x: x, _images(), 4, multiple=0)


def test_predict_of_no_images_has_a_column_per_class(bundle):
  logits = workflow.predict(bundle, _images()[:0])
  chex.assert_shape(logits, (0, 10))
  assert logits.dtype == workflow.predict(bundle, _images(3)).dtype
  result = workflow.evaluate(bundle, _images()[:0], np.zeros(0, np.int32))
  assert result.per_class.shape == (10,) and np.isnan(result.accuracy)
  chex.assert_shape(result.logits, (0, 10))


def test_predict_gives_the_same_logits_in_any_batch_size(bundle):
  whole = workflow.predict(bundle, _images(), batch_size=1024)
  np.testing.assert_allclose(workflow.predict(bundle, _images(), batch_size=5), whole,
                             rtol=1e-6)
  np.testing.assert_allclose(workflow.predict(bundle, list(_images())), whole, rtol=1e-6)


def test_evaluate_takes_labels_as_a_list(bundle):
  labels = np.arange(12) % 10
  as_array = workflow.evaluate(bundle, _images(), labels)
  as_list = workflow.evaluate(bundle, _images(), labels.tolist())  # Was AttributeError.
  np.testing.assert_array_equal(as_list.logits, as_array.logits)
  assert (as_list.accuracy, as_list.A_R) == (as_array.accuracy, as_array.A_R)
  np.testing.assert_array_equal(as_list.labels, labels)


@pytest.mark.parametrize("labels, error, phrase", [
    (lambda y: y.astype(np.float32), errors.BadRequestType, "labels must be integer class ids"),
    (lambda y: y > 4, errors.BadRequestType, "labels must be integer class ids"),
    (lambda y: np.eye(10, dtype=np.int32)[y], errors.BadRequest, "one-hot"),
    (lambda y: y[:5], errors.BadRequest, "12 images but 5 labels"),
    (lambda y: y + 5, DatasetError, "labels run from 5 to 14 but the model has 10 classes"),
])
def test_evaluate_refuses_bad_labels_before_predicting(bundle, labels, error, phrase):
  with mj.CompileClock() as clock, pytest.raises(error, match=phrase):
    workflow.evaluate(bundle, _images(), labels(np.arange(12) % 10))
  assert clock.programs == 0


def test_evaluate_refuses_bad_forgotten_classes_before_predicting(bundle):
  with mj.CompileClock() as clock, pytest.raises(errors.BadRequest, match="out of range"):
    # 7 images: a batch shape no other test compiles, so predicting would compile one.
    workflow.evaluate(bundle, _images(7), np.arange(7), forgotten=[12])
  assert clock.programs == 0


@pytest.mark.parametrize("images, phrase", [
    (lambda x: x.reshape(len(x), -1), r"got \(12, 64\); flat images\? reshape them: "
     r"images.reshape\(-1, 8, 8, 1\)"),
    (lambda x: x[..., 0], r"got \(12, 8, 8\); add the channel axis: images\[..., None\]"),
    (lambda x: x[None], r"got \(1, 12, 8, 8, 1\)"),
    (lambda x: x[0, 0, 0, 0], r"got \(\)"),
])
def test_predict_and_evaluate_name_the_input_shape_for_images_of_another_rank(
    bundle, images, phrase):
  wrong = images(_images())
  with pytest.raises(errors.BadRequest, match=r"images must have shape \(N, 8, 8, 1\).*" + phrase):
    workflow.predict(bundle, wrong)  # Was "not enough values to unpack".
  with pytest.raises(errors.BadRequest, match=r"images must have shape \(N, 8, 8, 1\)"):
    workflow.evaluate(bundle, wrong, np.arange(12) % 10)


def test_predict_still_refuses_images_too_large_or_as_floats(bundle):
  with pytest.raises(DatasetError, match="do not fit"):
    workflow.predict(bundle, np.zeros((2, 28, 28, 1), np.uint8))
  with pytest.raises(errors.BadRequestType, match="divided by 255 again"):
    workflow.predict(bundle, _images() / 255.0)


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
