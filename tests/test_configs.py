"""The config loader (mnemonic_jax.configs): packaged names and files, each with a variant,
typed and locked overrides through ml_collections, and one-line errors (errors.BadConfig)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mnemonic_jax import configs, errors, models

from cli_support import run_commands

REPO = pathlib.Path(__file__).resolve().parents[1]

#: A config file of the user's own, with variants.
USER_CONFIG = """
import ml_collections


def get_config(variant=""):
  config = ml_collections.ConfigDict(dict(
      seed=0, dataset="digits", model="mlp", model_kwargs={"hidden": (32,)}, epochs=8,
      batch_size=64, data_dir=None))
  if variant == "long":
    config.epochs = 80
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or 'long'")
  return config
"""


@pytest.fixture
def user_config(tmp_path):
  path = tmp_path / "my_config.py"
  path.write_text(USER_CONFIG)
  return path


def _one_line_error(spec, overrides=()) -> str:
  with pytest.raises(errors.BadConfig) as info:
    configs.load_config(spec, overrides)
  text = str(info.value)
  assert "\n" not in text, text
  return text


def test_packaged_name_with_variant_from_any_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # No experiments/ here: the name is the package's module.
  quick = configs.load_config("digits_mlp:quick")
  full = configs.load_config("digits_mlp")
  assert (quick.name, quick.epochs, full.epochs) == ("digits_mlp", 30, 200)
  assert quick.is_locked and quick.model_kwargs.hidden == (1000,)
  path, variant = configs.split_spec("digits_mlp:quick")
  assert path == pathlib.Path(configs.__file__).parent / "digits_mlp.py" and variant == "quick"
  expected = {"cifar10_resnet18", "cub_resnet18", "digits_mlp", "fashion_mnist_mlp",
              "fashion_mnist_vit", "imagenet_finetune", "mnist_mlp", "stn_resnet18"}
  assert set(configs.available_configs()) == expected
  for name in expected:  # Every packaged config loads and validates, quick or not.
    for spec in (name, f"{name}:quick"):
      assert configs.load_config(spec).is_locked, spec
  assert configs.load_config("imagenet_finetune:vit_tiny,quick").model == "vit_tiny"


def test_file_path_with_variant(user_config, tmp_path, monkeypatch):
  assert configs.load_config(str(user_config)).epochs == 8
  assert configs.load_config(f"{user_config}:long").epochs == 80
  monkeypatch.chdir(tmp_path)  # A relative path is read from the working folder.
  assert configs.load_config("my_config.py:long").epochs == 80
  # A file named like a packaged config is not taken for it silently (walk5 G6): refused,
  # and read as ./NAME; the packaged module is also a file like any other.
  (tmp_path / "digits_mlp").write_text(USER_CONFIG)
  with pytest.raises(configs.ConfigError, match="both a packaged config and a file"):
    configs.load_config("digits_mlp:long")
  assert configs.load_config("./digits_mlp:long").epochs == 80
  packaged = pathlib.Path(configs.__file__).parent / "digits_mlp.py"
  assert configs.load_config(f"{packaged}:quick").epochs == 30


def test_overrides_are_typed_and_the_config_locked(user_config):
  rest, overrides = configs.split_overrides(
      ["train", "--config.epochs=5", "--config.model_kwargs.hidden", "(64, 32)",
       "--config.data_dir=/data", "--config.download=True", "--config.batch_size=7",
       "--workdir", "w"])
  assert rest == ["train", "--workdir", "w"]
  config = configs.load_config(f"{user_config}:long", overrides)
  assert (config.epochs, config.model_kwargs.hidden) == (5, (64, 32))
  # data_dir is None in the file and download absent: their types come from FIELD_TYPES.
  assert (config.data_dir, config.download, config.batch_size) == ("/data", True, 7)
  assert json.loads(config.to_json())["data_dir"] == "/data"
  with pytest.raises(AttributeError):
    config.epoch = 3  # Locked: a misspelt field cannot be added.
  config.epochs = 3  # An existing one can be changed.

  text = _one_line_error(str(user_config), [("epoch", "3")])
  assert text == "unknown config field 'epoch' (--config.epoch); did you mean 'epochs'?"
  text = _one_line_error(str(user_config), [("modelkwargs.hidden", "(3,)")])
  assert "unknown config field 'modelkwargs'" in text and "did you mean 'model_kwargs'" in text
  text = _one_line_error(str(user_config), [("model_kwargs.width", "3")])
  assert "unknown config field 'model_kwargs.width'" in text and "hidden" in text
  text = _one_line_error(str(user_config), [("epochs", "five")])
  assert text.startswith("--config.epochs=five: expected a value of type int")
  text = _one_line_error("digits_mlp:quick", [("epochs", "0")])  # Parsed, then validated.
  assert text.startswith("config.epochs=0 must be an integer in [1,")


def test_override_of_an_unknown_none_field_names_the_fix(tmp_path):
  path = tmp_path / "cfg.py"
  path.write_text("import ml_collections\n\n\ndef get_config():\n"
                  "  return ml_collections.ConfigDict({'seed': 0, 'dataset': 'digits', "
                  "'model': 'mlp', 'notes': None})\n")
  text = _one_line_error(str(path), [("notes", "x")])
  assert "--config.notes" in text and "FieldReference" in text


@pytest.mark.parametrize("body, spec, words", [
    ("raise RuntimeError('boom')\n", "", "cannot import config file"),
    ("def get_config(:\n", "", "SyntaxError"),
    ("def get_config():\n  return {}['seed']\n", "", "get_config() raised KeyError: 'seed'"),
    ("def get_config(v=''):\n  raise OSError('disk')\n", ":x",
     "get_config('x') raised OSError: disk"),
    ("def get_config():\n  return None\n", "", "get_config() returned NoneType"),
    ("CONFIG = {}\n", "", "defines no get_config()"),
    ("def get_config():\n  return {}\n", ":quick", "get_config() takes no variant"),
])
def test_a_config_file_that_fails_is_one_bad_config_line(tmp_path, body, spec, words):
  path = tmp_path / "cfg.py"
  path.write_text(body)
  text = _one_line_error(f"{path}{spec}")
  assert words in text and str(path) in text, text


def test_unknown_variant_and_missing_configs(user_config, tmp_path):
  text = _one_line_error("digits_mlp:bogus")
  assert text.endswith("digits_mlp.py: get_config('bogus'): unknown variant 'bogus'; use '' "
                       "or 'quick'"), text
  text = _one_line_error(f"{user_config}:bogus")
  assert "unknown variant 'bogus'" in text
  text = _one_line_error("digits_mpl:quick")
  assert "config 'digits_mpl' does not exist" in text and "did you mean 'digits_mlp'" in text
  text = _one_line_error(str(tmp_path / "absent.py") + ":quick")
  assert "does not exist" in text and "absent.py" in text
  assert issubclass(configs.ConfigError, errors.BadConfig)


def test_loading_leaves_no_module_behind(tmp_path):
  """Each file runs in a fresh module: what one config file defined never leaks into the next."""
  first, second = tmp_path / "first.py", tmp_path / "second.py"
  first.write_text("def get_config():\n  return {'seed': 0, 'dataset': 'digits', "
                   "'model': 'mlp'}\n")
  second.write_text("X = 1\n")  # No get_config of its own.
  configs.load_config(str(first))
  assert "defines no get_config()" in _one_line_error(str(second))
  assert not [name for name in sys.modules if name.endswith("config_config")]


def test_the_packaged_configs_are_in_the_distribution():
  """setup.cfg's ``packages = find:`` with its include pattern takes the configs along."""
  setuptools = pytest.importorskip("setuptools")
  packages = setuptools.find_packages(str(REPO), include=["mnemonic_jax", "mnemonic_jax.*"])
  assert "mnemonic_jax.configs" in packages
  assert "include = mnemonic_jax, mnemonic_jax.*" in (REPO / "setup.cfg").read_text()


