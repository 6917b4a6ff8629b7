"""Walk 2's G2 and G7 (/work/notes/walk2_cli_faults.md), each fixed as a kind.

* G2: a bundle whose ``meta/`` was a symbolic link into another bundle loaded (only
  ``arrays/`` as a link was refused), and ``forget --output THAT_OTHER --force`` then
  destroyed its input. A link anywhere inside a bundle (or a training step) is refused
  now, through one walk (``checkpointing.integrity.entries``); and ``check_output`` given
  a command's inputs refuses an output that anything an input reads, through links too,
  is, holds or lies inside.

* G7: ``forget --output WORKDIR/train/190`` wrote a bundle among a training run's step
  folders (the resume then stopped on it). An output that is or lies inside a train
  workdir's checkpoint folder is refused up front (``check_output``), as one inside a
  bundle is, for every command that writes a bundle (forget, demo, train's own bundle).

The command line's promises (one line, exit 2, nothing written, input untouched) are
checked through the real command (``cli_support.run_commands``).
"""

import os
import pathlib
import shutil
import warnings

import numpy as np
import pytest

from cli_support import assert_refused, run_commands, tree_digest
from mnemonic_jax import checkpointing
from mnemonic_jax.checkpointing import CheckpointError, outputs


@pytest.fixture(scope="module")
def base(tiny_digits_bundle, tmp_path_factory) -> pathlib.Path:
  """A bundle on disk (the tiny digits MLP), never modified."""
  return checkpointing.save_bundle(tmp_path_factory.mktemp("links") / "base",
                                   tiny_digits_bundle[0])


def _an_array_file(bundle: pathlib.Path) -> str:
  """A file two folders down in ``arrays/`` (``arrays/d/<hash>``), relative."""
  deep = sorted(p for p in (bundle / "arrays").rglob("*")
                if p.is_file() and len(p.relative_to(bundle).parts) > 2)
  return os.fspath(deep[0].relative_to(bundle))


#: Each entry of a bundle that is made a link (to the same entry of another bundle).
VICTIMS = ["meta", "meta/metadata", "meta/commit_success.txt", "_CHECKPOINT_METADATA",
           "commit_success.txt", "arrays", "arrays/d", "arrays/_sharding", "array file"]


def _linked(base: pathlib.Path, root: pathlib.Path, victim: str,
            into: pathlib.Path) -> tuple[pathlib.Path, str]:
  """A copy of ``base`` whose ``victim`` is a relative link to the same entry of ``into``
  (a deduplicated copy: the files behind the link are identical)."""
  copy = pathlib.Path(shutil.copytree(base, root / f"c_{victim.replace('/', '_')}"))
  rel = _an_array_file(copy) if victim == "array file" else victim
  entry = copy / rel
  shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
  entry.symlink_to(os.path.relpath(into / rel, entry.parent))
  return copy, rel


@pytest.mark.parametrize("victim", VICTIMS)
def test_a_link_anywhere_inside_a_bundle_is_refused_on_load(base, tmp_path, victim):
  other = pathlib.Path(shutil.copytree(base, tmp_path / "b1"))
  copy, rel = _linked(base, tmp_path, victim, other)
  with pytest.raises(CheckpointError, match="is a symbolic link") as info:
    checkpointing.load_bundle(copy)
  assert f"{copy}: {rel} is a symbolic link" in str(info.value)
  assert "copy of what it points to" in str(info.value)


def test_a_link_that_stays_inside_the_bundle_is_refused_too(base, tmp_path):
  copy = pathlib.Path(shutil.copytree(base, tmp_path / "c"))
  rel = _an_array_file(copy)
  (copy / rel).rename(copy / "kept")  # At the top: not part of the bundle, ignored.
  (copy / rel).symlink_to(os.path.relpath(copy / "kept", (copy / rel).parent))
  with pytest.raises(CheckpointError, match=f"{rel} is a symbolic link"):
    checkpointing.load_bundle(copy)
  (copy / rel).unlink()
  (copy / "kept").rename(copy / rel)
  checkpointing.load_bundle(copy)  # Only the link was wrong; and the bundle path may be one.
  (tmp_path / "alias").symlink_to(copy)
  assert checkpointing.load_bundle(tmp_path / "alias").num_classes == 10


