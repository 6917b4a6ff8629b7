"""Faults a fourth round of fresh users found on the command line, through the real command.

* F1 (data lost): a compilation cache folder (``--compilation-cache``,
  ``$MNEMONIC_JAX_CACHE_DIR``) inside the input bundle: the command wrote JAX's programs
  into the input, exit 0, and the bundle no longer loaded ("not among the files recorded").
  A cache folder that is or lies inside any path the command reads or writes is refused
  in one line, before anything is created.
* F2: the cache folder was created before the command's checks, so a refused command left
  it behind (and inside the output or a workdir, the tool then refused its own leftover as
  a damaged checkpoint). A folder made for a command that compiled nothing is removed.
* F3: a report lost after ``demo`` named the chart as the bundle to evaluate.
* F4: ``forget --dataset`` refused a class the bundle had forgotten before ("duplicated
  class ids"), which it takes with a warning without ``--dataset``.
* F5: an ``idx:DIR`` holding ``X`` and ``X.gz`` that differ: one was read silently.
* F6: a workdir whose ``bundle`` was a file was called unfinished ("run train again").
* F7: a registered model's source file edited after training: later commands built the
  edited model on the bundle's weights without a word. The file's SHA-256 is recorded.
* F8: ``import`` cast integer parameters to float32 silently and blamed the codes.
* F9: a MemoryError while reading a bundle was a traceback (exit 1), not one line.
* F10: integers with `_` taken by some options, a JSON key given twice taken, --data-dir
  ignored, a file as --workdir called "another output".
"""

import gzip
import hashlib
import pathlib
import shutil
import warnings

import flax.serialization
import jax
import numpy as np
import pytest

from mnemonic_jax import checkpointing, errors, models, workflow
from mnemonic_jax.checkpointing import CheckpointError
from mnemonic_jax.cli import outcome
from mnemonic_jax.workflow import training_run
from mnemonic_jax.data import DatasetError
from mnemonic_jax.data.idx import load_idx

from cli_support import assert_refused, run_commands, write_idx

