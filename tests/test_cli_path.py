"""The user's path of issue #9, through the real ``mnemonic-jax`` command.

* ``forget``/``evaluate``/``attach-codes --checkpoint WORKDIR`` take a ``train`` workdir.
* A model the user registers in a config file or a package goes through ``train``,
  ``forget`` and ``evaluate`` with no extra work: the bundle records where it comes from.
* ``import`` states the normalisation it assumed and asks for it when it cannot know.
* Classes a dataset never shows (any class, the last included) are evaluated as absent.
* Offline tfds: ``--data-dir`` and ``--download`` on every command taking ``--dataset``,
  and messages naming only options that exist (``tfds.testing.mock_data``, no network).
* A warning when the codes do not look like the model's.
* ``demo`` refuses to overwrite without ``--force``; ``train`` on a finished workdir says
  so and writes nothing; every run writes ``metrics.jsonl`` (and TensorBoard through CLU
  when it is installed).

One small bundle (digits, MLP 64-32-10) is trained by the real ``train`` command once per
worker; the other commands read it.
"""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mnemonic_jax import checkpointing
from mnemonic_jax.data import load_dataset

from cli_support import (REPO, assert_refused, compilation_cache, run_cli, run_commands,
                         tree_digest, write_idx)

TFDS = pytest.importorskip("tensorflow_datasets")
HAS_TF = __import__("importlib").util.find_spec("tensorflow") is not None

#: A digits MLP (64-32-10) that trains in seconds (22 steps an epoch) and classifies every
#: code right; ``log_every`` 7 puts a line of metrics.jsonl at steps 7, 14, ... and the
#: last, 176.
SMALL_CONFIG = """
import ml_collections
{prelude}

def get_config():
  return ml_collections.ConfigDict(dict(
      seed=0, dataset="digits", model={model!r}, model_kwargs={model_kwargs!r}, epochs=8,
      batch_size=64, learning_rate=0.1, momentum=0.9, weight_decay=5e-4, t_mix=0.1,
      checkpoint_every=1000, log_every=7))
"""

#: A Flax module of the user's own, registered where it is defined.
USER_MODEL = """
import flax.linen as nn
import mnemonic_jax


class TinyNet(nn.Module):
  num_classes: int
  width: int = 16

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(self.width)(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.num_classes)(x)


mnemonic_jax.register_model({name!r}, TinyNet)
"""


def write_config(path: pathlib.Path, model: str = "mlp", model_kwargs=None,
                 prelude: str = "") -> pathlib.Path:
  path.write_text(SMALL_CONFIG.format(prelude=prelude, model=model,
                                      model_kwargs=model_kwargs or {"hidden": (32,)}))
  return path


def assert_ok(result: subprocess.CompletedProcess) -> str:
  assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
  assert result.stderr == "", result.stderr
  return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
  """A finished ``train`` workdir (its bundle in ``bundle/``)."""
  root = tmp_path_factory.mktemp("train")
  assert_ok(run_cli("train", "--config", write_config(root / "small.py"), "--workdir",
                    root / "run", "-q"))
  return root / "run"


# --------------------------------------------------------------------------------------
# A train workdir as --checkpoint.


@pytest.mark.slow  # Heavy (command runs); -m slow runs it.
def test_forget_evaluate_and_attach_take_a_train_workdir(workdir, tmp_path):
  before = tree_digest(workdir)
  out = assert_ok(run_cli("forget", "--checkpoint", workdir, "--classes", "3", "--output",
                          tmp_path / "no3", "-q"))
  assert f"from {workdir / 'bundle'}" in out
  assert "codes as their class" not in out  # Trained with its codes: all classified right.
  assert checkpointing.load_bundle(tmp_path / "no3").forgotten_classes == (3,)
  report = json.loads(assert_ok(run_cli("evaluate", "--checkpoint", workdir, "--json", "-q")))
  assert report["checkpoint"] == str(workdir / "bundle") and report["accuracy"] > 50
  refused = run_cli("attach-codes", "--checkpoint", workdir, "--output",
                    workdir / "bundle" / "x", "--epochs", "1", "-q")
  assert_refused(refused, f"would write into the input --checkpoint {workdir / 'bundle'}")
  assert tree_digest(workdir) == before


@pytest.mark.slow  # Needs a trained workdir (a train command); -m slow runs it.
def test_an_unfinished_workdir_is_refused_in_the_users_words(workdir, tmp_path):
  unfinished = tmp_path / "unfinished"
  shutil.copytree(workdir / "train", unfinished / "train")
  line = assert_refused(run_cli("forget", "--checkpoint", unfinished, "--classes", "3",
                                "--output", tmp_path / "out", "-q"),
                        "is a train workdir whose run has not finished")
  assert "save_bundle" not in line and "run the same 'mnemonic-jax train'" in line
  assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# A model the user registered.


