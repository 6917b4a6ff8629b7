"""Faults a fresh user met on the command line: 0-255 normalisation statistics accepted by
``import``, a bundle missing a part refused with a bare ``arrays: No such file or
directory``, and an empty ``--output`` told to give ``.``, which is always refused.

The commands run for real (:func:`cli_support.run_commands`): one line
``mnemonic-jax: error: ...``, exit 2, nothing written and the inputs unchanged. The
depth faults (an oracle that knows the forgotten classes, the verdict's wording) are in
test_cli_depth.py and test_depth.py.
"""

import errno
import os
import shutil

import numpy as np
import pytest

from cli_support import assert_refused, run_commands
from mnemonic_jax import checkpointing, errors


def _import_args(d, *extra):
  """``import`` of a digits MLP from files that are never read (the refusal comes first)."""
  return ("import", "--params", d / "params.msgpack", "--codes", d / "codes.npy",
          "--model", "mlp", "--num-classes", "10", "--input-shape", "8,8,1", *extra)


@pytest.fixture
def import_inputs(tmp_path):
  (tmp_path / "params.msgpack").write_bytes(b"not read")
  np.save(tmp_path / "codes.npy", np.zeros((10, 8, 8, 1), np.float32))
  return tmp_path


def test_import_refuses_normalisation_that_is_not_of_images_scaled_to_0_1(import_inputs):
  d = import_inputs
  out = d / "out"
  cases = {
      "0-255": ("--mean", "30", "--std", "37"),
      "0-255, 3 channels": ("--mean", "125.3,123,113.9", "--std", "63,62.1,66.7"),
      "std too large": ("--mean", "0.5", "--std", "0.8"),
      "mean below 0": ("--mean", "-0.2", "--std", "0.3"),
  }
  ran = run_commands({name: dict(args=_import_args(d, *given, "--output", out), watch=[d])
                      for name, given in cases.items()})
  line = assert_refused(ran["0-255"].result, "--mean 30 is outside [0, 1], but the mean is "
                        "subtracted from images scaled to [0, 1]")
  assert "divide statistics of 0-255 pixels by 255, here --mean 0.1176 --std 0.1451" in line
  line = assert_refused(ran["0-255, 3 channels"].result, "--mean 125.3,123,113.9 is outside")
  assert "here --mean 0.4914,0.4824,0.4467 --std 0.2471,0.2435,0.2616" in line
  line = assert_refused(ran["std too large"].result, "--std 0.8 is above 0.5")
  assert "1 alone is allowed" in line
  assert_refused(ran["mean below 0"].result, "--mean -0.2 is outside [0, 1]")
  for case in ran.values():
    assert case.before == case.after, case.result.args
  assert not out.exists()


def test_import_params_refuses_0_255_statistics_and_takes_0_1_ones(import_inputs):
  d = import_inputs
  with pytest.raises(checkpointing.CheckpointError, match=r"normalisation mean 30 is outside "
                     r"\[0, 1\].*here mean 0.1176 std 0.1451"):
    checkpointing.import_params(d / "params.msgpack", d / "codes.npy", model_name="mlp",
                                num_classes=10, input_shape=(8, 8, 1), output=d / "out",
                                mean=(30.0,), std=(37.0,))
  assert not (d / "out").exists()
  for mean, std in (((0.0,), (1.0,)), ((0.5,), (0.5,)), ((0.1307,), (0.3081,)),
                    ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)), ((1.0,), (1.0,))):
    checkpointing.check_normalisation_range(mean, std)  # Raises nothing.


def _damaged_copies(bundle, root):
  """Copies of ``bundle`` each missing one part, and a train workdir whose bundle lost its
  metadata; name -> (path given, the bundle named in the message)."""
  whole = checkpointing.save_bundle(root / "whole", bundle)
  out = {}
  for name, part in (("no arrays", "arrays"), ("no meta", "meta"),
                     ("no metadata file", "meta/metadata"),
                     ("no arrays metadata", "arrays/_METADATA")):
    copy = root / name.replace(" ", "_")
    shutil.copytree(whole, copy)
    target = copy / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    out[name] = (copy, copy)
  workdir = root / "workdir"
  (workdir / "train").mkdir(parents=True)
  shutil.copytree(whole, workdir / "bundle")
  shutil.rmtree(workdir / "bundle" / "meta")
  out["workdir, no meta"] = (workdir, workdir / "bundle")
  return out


def test_a_bundle_missing_a_part_is_named_truncated_or_corrupt(tiny_digits_bundle, tmp_path):
  damaged = _damaged_copies(tiny_digits_bundle[0], tmp_path / "in")
  ran = run_commands({
      name: dict(args=("forget", "--checkpoint", given, "--classes", "3", "--output",
                       tmp_path / "out"), watch=[tmp_path])
      for name, (given, _) in damaged.items()})
  for name, (_, bundle) in damaged.items():
    line = assert_refused(ran[name].result, f"error: {bundle}: ")
    assert "the bundle is truncated or corrupt" in line, (name, line)
    assert ran[name].before == ran[name].after, name
  assert "its arrays/ folder is missing" in ran["no arrays"].result.stderr
  assert "its meta/ folder is missing" in ran["no meta"].result.stderr
  assert "its metadata file meta/metadata is missing" in ran["no metadata file"].result.stderr
  assert not (tmp_path / "out").exists()