INSIDE = "lies inside"


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def test_a_cache_folder_inside_what_a_command_reads_or_writes_is_refused(bundle, tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  cases = {
      "inside the input": (["evaluate", "--checkpoint", bundle, "--compilation-cache",
                            bundle / "arrays" / "d"], "--checkpoint"),
      "the input itself": (["forget", "--checkpoint", bundle, "--classes", "3", "--output",
                            out, "--compilation-cache", bundle], "--checkpoint"),
      "the output": (["forget", "--checkpoint", bundle, "--classes", "3", "--output", out,
                      "--compilation-cache", out], "--output"),
      "inside the output": (["forget", "--checkpoint", bundle, "--classes", "3", "--output",
                             out, "--compilation-cache", out / "arrays" / "d"], "--output"),
      "inside a workdir": (["train", "--config", "digits_mlp:quick", "--workdir", work,
                            "--compilation-cache", work / "train" / "200"], "--workdir"),
  }
  ran = run_commands({name: {"args": [*args, "-q"], "watch": [bundle]}
                      for name, (args, _) in cases.items()})
  for name, (args, what) in cases.items():
    line = assert_refused(ran[name].result, INSIDE)
    assert f"(--compilation-cache) {INSIDE} {what} " in line, (name, line)
    assert ran[name].before == ran[name].after, name
    assert not out.exists() and not work.exists(), name


def test_a_cache_folder_from_the_variable_inside_the_input_is_refused(bundle, tmp_path):
  cache = bundle / "meta"
  ran = run_commands({"forget": {"args": ["forget", "--checkpoint", bundle, "--classes", "3",
                                          "--output", tmp_path / "out", "-q"],
                                 "watch": [bundle]}},
                     env={"MNEMONIC_JAX_CACHE_DIR": str(cache)})["forget"]
  assert_refused(ran.result, f"($MNEMONIC_JAX_CACHE_DIR) {INSIDE} --checkpoint")
  assert ran.before == ran.after and not (tmp_path / "out").exists()


def test_a_refused_command_leaves_no_cache_folder_behind(bundle, tmp_path):
  cache = tmp_path / "cache" / "sub"
  ran = run_commands({
      "refused": {"args": ["forget", "--checkpoint", bundle, "--classes", "99", "--output",
                           tmp_path / "out", "--compilation-cache", cache, "-q"]},
      "compiled": {"args": ["evaluate", "--checkpoint", bundle, "--compilation-cache",
                            tmp_path / "kept", "-q"]}})
  assert_refused(ran["refused"].result, "out of range")
  assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
  assert ran["compiled"].result.returncode == 0, ran["compiled"].result.stderr
  assert any(p.name.startswith("jit_") for p in (tmp_path / "kept").iterdir())


def test_a_lost_report_names_the_bundles_to_evaluate_not_the_demo_chart(tmp_path):
  """F3: ``demo | head -1`` ended with "'mnemonic-jax evaluate --checkpoint
  .../per_class_accuracy.png' reads it" and called the chart's history the record."""
  trained, forgotten, chart = tmp_path / "trained", tmp_path / "forgotten", tmp_path / "c.png"
  trained.mkdir()
  forgotten.mkdir()
  chart.write_bytes(b"png")
  run = outcome.Run(written=[trained, forgotten, chart])
  status, line = outcome.report_lost_line(run, outcome.ReportNotWritten(BrokenPipeError(32, "")))
  assert status == outcome.EXIT_REPORT_LOST
  assert line.endswith(f"were written and are complete (their history records what was done; "
                       f"'mnemonic-jax evaluate --checkpoint {forgotten}' reads it)"), line
  run = outcome.Run(written=[chart])
  _, line = outcome.report_lost_line(run, outcome.ReportNotWritten(BrokenPipeError(32, "")))
  assert line.endswith(f"{chart} was written and is complete"), line


def test_forgetting_a_class_again_with_a_dataset_is_taken_as_without_one(bundle, tmp_path):
  """F4: with ``--dataset`` a second request for a class the bundle already forgot was
  refused "forgotten: duplicated class ids in [3, 3]"; without it, taken with a warning."""
  once, twice = tmp_path / "once", tmp_path / "twice"
  ran = run_commands({
      "once": {"args": ["forget", "--checkpoint", bundle, "--classes", "3", "--output", once,
                        "-q"]},
      "twice": {"args": ["forget", "--checkpoint", once, "--classes", "3,4", "--output", twice,
                         "--dataset", "digits", "-q"]}})
  result = ran["twice"].result
  assert result.returncode == 0, result.stderr
  assert "already forgotten by an earlier request" in result.stdout + result.stderr
  assert "A_R (accuracy on remaining classes)" in result.stdout


@pytest.mark.parametrize("other", ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte.gz"])
def test_an_idx_folder_with_two_files_of_one_split_is_refused(tmp_path, other):
  """F5: ``X`` beside ``X.gz`` (or both name styles) with other labels: one was read
  silently (accuracy 0.65% on shifted labels, exit 0)."""
  images = np.zeros((4, 2, 2), np.uint8)
  write_idx(tmp_path, "test", images, np.arange(4))
  with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz") as f:
    (tmp_path / other).write_bytes(f.read()[:-1] + b"\x09")  # The last label changed.
  with pytest.raises(DatasetError, match=r"holds 2 files of the test labels \(t10k-labels"):
    load_idx(tmp_path, "test")
  (tmp_path / other).unlink()
  assert load_idx(tmp_path, "test").labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["a file", "a symbolic link", "a folder without"])
def test_a_workdir_whose_bundle_is_something_else_is_named_for_it(small_trained_copy, kind):
  """F6: a finished workdir whose ``bundle`` is a file: ``evaluate`` said the run had not
  finished and to run train again (which refuses: "move it elsewhere")."""
  workdir = small_trained_copy().parent
  shutil.rmtree(workdir / "bundle")
  if kind == "a file":
    (workdir / "bundle").write_text("")
  elif kind == "a symbolic link":
    (workdir / "bundle").symlink_to(workdir / "absent")
  else:
    (workdir / "bundle").mkdir()
  with pytest.raises(CheckpointError, match=f"its bundle/ is {kind}.*move it elsewhere"):
    checkpointing.load_bundle(workdir)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_])
