"""``train``'s resume trusts only what the run recorded: a step folder whose record is of
another step, run or config is refused, never resumed from (G1); the lines of
``metrics.jsonl`` up to the checkpoint's step must be those it recorded, and a torn last
line after them is dropped with a warning, never silently (G6).

Faults from /work/notes/walk2_cli_faults.md. The command line's promises (one line, exit 2,
nothing written) are checked through the real command (``cli_support.run_commands``); the
workdirs are trained in-process on a tiny config (``cli_support.small_config``).
"""

import hashlib
import json
import os
import pathlib
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_support import (assert_refused, config_file, run_commands, small_config, stopper,
                         tree_digest)
from mnemonic_jax import checkpointing, errors, run_metrics, workflow
from mnemonic_jax.workflow import run_records

#: 22 steps an epoch (1438 digits, batch 64): a checkpoint every 4 steps, lines every 10.
CONFIG = small_config(epochs=1, checkpoint_every=4, log_every=10)


def _stopped(config: dict, workdir: pathlib.Path) -> pathlib.Path:
  """A run of ``config`` stopped at step 20 (checks every 2 steps: steps 16 and 20 saved,
  lines of steps 10 and 20 logged)."""
  with pytest.raises(workflow.RunStopped):
    workflow.train(config, workdir, progress=False, stop=stopper(10))
  return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """``finished``: a finished workdir of :data:`CONFIG`; ``stopped``: the same run stopped
  at step 20; ``other``: a run of another seed stopped there; ``config``: the config file."""
  root = tmp_path_factory.mktemp("runs")
  workflow.train(CONFIG, root / "finished", progress=False)
  return {"finished": root / "finished", "stopped": _stopped(CONFIG, root / "stopped"),
          "other": _stopped({**CONFIG, "seed": 1}, root / "other"),
          "config": config_file(root, CONFIG)}