def test_a_link_inside_a_training_step_is_refused_on_resume(tmp_path):
  state = {"w": np.arange(3, dtype=np.float32)}
  with checkpointing.TrainCheckpointer(tmp_path / "run", async_save=False) as ckpt:
    ckpt.save(1, state, force=True)
  step = tmp_path / "run" / "1"
  victim = sorted(p for p in (step / "state").rglob("*") if p.is_file())[-1]
  kept = tmp_path / "kept"
  shutil.copy(victim, kept)
  victim.unlink()
  victim.symlink_to(kept)  # Identical bytes: only the link is wrong.
  with pytest.raises(CheckpointError, match="is a symbolic link") as info:
    checkpointing.TrainCheckpointer(tmp_path / "run").restore(None, state)
  assert os.fspath(victim.relative_to(step)) in str(info.value)


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_forget_over_the_target_of_an_inputs_link_is_refused_and_nothing_changes(
    base, tmp_path):
  """G2's repro and its kind: every entry of the input made a link into the output."""
  b1 = pathlib.Path(shutil.copytree(base, tmp_path / "b1"))
  cases = {}
  for victim in VICTIMS:
    copy, _ = _linked(base, tmp_path, victim, b1)
    cases[f"forget {victim}"] = dict(
        args=["forget", "-q", "--checkpoint", copy, "--classes", "3", "--output", b1,
              "--force"], watch=[b1, copy])
    cases[f"evaluate {victim}"] = dict(args=["evaluate", "-q", "--checkpoint", copy],
                                       watch=[b1, copy])
  ran = run_commands(cases)
  for name, got in ran.items():
    if name.startswith("forget"):  # The output check (inputs' links followed) comes first.
      line = assert_refused(got.result, "overlaps the input")
      assert "which leads to" in line and "choose an output outside" in line, (name, line)
    else:  # Loading refuses the link itself.
      line = assert_refused(got.result, "is a symbolic link")
      assert "copy of what it points to" in line, (name, line)
    assert got.before == got.after, name  # Neither the output nor the input changed.
  assert tree_digest(b1) == tree_digest(base)


def _params_dir(root: pathlib.Path, link_to: pathlib.Path) -> pathlib.Path:
  """A folder of files, one of them (two levels down) a link to ``link_to``."""
  folder = root / "params"
  (folder / "d").mkdir(parents=True)
  (folder / "checkpoint").write_bytes(b"x")
  (folder / "d" / "chunk").symlink_to(link_to)
  return folder


def test_check_output_refuses_what_an_inputs_link_leads_into(base, tmp_path):
  b1 = pathlib.Path(shutil.copytree(base, tmp_path / "b1"))
  c2, _ = _linked(base, tmp_path, "meta", b1)
  with pytest.raises(CheckpointError, match="overlaps the input") as info:
    checkpointing.check_output(b1, force=True, inputs=[c2])
  assert f"through {c2 / 'meta'}, which leads to {b1 / 'meta'}" in str(info.value)
  # A file deep in another input (an Orbax params folder) linked to one of the output's.
  params = _params_dir(tmp_path, b1 / _an_array_file(b1))
  assert outputs.input_overlap(b1, [params]) == (os.fspath(params),
                                                 os.fspath(params / "d" / "chunk"))
  # A link to a folder that holds the output (a new one too: it would be written there).
  shutil.rmtree(params)
  params = _params_dir(tmp_path, tmp_path)
  assert outputs.input_overlap(tmp_path / "new", [params]) is not None
  assert tree_digest(b1) == tree_digest(base)  # Only read.


def test_check_output_passes_inputs_whose_links_lead_elsewhere(base, tmp_path):
  b1 = pathlib.Path(shutil.copytree(base, tmp_path / "b1"))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  (elsewhere / "f").write_bytes(b"y")
  params = _params_dir(tmp_path, elsewhere / "f")
  (params / "loop").symlink_to(params)  # Links back into the input: walked once.
  (params / "a").symlink_to("b")
  (params / "b").symlink_to("a")  # A loop of links: resolved, not followed forever.
  (params / "dangling").symlink_to(tmp_path / "nowhere")
  assert outputs.input_overlap(b1, [params, base]) is None
  assert checkpointing.check_output(b1, force=True, inputs=[params, base]) == b1
  assert checkpointing.check_output(tmp_path / "new", inputs=[params]) == tmp_path / "new"


@pytest.fixture
def workdir(small_trained_copy) -> pathlib.Path:
  """A finished train workdir (its lock file, ``train/176``, ``bundle/``), a fresh copy."""
  return small_trained_copy().parent


def test_outputs_inside_a_train_workdirs_checkpoints_are_refused(base, workdir, tmp_path):
  """G7's repro and its kind, through the real commands: nothing is written anywhere."""
  train = workdir / "train"
  (tmp_path / "alias").symlink_to(train)
  other = pathlib.Path(shutil.copytree(base, tmp_path / "other"))
  (train / "lnk").symlink_to(other)  # Replacing the link would put a bundle in train/.
  killed = pathlib.Path(shutil.copytree(workdir, tmp_path / "killed", symlinks=True))
  shutil.rmtree(killed / "train")
  (killed / "train").mkdir()  # A run stopped before its first checkpoint: train/ empty.
  forget = ["forget", "-q", "--checkpoint", base, "--classes", "3", "--output"]
  outputs_ = {"step": [train / "190"], "folder": [train], "deep": [train / "176" / "x"],
              "alias": [tmp_path / "alias" / "190"], "link": [train / "lnk", "--force"],
              "empty": [killed / "train", "--force"]}
  cases = {name: dict(args=[*forget, *out], watch=[workdir, killed, other])
           for name, out in outputs_.items()}
  cases["demo"] = dict(args=["demo", "--output-dir", train / "demo"], watch=[workdir])
  cases["train"] = dict(args=["train", "-q", "--config", "digits_mlp:quick", "--workdir",
                              train / "run"], watch=[workdir])
  ran = run_commands(cases)
  for name, got in ran.items():
    if name == "train":  # workflow.finished_run, the first check of a run, refuses it.
      line = assert_refused(got.result, "lies in the checkpoints of the train run")
      assert os.fspath(workdir) in line and "use a new --workdir" in line, line
      assert got.before == got.after, name
      continue
    line = assert_refused(got.result, "the checkpoint folder of the train workdir")
    real = "killed" if name == "empty" else os.fspath(workdir)
    assert real in line and "choose an output outside" in line, (name, line)
    assert got.before == got.after, name
  assert not os.path.lexists(train / "190") and (train / "lnk").is_symlink()