def test_import_refuses_parameters_that_are_not_floating_point(tmp_path, dtype):
  """F8: integer parameters were cast to float32 silently; the broken model (10% right)
  was then blamed on the codes ("attach codes")."""
  model = models.create_model("mlp", 3, hidden=(8,))
  params = model.init(jax.random.key(0), np.zeros((1, 4, 4, 1), np.float32))["params"]
  params_file = tmp_path / "p.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(
      jax.tree.map(lambda x: np.asarray(x).astype(dtype), params)))
  with pytest.raises(CheckpointError, match=f"params do not fit .*{np.dtype(dtype).name}"):
    checkpointing.import_params(
        params_file, np.zeros((3, 4, 4, 1), np.float32), model_name="mlp",
        model_kwargs={"hidden": [8]}, num_classes=3, input_shape=(4, 4, 1),
        output=tmp_path / "out", mean=(0.0,), std=(1.0,))
  assert not (tmp_path / "out").exists()


def test_pretrained_weights_that_are_not_floating_point_are_refused():
  """F8's kind in fine-tuning: ``config.pretrained`` integers were cast the same way."""
  fresh = {"Dense_0": {"kernel": np.zeros((2, 3), np.float32)}}
  with pytest.raises(errors.BadCheckpoint, match="pretrained Dense_0/kernel is int32"):
    workflow.merge_pretrained(fresh, {"Dense_0": {"kernel": np.ones((2, 3), np.int32)}})
  merged = workflow.merge_pretrained(fresh, {"Dense_0": {"kernel": np.ones((2, 3), np.float16)}})
  assert merged["Dense_0"]["kernel"].dtype == np.float32
  # workflow.train merges with this one (it kept an unchecked copy of its own once).
  assert training_run.merge_pretrained is workflow.merge_pretrained
  assert training_run.prepare_images is workflow.prepare_images


MODEL_FILE = """
import flax.linen as nn
import mnemonic_jax

class Net(nn.Module):
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))

mnemonic_jax.register_model("walk4_f7_net", Net)
"""


def test_a_model_source_file_edited_since_the_bundle_was_saved_warns(tmp_path, monkeypatch):
  """F7: a registered model's file edited after training (sigmoid -> relu): every later
  command built the edited model on the sealed weights, without a word."""
  source_file = tmp_path / "my_model.py"
  source_file.write_text(MODEL_FILE)
  models.load_model_source("walk4_f7_net", {"file": str(source_file)})  # As train runs it.
  recorded = models.model_source("walk4_f7_net")
  assert recorded == {"file": str(source_file),
                      "sha256": hashlib.sha256(source_file.read_bytes()).hexdigest()}
  for edited in (False, True):  # As a later process loads the bundle's model.
    for registry in (models._REGISTRY, models._SOURCES):  # pylint: disable=protected-access
      monkeypatch.delitem(registry, "walk4_f7_net")
    if edited:
      source_file.write_text(MODEL_FILE.replace("nn.Dense(self", "2 * nn.Dense(self"))
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      models.load_model_source("walk4_f7_net", recorded)
    said = [str(w.message) for w in caught if w.category is errors.ModelSourceChangedWarning]
    assert len(said) == edited, said
  assert f"built by {source_file}, changed since the bundle recorded them" in said[0]