def _run_train(cwd: pathlib.Path, *args) -> subprocess.CompletedProcess:
  """The real ``mnemonic-jax train ARGS`` run in ``cwd``: its own process, forked after the
  imports (``cli_support.run_commands``)."""
  return run_commands({"train": dict(args=("train", *args), cwd=cwd)},
                      timeout=300)["train"].result


def test_the_command_line_reads_a_packaged_config_from_another_folder(tmp_path):
  """``--config digits_mlp:quick`` where no experiments/ folder is: found, loaded,
  overridden and validated (epochs 0 is refused only once the config is read)."""
  result = _run_train(tmp_path, "--config", "digits_mlp:quick", "--config.epochs=0",
                      "--workdir", "w", "-q")
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0] == ("mnemonic-jax: error: config.epochs=0 must be an integer in [1, "
                      "2147483647]; fix it in the config file or with --config.epochs=VALUE")
  assert not (tmp_path / "w").exists()


@pytest.mark.slow  # A real training run (~6 s of CPU); the test above reads the same config.
def test_the_command_line_trains_a_packaged_config_from_another_folder(tmp_path):
  result = _run_train(tmp_path, "--config", "digits_mlp:quick", "--config.epochs=1",
                      "--config.model_kwargs.hidden=(16,)", "--workdir", "w", "-q")
  assert result.returncode == 0, result.stderr
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel

  config = checkpointing.load_bundle(tmp_path / "w" / "bundle").config
  assert (config["name"], config["epochs"]) == ("digits_mlp", 1)
  assert list(config["model_kwargs"]["hidden"]) == [16]


def test_a_config_path_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
  fifo = tmp_path / "config.py"
  os.mkfifo(fifo)
  with pytest.raises(configs.ConfigError, match="not a regular file"):
    configs.load_config(str(fifo))


GPU_DEPTH = pathlib.Path(__file__).parents[1] / "experiments" / "configs" / "gpu_depth.py"


@pytest.mark.parametrize("variant", ["", "quick"])
def test_the_gpu_depth_config_builds_its_model_on_padded_fashion_mnist(variant):
  """experiments/configs/gpu_depth.py (issue #20's GPU run): valid, and its ResNet-18
  takes Fashion-MNIST's one channel padded to 32x32."""
  config = configs.load_config(f"{GPU_DEPTH}:{variant}")
  configs.validate_config(config)
  assert (config.dataset, config.pad_to) == ("idx:/usr/share/datasets/fashion-mnist", 32)
  model = models.create_model(config.model, 10, **config.model_kwargs)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  assert jax.eval_shape(lambda v, x: model.apply(v, x), shapes,
                        jnp.zeros((2, 32, 32, 1))).shape == (2, 10)
  with pytest.raises(configs.ConfigError, match="unknown variant"):
    configs.load_config(f"{GPU_DEPTH}:cifar")
