"""Walk 2's G2 and G7 (/work/notes/walk2_cli_faults.md), each fixed as a kind.

* G2: a bundle whose ``meta/`` was a symbolic link into another bundle loaded (only
  ``arrays/`` as a link was refused), and ``forget --output THAT_OTHER --force`` then
  destroyed its input. A link anywhere inside a bundle (or a training step) is refused
  now, through one walk (``checkpointing.integrity.entries``); and ``check_output`` given
  a command's inputs refuses an output that anything an input reads, through links too,
  is, holds or lies inside.

The command line's promises (one line, exit 2, nothing written, input untouched) are
checked through the real command (``cli_support.run_commands``).
"""

import os
import pathlib
import shutil

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