def test_running_out_of_memory_is_one_line_naming_it(tmp_path):
  """F9: under ``ulimit -v`` a MemoryError raised while reading a bundle was a 30-line
  traceback and exit 1; the machine refusing is one line (exit 2)."""
  try:
    raise RuntimeError("wrapped") from MemoryError()
  except RuntimeError as error:
    wrapped = error
  for error, output in ((MemoryError(), None), (wrapped, tmp_path / "out")):
    line = outcome.environment_line(error, "forget", output, outcome.Run())
    assert line.startswith("out of memory (Cannot allocate memory)"), line
    assert ("nothing was written" in line) == (output is not None), line


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_options_read_digits_strictly_keys_once_and_nothing_is_ignored(bundle, tmp_path):
  """F10: ``demo --epochs 1_0`` trained 10 epochs (``int`` takes ``_``) while ``--classes
  0_3`` was refused; a repeated ``--model-kwargs`` key was taken (the last one won);
  ``--data-dir``/``--download`` with a dataset that is not tfds were ignored; ``train
  --workdir FILE`` spoke of "another output"."""
  afile = tmp_path / "afile"
  afile.write_text("")
  out = tmp_path / "out"
  imported = ["import", "--params", afile, "--codes", afile, "--model", "mlp", "--input-shape",
              "8,8,1", "--output", out]
  cases = {
      "demo --epochs": (["demo", "--epochs", "1_0", "--output-dir", out],
                        "argument --epochs: '1_0' is not an integer"),
      "demo --class": (["demo", "--class", "3_1", "--output-dir", out],
                       "argument --class: '3_1' is not a class id"),
      "import --num-classes": ([*imported, "--num-classes", "1_0"],
                               "argument --num-classes: '1_0' is not an integer"),
      "forget --lambda1": (["forget", "--checkpoint", bundle, "--classes", "3", "--lambda1", "1_0",
                            "--lambda2", "10", "--output", out], "'1_0' is not a number"),
      "key twice": ([*imported, "--num-classes", "10", "--model-kwargs",
                     '{"hidden": [64], "hidden": [1000]}'], "key 'hidden' given twice"),
      "data-dir": (["evaluate", "--checkpoint", bundle, "--dataset", "digits", "--data-dir",
                    tmp_path / "absent"], "--data-dir applies to tfds: datasets only"),
      "download": (["evaluate", "--checkpoint", bundle, "--download"],
                   "--download applies to tfds: datasets only, and the dataset digits"),
      "workdir file": (["train", "--config", "digits_mlp:quick", "--workdir", afile],
                       f"--workdir {afile} is a file; pass a directory"),
  }
  ran = run_commands({name: {"args": [*args, "-q"] if args[0] != "demo" else args,
                             "watch": [bundle]} for name, (args, _) in cases.items()})
  for name, (_, words) in cases.items():
    assert_refused(ran[name].result, words)
    assert ran[name].before == ran[name].after and not out.exists(), name


def test_a_link_loop_is_named_as_one_and_a_lost_help_is_said(bundle, tmp_path):
  """F10: a symbolic link loop was "a link to 'lp2', which does not exist", "not a
  directory" or "is not a directory" depending on the command; ``--help >/dev/full`` lost
  the help and exited 0."""
  loop = tmp_path / "lp1"
  loop.symlink_to(tmp_path / "lp2")
  (tmp_path / "lp2").symlink_to(loop)
  cases = {
      "forget --output": (["forget", "--checkpoint", bundle, "--classes", "3", "--output", loop,
                           "-q"], "part of a symbolic link loop"),
      "train --workdir": (["train", "--config", "digits_mlp:quick", "--workdir", loop, "-q"],
                          f"--workdir {loop}: a symbolic link loop"),
      "demo --output-dir": (["demo", "--output-dir", loop], "--output-dir"),
      "idx": (["evaluate", "--checkpoint", bundle, "--dataset", f"idx:{loop}", "-q"],
              f"{loop}: a symbolic link loop"),
  }
  ran = run_commands({name: {"args": args} for name, (args, _) in cases.items()})
  for name, (_, words) in cases.items():
    line = assert_refused(ran[name].result, words)
    assert "symbolic link loop" in line and "does not exist" not in line, (name, line)
  full = run_commands({"help": {"args": ["--help"], "stdout_to": "/dev/full"}})["help"].result
  assert (full.returncode, full.stderr) == (2, "mnemonic-jax: error: cannot write the help to "
                                                "stdout: No space left on device\n")