def _sha256(path: pathlib.Path) -> str:
  """The hex SHA-256 of a file's bytes (what a bundle records of its model's source)."""
  return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_a_model_registered_in_the_config_file_goes_through_every_command(tmp_path):
  config = write_config(tmp_path / "mine.py", model="tiny_net", model_kwargs={"width": 16},
                        prelude=USER_MODEL.format(name="tiny_net"))
  assert_ok(run_cli("train", "--config", config, "--config.epochs=1", "--workdir",
                    tmp_path / "run", "-q"))
  meta = json.loads((tmp_path / "run" / "bundle" / "meta" / "metadata").read_text())
  assert meta["model_name"] == "tiny_net"
  assert meta["model_source"] == {"file": str(config), "sha256": _sha256(config)}
  assert_ok(run_cli("forget", "--checkpoint", tmp_path / "run", "--classes", "3",
                    "--output", tmp_path / "no3", "--lambda1", "1e-3", "--lambda2", "10", "-q"))
  report = json.loads(assert_ok(run_cli("evaluate", "--checkpoint", tmp_path / "no3",
                                        "--json", "-q")))
  assert report["forgotten"] == [3]

  # The source is gone: one line naming it.
  config.rename(tmp_path / "moved.py")
  assert_refused(run_cli("evaluate", "--checkpoint", tmp_path / "no3", "-q"),
                 f"model 'tiny_net' is not registered and its source file {config} does not "
                 "exist")


@pytest.mark.slow  # ~7 s; the config-file registration above takes the same commands.
def test_a_model_registered_by_a_package_is_imported_by_name(tmp_path):
  package = tmp_path / "site" / "userpkg"
  package.mkdir(parents=True)
  (package / "__init__.py").write_text(USER_MODEL.format(name="pkg_net"))
  env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "site")])}
  config = write_config(tmp_path / "cfg.py", model="pkg_net", model_kwargs={"width": 8},
                        prelude="import userpkg")
  assert_ok(run_cli("train", "--config", config, "--config.epochs=1", "--workdir",
                    tmp_path / "run", "-q", env=env))
  meta = json.loads((tmp_path / "run" / "bundle" / "meta" / "metadata").read_text())
  assert meta["model_source"] == {"import": "userpkg",
                                  "sha256": _sha256(package / "__init__.py")}
  report = json.loads(assert_ok(run_cli("evaluate", "--checkpoint", tmp_path / "run",
                                        "--json", "-q", env=env)))
  assert report["num_examples"] == 359


# --------------------------------------------------------------------------------------
# import: the normalisation.


def _import_args(workdir: pathlib.Path, root: pathlib.Path, codes=None) -> list:
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  bundle = checkpointing.load_bundle(workdir)
  (root / "params.msgpack").write_bytes(
      flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params)))
  np.save(root / "codes.npy", np.asarray(bundle.codes) if codes is None else codes)
  return ["import", "--params", root / "params.msgpack", "--codes", root / "codes.npy",
          "--model", "mlp", "--model-kwargs", '{"hidden": [32]}', "--num-classes", "10",
          "--input-shape", "8,8,1", "-q"]


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_import_asks_for_the_normalisation_or_states_it(workdir, tmp_path):
  args = _import_args(workdir, tmp_path)
  before = tree_digest(tmp_path)
  assert_refused(run_cli(*args, "--output", tmp_path / "a"),
                 "import needs the normalisation the model was trained with")
  assert_refused(run_cli(*args, "--std", "0.3", "--output", tmp_path / "a"),
                 "--std needs --mean too")
  assert tree_digest(tmp_path) == before

  out = assert_ok(run_cli(*args, "--dataset", "digits", "--output", tmp_path / "b"))
  stats = load_dataset("digits", "train").info
  assert (f"normalisation: mean {stats.mean[0]:g}, std {stats.std[0]:g} (the training "
          "statistics of digits" in out)
  imported = checkpointing.load_bundle(tmp_path / "b")
  assert (imported.mean, imported.std) == (stats.mean, stats.std)
  out = assert_ok(run_cli(*args, "--mean", "0", "--std", "1", "--output", tmp_path / "c"))
  assert "normalisation: mean 0, std 1 (given)" in out


# --------------------------------------------------------------------------------------
# Classes a dataset never shows.