def test_enclosing_train_checkpoints_knows_a_workdir_by_its_lock_or_its_steps(workdir,
                                                                           tmp_path):
  train = workdir / "train"
  assert checkpointing.enclosing_train_checkpoints(train / "190") == (workdir, train)
  assert checkpointing.enclosing_train_checkpoints(train) == (workdir, train)
  assert checkpointing.enclosing_train_checkpoints(workdir / "elsewhere") is None
  assert checkpointing.enclosing_train_checkpoints(workdir / "bundle") is None
  (workdir / checkpointing.LOCK_FILE).unlink()  # An older run: its steps still tell.
  assert checkpointing.enclosing_train_checkpoints(train / "190") == (workdir, train)
  plain = tmp_path / "data" / "train"  # A folder of that name elsewhere: a fine output.
  (plain / "190").mkdir(parents=True)
  assert checkpointing.enclosing_train_checkpoints(plain / "out") is None
  assert checkpointing.check_output(plain / "out") == plain / "out"
  with pytest.raises(CheckpointError, match="checkpoint folder of the train workdir"):
    checkpointing.check_output(train / "190")


def test_force_over_a_link_removes_the_link_without_a_warning(base, tmp_path):
  """Replacing a symbolic link with --force warned that the old bundle "could not be
  removed entirely ... remove it yourself" (rmtree refuses a link) though nothing was left."""
  target = pathlib.Path(shutil.copytree(base, tmp_path / "target"))
  (tmp_path / "link").symlink_to(target)
  with warnings.catch_warnings():
    warnings.simplefilter("error", checkpointing.OldBundleLeftWarning)
    checkpointing.save_bundle(tmp_path / "link", checkpointing.load_bundle(base), force=True)
  assert not (tmp_path / "link").is_symlink() and (tmp_path / "link").is_dir()
  assert tree_digest(target) == tree_digest(base)  # What it pointed to is left alone.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_the_command_lines_output_check_passes_every_input(base, tmp_path):
  """cli.paths.check_output checked overlaps by path only: an ``import --params`` folder
  holding a link into the ``--output`` bundle was not seen, and ``--force`` deleted what
  the import read."""
  from mnemonic_jax.cli import paths  # pylint: disable=import-outside-toplevel

  b1 = pathlib.Path(shutil.copytree(base, tmp_path / "b1"))
  params = _params_dir(tmp_path, b1 / _an_array_file(b1))
  with pytest.raises(CheckpointError, match="overlaps the input"):
    paths.check_output(b1, [("--params", params)], force=True)
  assert tree_digest(b1) == tree_digest(base)


def test_the_library_refuses_a_path_that_is_not_utf8(base, tiny_digits_bundle, tmp_path):
  """load_bundle called an intact bundle under a Latin-1 name 'truncated or corrupt', and
  save_bundle failed inside the storage library (the command line refuses such paths up
  front; the library now says the same in one CheckpointError)."""
  latin1 = pathlib.Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
  shutil.copytree(base, latin1 / "bundle")
  with pytest.raises(CheckpointError, match=r"caf\\xe9/bundle: its name .* not valid UTF-8"):
    checkpointing.load_bundle(latin1 / "bundle")
  with pytest.raises(CheckpointError, match="not valid UTF-8"):
    checkpointing.save_bundle(latin1 / "new", tiny_digits_bundle[0])
  assert not (latin1 / "new").exists() and tree_digest(latin1 / "bundle") == tree_digest(base)


def test_the_library_refuses_a_workdir_inside_a_runs_checkpoints_before_training(workdir):
  """workflow.train(config, W/train/run) trained fully and was refused only at its final
  save (the command line refused it up front)."""
  from mnemonic_jax import workflow  # pylint: disable=import-outside-toplevel

  before = tree_digest(workdir)
  with pytest.raises(CheckpointError, match="lies in the checkpoints of the train run"):
    workflow.finished_run({}, workdir / "train" / "run")
  assert tree_digest(workdir) == before