def test_an_empty_output_is_told_what_works(import_inputs, tiny_digits_bundle, tmp_path):
  bundle = checkpointing.save_bundle(tmp_path / "bundle", tiny_digits_bundle[0])
  d = import_inputs
  here = tmp_path / "here"
  here.mkdir()
  ran = run_commands({
      "forget": dict(args=("forget", "--checkpoint", bundle, "--classes", "3", "--output", "")),
      "attach-codes": dict(args=("attach-codes", "--checkpoint", bundle, "--output", "")),
      "import": dict(args=_import_args(d, "--mean", "0", "--std", "1", "--output", "")),
      "import codes": dict(args=("import", "--params", d / "params.msgpack", "--codes", "",
                                 "--model", "mlp", "--num-classes", "10", "--input-shape",
                                 "8,8,1", "--output", d / "out")),
      "dot": dict(args=("forget", "--checkpoint", bundle, "--classes", "3", "--output", "."),
                  cwd=here)})
  for name in ("forget", "attach-codes", "import"):
    line = assert_refused(ran[name].result, "argument --output: is empty")
    assert "'.'" not in line and "give the directory to write, a new one such as runs/out" in \
        line, line
  line = assert_refused(ran["import codes"].result, "argument --codes: is empty")
  assert "'.'" not in line and "give the path of the file" in line
  assert_refused(ran["dot"].result, "is the current directory")  # What '.' would have met.
  with pytest.raises(errors.BadRequest, match="a new one such as 'runs/out'") as caught:
    checkpointing.save_bundle("", tiny_digits_bundle[0])
  assert "'.'" not in str(caught.value)


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_an_option_given_twice_is_refused(tmp_path):
  """argparse keeps the last value: ``--classes 3 --classes 5`` forgot class 5 alone,
  ``--output a --output b`` wrote b, ``--checkpoint`` twice read the second, with exit 0."""
  src = tmp_path / "in"
  src.mkdir()
  forget = ("forget", "--checkpoint", src)
  cases = {
      "classes": (*forget, "--classes", "3", "--classes", "5", "--output", tmp_path / "o"),
      "output": (*forget, "--classes", "3", "--output", tmp_path / "a",
                 f"--output={tmp_path / 'b'}"),
      "checkpoint": (*forget, "--checkpoint", src, "--classes", "3", "--output", tmp_path / "o"),
      "move": (*forget, "--classes", "3", "--move", "paper", "--move", "bias", "--output",
               tmp_path / "o"),
      "train": ("train", "--config", "digits_mlp:quick", "--config", "digits_mlp",
                "--workdir", tmp_path / "w"),
      "class digit not ASCII": (*forget, "--classes", "\u0663", "--output", tmp_path / "o")}
  ran = run_commands({name: dict(args=args, watch=[tmp_path]) for name, args in cases.items()})
  assert_refused(ran["classes"].result, "--classes given 2 times; give it once (several "
                 "classes: --classes 3,5)")
  for name in ("output", "checkpoint", "move"):
    assert_refused(ran[name].result, f"--{name} given 2 times; give it once")
  assert_refused(ran["train"].result, "--config given 2 times")
  assert_refused(ran["class digit not ASCII"].result, "is not a comma-separated list of class")
  for case in ran.values():
    assert case.before == case.after, case.result.args


def test_a_cluster_that_is_not_there_is_one_line(tmp_path):
  """``--coordinator auto`` with no cluster to detect was a 23-line traceback; a config that
  does not load, with an explicit coordinator, was found only after waiting 5 minutes for
  the other processes, then JAX aborted the process."""
  ran = run_commands({
      "auto": dict(args=("forget", "--checkpoint", tmp_path, "--classes", "3", "--output",
                         tmp_path / "o", "--coordinator", "auto"), watch=[tmp_path]),
      "bad config": dict(args=("train", "--config", "NOPE", "--workdir", tmp_path / "w",
                               "--coordinator", "127.0.0.1:9", "--num-processes", "2",
                               "--process-id", "1"), watch=[tmp_path])}, timeout=120)
  assert_refused(ran["auto"].result, "--coordinator auto found no cluster to join")
  assert_refused(ran["bad config"].result, "config 'NOPE' does not exist")
  for case in ran.values():
    assert case.before == case.after, case.result.args


def test_import_refuses_a_dataset_that_does_not_fit_the_model(import_inputs):
  """It took the dataset's statistics and recorded it as the model's, then evaluate and
  attach-codes failed on the bundle (28x28 images for an 8x8 model)."""
  d = import_inputs
  args = ("import", "--params", d / "params.msgpack", "--codes", d / "codes.npy", "--model",
          "mlp", "--input-shape", "8,8,1", "--dataset", "digits", "--output", d / "out")
  ran = run_commands({"classes": dict(args=(*args, "--num-classes", "5"), watch=[d])})
  assert_refused(ran["classes"].result, "--dataset digits has 10 classes of images (8, 8, 1), "
                 "which do not fit the model's --num-classes 5")
  assert ran["classes"].before == ran["classes"].after and not (d / "out").exists()


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "make room"), (errno.EDQUOT, "make room"),
                                       (errno.EROFS, "choose an output in a writable place"),
                                       (errno.EIO, "check the machine")])
def test_a_refused_write_gets_the_advice_of_its_cause(code, fix, tmp_path):
  """A read-only file system was told to 'make room'."""
  from mnemonic_jax.cli import outcome  # pylint: disable=import-outside-toplevel

  line = outcome.environment_line(OSError(code, os.strerror(code)), "forget", tmp_path / "o",
                                  outcome.Run())
  assert line.startswith(f"cannot write {tmp_path / 'o'}: {os.strerror(code)}") and fix in line
  train = lambda: outcome.environment_line(OSError(code, os.strerror(code)), "train", tmp_path,
                                           outcome.Run())
  assert ("make room" in train()) == (fix == "make room")
  assert "it has no checkpoint yet: it starts from the beginning" in train()  # It said 'resumes'.
  (tmp_path / "train" / "180").mkdir(parents=True)
  assert "it resumes from its last complete checkpoint" in train()