@pytest.mark.slow  # Needs a trained workdir (a train command); -m slow runs it.
@pytest.mark.parametrize("missing", [0, 9])
def test_a_class_the_data_never_show_is_evaluated_as_absent(workdir, tmp_path, missing):
  test = load_dataset("digits", "test")
  keep = test.labels != missing
  data = tmp_path / "data"
  write_idx(data, "test", test.images[keep, ..., 0], test.labels[keep])
  result = run_cli("evaluate", "--checkpoint", workdir, "--dataset", f"idx:{data}", "--json",
                   "-q")
  report = json.loads(assert_ok(result))
  assert report["absent"] == [missing] and report["num_examples"] == int(keep.sum())
  row = report["per_class"][missing]
  assert row["absent"] and row["examples"] == 0 and row["accuracy"] is None
  out = assert_ok(run_cli("forget", "--checkpoint", workdir, "--classes", str(missing),
                          "--output", tmp_path / "out", "--dataset", f"idx:{data}",
                          "--lambda1", "1e-3", "--lambda2", "10", "-q"))
  assert f"(absent: the data hold no image of class {missing})" in out
  assert "E_F (error on forgotten classes):    - -> -" in out


# --------------------------------------------------------------------------------------
# Offline tfds.


@pytest.mark.parametrize("command", ["forget", "evaluate", "import", "attach-codes"])
def test_every_command_taking_a_dataset_takes_data_dir_and_download(command):
  result = subprocess.run([sys.executable, "-m", "mnemonic_jax.cli", command, "--help"],
                          capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
  assert result.returncode == 0, result.stderr
  for option in ("--dataset", "--data-dir", "--download"):
    assert option in result.stdout, (command, option)


@pytest.mark.slow  # Heavy (command runs); -m slow runs it.
def test_a_tfds_dataset_not_prepared_is_refused_at_once_naming_real_options(workdir,
                                                                           tmp_path):
  empty = tmp_path / "tfds"
  line = assert_refused(run_cli("evaluate", "--checkpoint", workdir, "--dataset", "tfds:mnist",
                                "--data-dir", empty, "-q", timeout=60),
                        "tfds:mnist is not prepared at")
  assert "--download" in line and "--data-dir DIR" in line and "download=True" not in line
  config = write_config(tmp_path / "cfg.py")
  line = assert_refused(run_cli("train", "--config", config, "--config.dataset=tfds:mnist",
                                f"--config.data_dir={empty}", "--workdir", tmp_path / "run",
                                "-q", timeout=60),
                        "--config.download=True")
  assert " --download" not in line and "--config.data_dir=DIR" in line
  if not HAS_TF:  # Downloading needs TensorFlow: said at once, no network touched.
    assert_refused(run_cli("forget", "--checkpoint", workdir, "--classes", "3", "--output",
                           tmp_path / "out", "--dataset", "tfds:mnist", "--data-dir", empty,
                           "--download", "-q", timeout=60),
                   "needs TensorFlow")
  assert not empty.exists() and not (tmp_path / "out").exists()


MOCK_TFDS = """
import sys
from unittest import mock
import tensorflow_datasets as tfds
from mnemonic_jax import cli
with tfds.testing.mock_data(num_examples=12), mock.patch.object(
    tfds.core.DatasetBuilder, "is_prepared", return_value=True):
  sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_import_and_evaluate_read_tfds_from_the_data_dir_given(tmp_path):
  """``tfds.testing.mock_data`` serves random MNIST-shaped examples in the subprocess."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  from mnemonic_jax.models import create_model  # pylint: disable=import-outside-toplevel

  model = create_model("mlp", 10, hidden=(8,))
  params = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))["params"]
  (tmp_path / "p.msgpack").write_bytes(
      flax.serialization.to_bytes(jax.tree.map(np.asarray, params)))
  np.save(tmp_path / "codes.npy", np.zeros((10, 28, 28, 1), np.float32))
  env = {**os.environ, "PYTHONPATH": str(REPO), "MNEMONIC_JAX_CACHE_DIR": compilation_cache()}

  def run(*args):
    return subprocess.run([sys.executable, "-c", MOCK_TFDS, *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
                          check=False)

  data_dir = tmp_path / "tfds"
  out = assert_ok(run("import", "--params", tmp_path / "p.msgpack", "--codes",
                      tmp_path / "codes.npy", "--model", "mlp", "--model-kwargs",
                      '{"hidden": [8]}', "--num-classes", "10", "--input-shape", "28,28,1",
                      "--dataset", "tfds:mnist", "--data-dir", data_dir, "--output",
                      tmp_path / "imported", "-q"))
  assert "normalisation: mean 0.1307, std 0.3081 (the training statistics of tfds:mnist" in out
  report = json.loads(assert_ok(run("evaluate", "--checkpoint", tmp_path / "imported",
                                    "--data-dir", data_dir, "--json", "-q")))
  assert report["dataset"] == "tfds:mnist" and report["num_examples"] == 12


# --------------------------------------------------------------------------------------
# Codes that do not look like the model's.


@pytest.mark.slow  # Heavy (command runs); -m slow runs it.
def test_forget_warns_when_the_model_does_not_know_its_codes(workdir, tmp_path):
  """The model of ``workdir`` with other codes (its own: no warning, see the first test)."""
  other = np.random.default_rng(1).normal(size=(10, 8, 8, 1)).astype(np.float32)
  args = _import_args(workdir, tmp_path, codes=other)
  assert_ok(run_cli(*args, "--mean", "0.3", "--std", "0.4", "--output", tmp_path / "other"))
  out = assert_ok(run_cli("forget", "--checkpoint", tmp_path / "other", "--classes", "3",
                          "--output", tmp_path / "no3", "--lambda1", "1e-3", "--lambda2", "10",
                          "-q"))
  assert "warning: before forgetting, the model classified only" in out
  assert "probably not trained with these codes" in out
  history = checkpointing.load_bundle(tmp_path / "no3").history
  assert any("probably not trained with these codes" in w for w in history[-1]["warnings"])


# --------------------------------------------------------------------------------------
# demo, train on a finished workdir, metrics.


def test_demo_refuses_to_overwrite_without_force(tmp_path):
  out = tmp_path / "demo"
  out.mkdir()
  (out / "per_class_accuracy.png").write_bytes(b"an earlier chart")
  (out / "notes.txt").write_text("mine")
  ran = run_commands({"demo": dict(  # Its own process, forked after the imports.
      args=("demo", "--output-dir", out, "--epochs", "1", "-q"), watch=[tmp_path])})["demo"]
  assert_refused(ran.result, "already holds per_class_accuracy.png of an earlier demo; "
                 "pass --force")
  assert ran.after == ran.before


@pytest.mark.slow  # Needs a trained workdir (a train command); -m slow runs it.
def test_train_on_a_finished_workdir_says_so_and_writes_nothing(workdir):
  before = tree_digest(workdir)
  out = assert_ok(run_cli("train", "--config", workdir.parent / "small.py", "--workdir",
                          workdir, "-q"))
  assert f"{workdir} is finished" in out and "test accuracy" in out
  assert tree_digest(workdir) == before


@pytest.mark.slow  # Needs a trained workdir (a train command); -m slow runs it.
def test_train_writes_the_step_metrics(workdir):
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines] == [*range(7, 176, 7), 176]
  for record in lines:
    assert {"epoch", "seconds", "loss", "image_loss", "code_loss", "accuracy"} <= set(record)
  assert lines[-1]["epoch"] == 8.0 and 0 <= lines[-1]["accuracy"] <= 1
  assert not (workdir / "tensorboard").exists()  # CLU is not installed here.


