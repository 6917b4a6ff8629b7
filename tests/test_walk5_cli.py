"""Faults a fifth round of fresh users found on the command line, through the real command.

* G1 (data lost): ``train --config.pretrained=B --compilation-cache B/...`` wrote JAX's
  programs into the pretrained bundle B, which then no longer loaded: the check of walk4
  F1 saw the command's path options, not the paths its config names.
* G2 (silently wrong): walk4 F7's digest covered the file calling register_model, not the
  module of the user's package defining the model's class.
* G3: pretrained weights of another model were refused after the workdir was made.
* G4: too many open files (``ulimit -n``) during a save was a traceback, exit 1.
* G5 (data lost): train wrote its lock and metrics log over a config file or pretrained
  weights at those paths (only WORKDIR/train and WORKDIR/bundle were checked).
* G6 (silently wrong): a packaged config's name that is also a file in the current folder
  ran the file.
* G7 (silently wrong): a bundle holding a second bundle at ``bundle/`` was read as the
  outer one.
* G9 (silently wrong): a run resumed under another JAX_DEFAULT_PRNG_IMPL, without a word.
* G10: JAX_NUMPY_RANK_PROMOTION=raise in the environment crashed the commands.
* G11 (data lost): a link at WORKDIR/.metrics.jsonl.tmp was written through; G12: a folder
  at WORKDIR/metrics.jsonl was named by the temporary file's name.
"""

import pathlib
import shutil
import sys

import jax
import pytest

from mnemonic_jax import checkpointing, configs, errors, models, run_metrics
from mnemonic_jax.checkpointing import CheckpointError
from mnemonic_jax.cli import outcome
from mnemonic_jax.workflow import run_records

from cli_support import assert_refused, run_commands, small_config


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def test_a_cache_folder_inside_what_the_train_config_reads_is_refused(bundle, tmp_path):
  work = tmp_path / "work"
  ran = run_commands({"train": {
      "args": ["train", "--config", "digits_mlp:quick", f"--config.pretrained={bundle}",
               "--workdir", work, "--compilation-cache", bundle / "meta" / "cache", "-q"],
      "watch": [bundle]}})["train"]
  assert_refused(ran.result, f"(the compilation cache) lies inside config.pretrained {bundle}")
  assert ran.before == ran.after and not work.exists()


LAYERS = """
import flax.linen as nn

class Net(nn.Module):
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
"""