def _copy(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  shutil.copytree(src, dest, symlinks=True)
  return dest


def _lines(workdir):
  """The lines of a run's metrics.jsonl but their ``seconds``."""
  return [{k: v for k, v in line.items() if k != "seconds"}
          for line in run_metrics.read_metrics(workdir)]


def _same_params(workdir, reference):
  got = checkpointing.load_bundle(workdir / "bundle").params
  want = checkpointing.load_bundle(reference / "bundle").params
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------- G1: a step folder that is not its name's step


def _saved(tmp_path, steps=(1, 2, 3)) -> tuple[pathlib.Path, dict]:
  state = {"w": jnp.arange(64.0), "key": jax.random.key(0)}
  with checkpointing.TrainCheckpointer(tmp_path / "run", max_to_keep=3) as ckpt:
    for step in steps:
      ckpt.save(step, state, {"step": step})
  return tmp_path / "run", state


def test_a_foreign_folder_named_like_a_step_says_to_move_it(tmp_path):
  """G7: a bundle written at WORKDIR/train/5 stopped the resume with 'point at a directory
  written by TrainCheckpointer', which said nothing of the folder to move."""
  run, state = _saved(tmp_path)
  shutil.copytree(run / "3", run / "5")
  meta_file = run / "5" / "meta" / "metadata"
  meta_file.write_text(json.dumps({"format": "a mnemonic-jax bundle"}))
  with pytest.raises(checkpointing.CheckpointError) as refused:
    with checkpointing.TrainCheckpointer(run) as ckpt:
      ckpt.restore(None, jax.eval_shape(lambda: state))
  message = str(refused.value)
  assert message.startswith(f"{run / '5'} is not a training step of this run"), message
  assert message.endswith(f"delete it, or move it out of {run}, to resume from step 3"), message


@pytest.mark.parametrize("case", ["renamed", "copied", "renamed_old_version", "leading_zero"])
def test_a_step_folder_whose_record_is_of_another_step_is_refused(tmp_path, case):
  """Renamed (3 -> 5), copied from another step (1 -> 3), an unsealed (version 1) step
  renamed, or renamed with a leading zero (3 -> 05, which Orbax passes over): refused in one
  line naming the folder, the step it records and what to do; nothing is changed."""
  run, state = _saved(tmp_path)
  if case in ("renamed", "renamed_old_version"):
    if case == "renamed_old_version":
      meta_file = run / "3" / "meta" / "metadata"
      meta = json.loads(meta_file.read_text())
      meta_file.write_text(json.dumps({**meta, "version": 1}))
    (run / "3").rename(run / "5")
    folder, said = run / "5", "it records step 3, not 5"
  elif case == "copied":
    shutil.rmtree(run / "3")
    shutil.copytree(run / "1", run / "3")
    folder, said = run / "3", "it records step 1, not 3"
  else:
    (run / "3").rename(run / "05")
    folder, said = run / "05", "a folder named like a training step, but not as a step is named"
  before = tree_digest(run)
  with pytest.raises(checkpointing.CheckpointError) as refused:
    with checkpointing.TrainCheckpointer(run) as ckpt:
      ckpt.restore(None, jax.eval_shape(lambda: state))
  message = str(refused.value)
  assert message.startswith(f"{folder}: ") and "\n" not in message, message
  assert said in message, message
  assert message.endswith(f"delete it, or move it out of {run}, to resume from step 2"), message
  with pytest.raises(checkpointing.CheckpointError, match=said):
    checkpointing.read_step_metadata(run)
  assert tree_digest(run) == before
  shutil.rmtree(folder)  # What the line says: the run then resumes from step 2.
  with checkpointing.TrainCheckpointer(run) as ckpt:
    assert ckpt.restore(None, jax.eval_shape(lambda: state)).step == 2


def test_a_step_past_the_run_s_last_step_is_refused(runs, tmp_path):
  """A step later than the run's last (the same config on a smaller dataset): refused,
  naming the folder, never resumed from."""
  workdir = _copy(runs["stopped"], tmp_path / "w")
  step, record = checkpointing.read_step_metadata(workdir / "train")
  restored = checkpointing.TrainCheckpoint(step, None, record["metadata"])
  with checkpointing.TrainCheckpointer(workdir / "train") as ckpt:
    with pytest.raises(checkpointing.CheckpointError) as refused:
      run_records.check_same_run(
          run_records.to_plain(CONFIG), restored, ckpt, 18, workdir)
    run_records.check_same_run(
        run_records.to_plain(CONFIG), restored, ckpt, 22, workdir)  # Its own: resumed.
  assert str(refused.value) == (
      f"{workdir / 'train' / '20'}: step 20 is past this run's last step, 18; delete it, or "
      f"move it out of {workdir / 'train'}, to resume from step 16")


@pytest.mark.slow  # Commands that train (~10 s).
def test_train_refuses_a_step_folder_that_is_not_the_run_s_step_of_its_name(runs, tmp_path):
  """G1: ``mv train/20 train/21``, step 16 copied in as 20, or step 20 of a run of another
  seed copied in: one line naming the folder and what to do, exit 2, nothing written. Done
  as it says, the run resumes and ends bitwise equal to an uninterrupted one, its metrics
  lines too."""
  made = {name: _copy(runs["stopped"], tmp_path / name)
          for name in ("renamed", "copied", "other_run")}
  (made["renamed"] / "train" / "20").rename(made["renamed"] / "train" / "21")
  shutil.rmtree(made["copied"] / "train" / "20")
  shutil.copytree(made["copied"] / "train" / "16", made["copied"] / "train" / "20")
  shutil.rmtree(made["other_run"] / "train" / "20")
  shutil.copytree(runs["other"] / "train" / "20", made["other_run"] / "train" / "20")
  watch = lambda w: [w / "train", w / "metrics.jsonl", w / "bundle"]
  ran = run_commands({
      name: dict(args=("train", "-q", "--config", runs["config"], "--workdir", workdir),
                 watch=watch(workdir))
      for name, workdir in made.items()})
  folders = {"renamed": "21", "copied": "20", "other_run": "20"}
  words = {"renamed": "it records step 20, not 21 (a step folder renamed, or copied in",
           "copied": "it records step 16, not 20 (a step folder renamed, or copied in",
           "other_run": "a step of a run with another config (seed: 1 -> 0) than this run "
                        "and its step 16"}
  for name, workdir in made.items():
    folder = workdir / "train" / folders[name]
    line = assert_refused(ran[name].result, f"{folder}: {words[name]}")
    assert line.endswith(f"delete it, or move it out of {workdir / 'train'}, to resume from "
                         "step 16"), line
    assert ran[name].before == ran[name].after, name
    shutil.rmtree(folder)  # What the line says.
    workflow.train(CONFIG, workdir, progress=False)
    assert _lines(workdir) == _lines(runs["finished"]), name
    _same_params(workdir, runs["finished"])


# ------------------------------------------- G6: the log's lines up to the checkpoint's step


def _logged(workdir: pathlib.Path) -> tuple[dict, bytes]:
  """A log of lines 10 and 20, the record a checkpoint of step 20 takes, and a line 30."""
  log = run_metrics.MetricsLog(workdir, resume_step=None)
  for step in (10, 20):
    log.write(step, {"loss": 1.0 / step}, seconds=0.5 * step)
  record = log.record()
  prefix = (workdir / run_metrics.METRICS_FILE).read_bytes()
  log.write(30, {"loss": 0.03}, seconds=15.0)
  log.close()
  return record, prefix


def _damage(path: pathlib.Path, damage: str) -> None:
  data = path.read_bytes()
  first = data.index(b"\n") + 1
  if damage == "torn":  # Cut inside the first line.
    path.write_bytes(data[:first // 2])
  elif damage == "empty":
    path.write_bytes(b"")
  elif damage == "deleted":
    path.unlink()
  elif damage == "edited":
    path.write_bytes(data.replace(b'"step": 10', b'"step": 12'))
  elif damage == "line_removed":
    path.write_bytes(data[first:])
  else:  # "replaced": the same steps and values, logged by another run (other seconds).
    path.write_bytes(data.replace(b'"seconds": 5.0', b'"seconds": 5.1'))


def test_the_checkpoint_records_the_lines_logged_up_to_its_step(tmp_path):
  record, prefix = _logged(tmp_path)
  assert record == {"lines": 2, "bytes": len(prefix),
                    "sha256": hashlib.sha256(prefix).hexdigest()}
  assert prefix.count(b"\n") == 2 and prefix.endswith(b"\n")


@pytest.mark.parametrize("damage", ["torn", "empty", "deleted", "edited", "line_removed",
                                    "replaced"])
def test_a_resume_refuses_a_log_without_the_lines_its_checkpoint_recorded(tmp_path, damage):
  """Lines up to the checkpoint's step torn, emptied, deleted, edited, removed or logged by
  another run: refused in one line naming the file (they cannot be rebuilt), never silently
  dropped; nothing written."""
  record, _ = _logged(tmp_path)
  path = tmp_path / run_metrics.METRICS_FILE
  _damage(path, damage)
  before = tree_digest(tmp_path)
  with pytest.raises(errors.BadCheckpoint) as refused:
    run_metrics.MetricsLog(tmp_path, resume_step=20, record=record)
  message = str(refused.value)
  assert message.startswith(f"{path} ") and "\n" not in message, message
  assert "the 2 lines logged up to step 20" in message, message
  assert message.endswith("put the run's own metrics.jsonl back, or train from the start "
                          "in a new --workdir"), message
  with pytest.raises(errors.BadCheckpoint, match="logged up to step 20"):
    run_metrics.check_resumable_log(tmp_path, 20, record)  # The other processes' check.
  assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("torn", [False, True])
def test_the_lines_after_the_checkpoint_are_dropped_a_torn_last_one_with_a_warning(tmp_path,
                                                                                   torn):
  """After the checkpoint's step: whole lines are dropped (the run logs them again); a torn
  last line (an interrupted append) too, saying so in one warning. The recorded lines are
  kept byte for byte, and the log goes on from them."""
  record, prefix = _logged(tmp_path)
  path = tmp_path / run_metrics.METRICS_FILE
  if torn:
    path.write_bytes(path.read_bytes()[:-10])
  with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    log = run_metrics.MetricsLog(tmp_path, resume_step=20, record=record)
  said = [str(w.message) for w in seen if w.category is run_metrics.MetricsLogWarning]
  assert len(said) == torn and len(seen) == torn, [str(w.message) for w in seen]
  if torn:
    assert said[0] == (f"{path}: its last line, after the lines logged up to step 20, is cut "
                       "off (an append the run's stop interrupted); dropped: the run logs "
                       "the steps after 20 again")
  assert path.read_bytes() == prefix and log.record() == record
  log.write(30, {"loss": 0.03}, seconds=15.0)
  log.close()
  assert [line["step"] for line in run_metrics.read_metrics(tmp_path)] == [10, 20, 30]
  assert log.record()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # Commands that train (~10 s).
def test_train_refuses_to_resume_with_a_log_missing_its_lines_and_says_what_it_drops(
    runs, tmp_path):
  """G6 through the command: metrics.jsonl torn before the checkpoint's step, emptied,
  deleted or edited: one line, exit 2, nothing written. A torn last line after the
  checkpoint's step (steps 16 and 20 saved, 20 then removed): dropped with one warning, and
  the finished log and parameters are bitwise those of an uninterrupted run."""
  made = {}
  for damage in ("torn", "empty", "deleted", "edited"):
    made[damage] = _copy(runs["stopped"], tmp_path / damage)
    _damage(made[damage] / run_metrics.METRICS_FILE, damage)
  made["torn_after"] = _copy(runs["stopped"], tmp_path / "torn_after")
  shutil.rmtree(made["torn_after"] / "train" / "20")
  log = made["torn_after"] / run_metrics.METRICS_FILE
  os.truncate(log, log.stat().st_size - 20)  # The step-20 line, after step 16.
  watch = lambda w: [w / "train", w / "metrics.jsonl", w / "bundle"]
  ran = run_commands({
      name: dict(args=("train", "-q", "--config", runs["config"], "--workdir", workdir),
                 watch=watch(workdir))
      for name, workdir in made.items()})
  size = (runs["stopped"] / run_metrics.METRICS_FILE).stat().st_size  # Lines 10 and 20.
  words = {"torn": f"bytes, fewer than the {size} of the 2 lines logged up to step 20",
           "empty": "is empty; it held the 2 lines logged up to step 20",
           "deleted": "is missing; it held the 2 lines logged up to step 20",
           "edited": "does not hold the 2 lines logged up to step 20 as they were written"}
  for name, said in words.items():
    line = assert_refused(ran[name].result, f"{made[name] / 'metrics.jsonl'} ")
    assert said in line, line
    assert ran[name].before == ran[name].after, name
  result = ran["torn_after"].result
  assert result.returncode == 0 and result.stderr == "", result.stderr
  warned = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
  assert warned == [f"warning: {log}: its last line, after the lines logged up to step 16, "
                    "is cut off (an append the run's stop interrupted); dropped: the run "
                    "logs the steps after 16 again"], result.stdout
  assert _lines(made["torn_after"]) == _lines(runs["finished"])
  _same_params(made["torn_after"], runs["finished"])