#: A stand-in for CLU's metric writers: records every call in $FAKE_CLU_LOG.
FAKE_CLU = """
import json, os

def _log(*call):
  with open(os.environ["FAKE_CLU_LOG"], "a") as f:
    f.write(json.dumps(call) + "\\n")

class SummaryWriter:
  def __init__(self, logdir):
    _log("SummaryWriter", logdir)
  def write_scalars(self, step, scalars):
    _log("write_scalars", step, sorted(scalars))
  def write_hparams(self, hparams):
    _log("write_hparams", sorted(hparams))
  def flush(self):
    _log("flush")
  def close(self):
    _log("close")

def AsyncWriter(writer):
  return writer
"""


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_train_writes_tensorboard_summaries_through_clu_when_installed(workdir, tmp_path):
  site = tmp_path / "site" / "clu"
  site.mkdir(parents=True)
  (site / "__init__.py").write_text("")
  (site / "metric_writers.py").write_text(textwrap.dedent(FAKE_CLU))
  log = tmp_path / "clu.log"
  env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "site")]),
         "FAKE_CLU_LOG": str(log)}
  assert_ok(run_cli("train", "--config", workdir.parent / "small.py", "--config.epochs=2",
                    "--workdir", tmp_path / "run", "-q", env=env))
  calls = [json.loads(line) for line in log.read_text().splitlines()]
  assert calls[0] == ["SummaryWriter", str(tmp_path / "run" / "tensorboard")]
  assert calls[1][0] == "write_hparams" and "learning_rate" in calls[1][1]
  assert [c[1] for c in calls if c[0] == "write_scalars"] == [7, 14, 21, 28, 35, 42, 44]
  assert calls[-2:] == [["flush"], ["close"]]


def test_gitignore_covers_what_the_readme_commands_write():
  if shutil.which("git") is None or not (REPO / ".git").exists():
    pytest.skip("not a git checkout")
  written = ["mnemonic-demo/trained/meta/metadata", "mnemonic-demo/per_class_accuracy.png",
             "runs/digits/bundle/meta/metadata", "runs/experiments/digits_mlp.md",
             "w/bundle/meta/metadata", "w-no3/meta/metadata", "w-no3-paper/meta/metadata"]
  result = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=REPO,
                          capture_output=True, text=True, check=False)
  assert sorted(result.stdout.split()) == sorted(written), result.stderr