def test_the_file_defining_a_registered_model_is_watched_too(tmp_path, monkeypatch):
  """G2: only the file calling register_model was hashed (walk4 F7's fix): the model's
  class in another module of the user's package was edited without a word."""
  package = tmp_path / "walk5_pkg"
  package.mkdir()
  (package / "layers.py").write_text(LAYERS)
  (package / "__init__.py").write_text("import mnemonic_jax\nfrom walk5_pkg.layers import Net\n"
                                       "mnemonic_jax.register_model('walk5_net', Net)\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  models.load_model_source("walk5_net", {"import": "walk5_pkg"})
  recorded = models.model_source("walk5_net")
  assert set(recorded) == {"import", "sha256"}
  for registry in (models._REGISTRY, models._SOURCES):  # pylint: disable=protected-access
    monkeypatch.delitem(registry, "walk5_net")
  for module in ("walk5_pkg", "walk5_pkg.layers"):  # As a later process imports them.
    monkeypatch.delitem(sys.modules, module)
  (package / "layers.py").write_text(LAYERS.replace("nn.Dense(self", "2 * nn.Dense(self"))
  with pytest.warns(errors.ModelSourceChangedWarning, match=r"layers\.py, changed since"):
    models.load_model_source("walk5_net", recorded)


def test_too_many_open_files_is_the_machine_refusing(tmp_path):
  """G4: ``ulimit -n 20`` during forget's save: a 126-line TensorStore traceback, exit 1
  (EMFILE arrives as TensorStore's ValueError with its os_error_code)."""
  error = ValueError("RESOURCE_EXHAUSTED: Error opening file: Too many open files "
                     "[os_error_code='24']")
  line = outcome.environment_line(error, "forget", tmp_path / "out", outcome.Run())
  assert line == (f"cannot write {tmp_path / 'out'}: Too many open files; nothing was "
                  "written: raise the open-files limit (ulimit -n) and run the same command "
                  "again")


def test_train_never_writes_its_lock_or_log_over_what_it_reads(bundle, tmp_path):
  """G5 (data lost): a config file or pretrained weights at WORKDIR/metrics.jsonl or
  WORKDIR/.lock were overwritten by the run's log or its PID, exit 0."""
  config_work, pretrained_work = tmp_path / "c", tmp_path / "p"
  config_work.mkdir()
  pretrained_work.mkdir()
  config = config_work / "metrics.jsonl"
  config.write_text("from mnemonic_jax.configs import load_config\n"
                    "def get_config(variant=''):\n  return load_config('digits_mlp:quick')\n")
  shutil.copytree(bundle, pretrained_work / ".lock")
  ran = run_commands({
      "config": {"args": ["train", "--config", config, "--workdir", config_work, "-q"],
                 "watch": [config_work]},
      "pretrained": {"args": ["train", "--config", "digits_mlp:quick",
                              f"--config.pretrained={pretrained_work / '.lock'}",
                              "--workdir", pretrained_work, "-q"], "watch": [pretrained_work]}})
  assert_refused(ran["config"].result, f"train's metrics {config} is the input config file")
  assert_refused(ran["pretrained"].result, "train's lock")
  for name in ("config", "pretrained"):
    assert ran[name].before == ran[name].after, name


def test_a_packaged_config_name_that_is_also_a_file_here_is_refused(tmp_path, monkeypatch):
  """G6: ``--config digits_mlp:quick`` ran a file named ``digits_mlp`` in the current
  folder instead of the packaged config, without a word."""
  (tmp_path / "digits_mlp").write_text(
      "from mnemonic_jax.configs import digits_mlp\n"
      "def get_config(variant=''):\n  c = digits_mlp.get_config('quick')\n"
      "  c.epochs = 2\n  return c\n")
  monkeypatch.chdir(tmp_path)
  for spec in ("digits_mlp", "digits_mlp:quick"):
    with pytest.raises(configs.ConfigError, match=f"write ./{spec} for the file"):
      configs.load_config(spec)
  assert configs.load_config("./digits_mlp").epochs == 2


def test_a_bundle_holding_another_bundle_is_refused(small_trained_copy, tmp_path):
  """G7 (silently wrong): ``cp -a w/bundle base`` run twice left the new model at
  ``base/bundle``; ``--checkpoint base`` read the old, outer one without a word."""
  outer = small_trained_copy()
  shutil.copytree(outer, outer / "bundle")
  with pytest.raises(CheckpointError, match=r"is a bundle and also holds another, .*bundle"):
    checkpointing.load_bundle(outer)
  assert checkpointing.load_bundle(outer / "bundle").num_classes == 10


def test_the_metrics_log_is_never_written_through_a_link_nor_over_a_folder(tmp_path):
  """G11 (data lost): a symbolic link at WORKDIR/.metrics.jsonl.tmp was written through
  (a file outside the workdir overwritten by the log) and then moved into place as the
  log; G12: a folder at WORKDIR/metrics.jsonl was named as '.metrics.jsonl.tmp: Is a
  directory', with no fix."""
  precious = tmp_path / "user.txt"
  precious.write_text("precious")
  work = tmp_path / "work"
  work.mkdir()
  (work / ".metrics.jsonl.tmp").symlink_to(precious)
  log = run_metrics.MetricsLog(work, resume_step=None)
  log.write(1, {"loss": 1.0})
  log.close()
  assert precious.read_text() == "precious"
  assert not (work / "metrics.jsonl").is_symlink() and (work / "metrics.jsonl").is_file()
  other = tmp_path / "other"
  (other / "metrics.jsonl").mkdir(parents=True)
  with pytest.raises(errors.BadCheckpoint, match=r"metrics.jsonl is a directory, not the "):
    run_metrics.MetricsLog(other, resume_step=None)


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_jax_strictness_switches_of_the_user_do_not_stop_the_tool(bundle, tmp_path):
  """G10: JAX_NUMPY_RANK_PROMOTION=raise (or JAX_NUMPY_DTYPE_PROMOTION=strict) in the
  environment, set for the user's own code, crashed the commands with a traceback."""
  ran = run_commands({
      "forget": {"args": ["forget", "--checkpoint", bundle, "--classes", "3", "--output",
                          tmp_path / "out", "-q"]},
      "evaluate": {"args": ["evaluate", "--checkpoint", tmp_path / "out", "-q"]}},
      env={"JAX_NUMPY_RANK_PROMOTION": "raise", "JAX_NUMPY_DTYPE_PROMOTION": "strict"})
  for name in ("forget", "evaluate"):
    assert ran[name].result.returncode == 0, ran[name].result.stderr
  assert "accuracy" in ran["evaluate"].result.stdout


def test_a_run_is_resumed_only_with_the_random_generator_it_was_trained_with(small_trained_copy):
  """G9 (silently wrong): resumed under another JAX_DEFAULT_PRNG_IMPL, a run ended neither
  as the interrupted one would have nor as its own, without a word."""
  workdir = small_trained_copy().parent
  step, record = checkpointing.read_step_metadata(workdir / "train")
  assert record["metadata"][run_records.PRNG] == jax.config.jax_default_prng_impl
  config = run_records.to_plain(small_config())
  other = {**record["metadata"], run_records.PRNG: "rbg"}
  with checkpointing.TrainCheckpointer(workdir / "train") as ckpt:
    run_records.check_same_run(
        config, checkpointing.TrainCheckpoint(step, None, record["metadata"]), ckpt, step,
        workdir)
    with pytest.raises(errors.BadRequest, match="resume with JAX_DEFAULT_PRNG_IMPL="):
      run_records.check_same_run(
          config, checkpointing.TrainCheckpoint(step, None, other), ckpt, step, workdir)


def test_pretrained_weights_that_do_not_fit_are_refused_before_the_workdir(bundle, tmp_path):
  """G3: a config.pretrained of another model was refused only after WORKDIR/.lock and
  WORKDIR/train/ were made ('the config is validated before WORKDIR is touched')."""
  work = tmp_path / "work"
  ran = run_commands({"train": {"args": [
      "train", "--config", "digits_mlp:quick", "--config.model_kwargs.hidden=(16,)",
      f"--config.pretrained={bundle}", "--workdir", work, "-q"]}})["train"]
  assert_refused(ran.result, "pretrained Dense_0/bias has shape (32,), the model needs (16,)")
  assert not work.exists()
