"""Training workdirs: a bundle ``train`` did not write is never replaced (F10), training
checkpoints carry checksums verified on resume (F15), no run or demo writes into a bundle
(F1), and a resumed run logs the lines an uninterrupted run logs (F8).

Faults from /work/notes/walk_cli_faults.md. The command line's promises (one line, exit 2,
nothing written) are checked through the real command (``cli_support.run_commands``); the
workdirs are trained in-process on a tiny config (``cli_support.small_config``).
"""

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

#: 22 steps an epoch (1438 digits, batch 64): a checkpoint every 4 steps, lines every 10.
CONFIG = small_config(epochs=1, checkpoint_every=4, log_every=10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """``finished``: a finished workdir of :data:`CONFIG`; ``stopped``: the same run stopped
  at step 20 (steps 16 and 20 saved); ``config``: :data:`CONFIG`'s config file."""
  root = tmp_path_factory.mktemp("runs")
  workflow.train(CONFIG, root / "finished", progress=False)
  with pytest.raises(workflow.RunStopped):  # Checks every 2 steps: the 10th is step 20.
    workflow.train(CONFIG, root / "stopped", progress=False, stop=stopper(10))
  return {"finished": root / "finished", "stopped": root / "stopped",
          "config": config_file(root, CONFIG)}


def _copy(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  shutil.copytree(src, dest, symlinks=True)
  return dest


def _flip(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x01
  path.write_bytes(bytes(data))


def _largest_file(folder: pathlib.Path) -> pathlib.Path:
  return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


# ------------------------------------------------------------------ F15: checkpoint checksums


def _saved(tmp_path, steps=(1, 2)) -> tuple[pathlib.Path, dict]:
  state = {"w": jnp.arange(4096.0), "key": jax.random.key(0)}
  with checkpointing.TrainCheckpointer(tmp_path / "run") as ckpt:
    for step in steps:
      ckpt.save(step, state, {"step": step})
  return tmp_path / "run", state


@pytest.mark.parametrize("damage", ["flip", "truncate", "extra", "missing", "meta_edit"])
def test_a_damaged_training_checkpoint_is_refused_naming_the_step_to_fall_back_to(tmp_path,
                                                                                 damage):
  run, state = _saved(tmp_path)
  victim = _largest_file(run / "2" / "state")
  if damage == "flip":
    _flip(victim)
  elif damage == "truncate":
    victim.write_bytes(victim.read_bytes()[:100])
  elif damage == "extra":
    (victim.parent / "0123abcd").write_bytes(b"x")
  elif damage == "missing":
    victim.unlink()
  else:  # A metadata edit that leaves valid JSON.
    meta_file = run / "2" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["metadata"]["step"] = 7
    meta_file.write_text(json.dumps(meta))
  before = tree_digest(run)
  with checkpointing.TrainCheckpointer(run) as ckpt:
    with pytest.raises(checkpointing.CheckpointError) as refused:
      ckpt.restore(None, jax.eval_shape(lambda: state))
    assert ckpt.restore(1, jax.eval_shape(lambda: state)).step == 1  # Intact: restores.
  message = str(refused.value)
  assert message.startswith(f"{run / '2'}: ") and "\n" not in message, message
  assert message.endswith(f"the checkpoint is damaged: delete {run / '2'} to resume from "
                          "step 1"), message
  assert tree_digest(run) == before


def test_every_step_is_sealed_before_it_appears_and_an_old_one_restores_with_a_warning(
    tmp_path):
  run, state = _saved(tmp_path, steps=(1,))
  meta_file = run / "1" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  assert meta["version"] == checkpointing.TRAIN_VERSION == 2
  assert meta["meta_sha256"] == checkpointing.meta_checksum(meta)
  assert any(k.startswith("state/") for k in meta["files_sha256"])
  assert checkpointing.read_step_metadata(run) == (1, meta)
  # A step written before checksums (version 1): restored, unverified, with a warning.
  old = {k: v for k, v in meta.items() if k not in ("files_sha256", "meta_sha256")}
  meta_file.write_text(json.dumps({**old, "version": 1}))
  _flip(_largest_file(run / "1" / "state"))  # Undetectable there: the warning says so.
  with checkpointing.TrainCheckpointer(run) as ckpt, warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    ckpt.restore(None, jax.eval_shape(lambda: state))
  assert [w.category for w in seen] == [checkpointing.UnverifiedCheckpointWarning], seen


@pytest.mark.slow  # Two commands that train (~10 s).
def test_train_refuses_to_resume_from_a_damaged_checkpoint(runs, tmp_path):
  """F15: a flipped byte in the checkpoint a resume reads: one line naming it and the step
  to fall back to, exit 2, nothing written; deleting it resumes from there, and the run ends
  bitwise equal to an uninterrupted one."""
  workdir = _copy(runs["stopped"], tmp_path / "w")
  _flip(_largest_file(workdir / "train" / "20" / "state"))
  args = ("train", "-q", "--config", runs["config"], "--workdir", workdir)
  ran = run_commands({
      "damaged": dict(args=args, watch=[workdir / "train", workdir / "metrics.jsonl"]),
  })["damaged"]
  line = assert_refused(ran.result, f"delete {workdir / 'train' / '20'} to resume from step 16")
  assert "does not match the SHA-256 checksum recorded when step 20 was saved" in line
  assert ran.before == ran.after and not (workdir / "bundle").exists()
  shutil.rmtree(workdir / "train" / "20")
  resumed = workflow.train(CONFIG, workdir, progress=False)
  uninterrupted = checkpointing.load_bundle(runs["finished"])
  for got, want in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(uninterrupted.params)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# --------------------------------------------------- F10 and F1: bundles train did not write


def _bundles(runs, tmp_path) -> dict[str, pathlib.Path]:
  """Workdirs whose ``bundle/`` holds something the run of :data:`CONFIG` did not write."""
  finished = checkpointing.load_bundle(runs["finished"])
  forgotten, _ = workflow.forget_bundle(finished, [3])
  made = {}
  for name in ("forgotten", "other_arrays", "other_config", "damaged", "not_a_bundle"):
    made[name] = _copy(runs["finished"], tmp_path / name)
  checkpointing.save_bundle(made["forgotten"] / "bundle", forgotten, force=True)
  moved = finished.replace(params=jax.tree.map(lambda x: x + 1e-3, finished.params))
  checkpointing.save_bundle(made["other_arrays"] / "bundle", moved, force=True)
  checkpointing.save_bundle(made["other_config"] / "bundle",
                            finished.replace(config={**finished.config, "epochs": 3}),
                            force=True)
  _flip(_largest_file(made["damaged"] / "bundle" / "arrays"))
  shutil.rmtree(made["not_a_bundle"] / "bundle")
  (made["not_a_bundle"] / "bundle").mkdir()
  (made["not_a_bundle"] / "bundle" / "notes.txt").write_text("mine")
  # A run that has not finished, with a bundle of the same config put in its workdir.
  made["unfinished"] = _copy(runs["stopped"], tmp_path / "unfinished")
  shutil.copytree(runs["finished"] / "bundle", made["unfinished"] / "bundle")
  return made


def test_train_never_replaces_a_bundle_it_did_not_write(runs, tmp_path):
  """F10: rerun on a workdir whose bundle/ is a forgotten model (put there with --force),
  another run's bundle, a damaged one or a folder of the user's: one line saying what
  differs, exit 2, the workdir untouched. The run's own bundle: finished, nothing written."""
  made = _bundles(runs, tmp_path)
  own = _copy(runs["finished"], tmp_path / "own")
  cases = {name: dict(args=("train", "-q", "--config", runs["config"], "--workdir", workdir),
                      watch=[workdir]) for name, workdir in {**made, "own": own}.items()}
  ran = run_commands(cases)
  words = {"forgotten": "its history records 1 change(s) since training: forget [3]",
           "other_arrays": "its arrays are not the ones of the run's final checkpoint, step 22",
           "other_config": "it was trained with another config: epochs 3 there, 1 in this run",
           "damaged": "it does not load as a bundle: array file arrays/",
           "not_a_bundle": "it does not load as a bundle: is not a mnemonic-jax bundle",
           "unfinished": "the run has not finished: its last checkpoint, step 20, is not its "
                         "final one"}
  for name, said in words.items():
    line = assert_refused(ran[name].result, said)
    assert f"{made[name] / 'bundle'} is not the bundle this run wrote (" in line, line
    assert "train never replaces it" in line, line
    assert ran[name].before == ran[name].after, name
  assert ran["own"].result.returncode == 0, ran["own"].result.stderr
  assert "is finished" in ran["own"].result.stdout
  assert ran["own"].before == ran["own"].after


def test_the_library_refuses_too_even_a_bundle_that_appears_while_it_trains(runs, tmp_path,
                                                                           monkeypatch):
  made = _bundles(runs, tmp_path)
  before = tree_digest(made["forgotten"])
  with pytest.raises(checkpointing.CheckpointError, match="its history records"):
    workflow.train(CONFIG, made["forgotten"], progress=False)
  assert tree_digest(made["forgotten"]) == before
  # A bundle put there after the first look: found before the run's bundle is saved.
  from mnemonic_jax.workflow import run_records  # pylint: disable=import-outside-toplevel
  workdir = _copy(runs["stopped"], tmp_path / "late")
  real_nothing_at = run_records.nothing_at
  looks = []

  def planted(path):  # The second look (before saving) finds a bundle planted meanwhile.
    looks.append(path)
    if len(looks) == 2:
      other = checkpointing.load_bundle(runs["finished"])
      checkpointing.save_bundle(path, other.replace(history=({"classes": [3]},)))
    return real_nothing_at(path)

  monkeypatch.setattr(run_records, "nothing_at", planted)
  with pytest.raises(checkpointing.CheckpointError, match="it appeared while this run trained"):
    workflow.train(CONFIG, workdir, progress=False)
  assert len(looks) == 2
  assert checkpointing.load_bundle(workdir / "bundle").history == ({"classes": [3]},)


def test_no_run_or_demo_writes_into_a_bundle(runs, tmp_path):
  """F1: train --workdir a bundle (or a folder inside one), demo --output-dir a bundle or a
  train workdir, forget --output inside a bundle: one line, exit 2, nothing written."""
  bundle = _copy(runs["finished"] / "bundle", tmp_path / "b")
  workdir = _copy(runs["finished"], tmp_path / "w")
  train = ("train", "-q", "--config", runs["config"], "--workdir")
  cases = {
      "train_into_bundle": dict(args=(*train, bundle), watch=[bundle]),
      "train_inside_bundle": dict(args=(*train, bundle / "arrays" / "run"), watch=[bundle]),
      "train_into_workdir_bundle": dict(args=(*train, workdir / "bundle"), watch=[workdir]),
      "demo_into_bundle": dict(args=("demo", "-q", "--output-dir", bundle, "--force"),
                               watch=[bundle]),
      "demo_into_workdir": dict(args=("demo", "-q", "--output-dir", workdir), watch=[workdir]),
      # The same kind for every command writing a bundle: forget --output base/sub.
      "forget_inside_bundle": dict(args=("forget", "-q", "--checkpoint", workdir, "--classes",
                                         "3", "--output", bundle / "sub"), watch=[bundle]),
  }
  ran = run_commands(cases)
  words = {"train_into_bundle": f"workdir {bundle} is a bundle",
           "train_inside_bundle": f"lies inside the bundle {bundle}",
           "train_into_workdir_bundle": f"workdir {workdir / 'bundle'} is a bundle",
           "demo_into_bundle": f"--output-dir {bundle} is a bundle",
           "demo_into_workdir": f"--output-dir {workdir} is a train workdir",
           "forget_inside_bundle": f"lies inside the bundle {bundle}; writing there would "
                                   "change that bundle"}
  for name, said in words.items():
    assert_refused(ran[name].result, said)
    assert ran[name].before == ran[name].after, name
  assert not (bundle / "arrays" / "run").exists() and not (bundle / "sub").exists()
  assert checkpointing.enclosing_bundle(tmp_path) is None


# ------------------------------------------------------------------ F8: resumed metrics lines


def _lines(workdir):
  return [{k: v for k, v in line.items() if k != "seconds"}
          for line in run_metrics.read_metrics(workdir)]


@pytest.mark.parametrize("log_every,checkpoint_every,checks", [(10, 6, 5), (5, 3, 10)])
def test_a_resumed_run_logs_exactly_the_uninterrupted_lines(tmp_path, log_every,
                                                            checkpoint_every, checks):
  """F8: a run killed after logging step 10 but before its checkpoint of step 10 (the last
  complete one is 6, or 9) resumes from there and logs the step-10 line again as the mean of
  steps 1-10, bitwise the uninterrupted run's, and every later line alike (not a mean of
  steps 7-10). With a check every step (gcd 1) the window's unfinished chunk is carried too.
  """
  config = small_config(epochs=1, checkpoint_every=checkpoint_every, log_every=log_every)
  workflow.train(config, tmp_path / "ref", progress=False)
  workdir = tmp_path / "killed"
  with pytest.raises(workflow.RunStopped) as stopped:
    workflow.train(config, workdir, progress=False, stop=stopper(checks))
  step = stopped.value.step
  assert step % log_every == 0 and step % checkpoint_every, step
  shutil.rmtree(workdir / "train" / str(step))  # As if killed before this save completed.
  assert [line["step"] for line in _lines(workdir)][-1] == step  # Logged before the kill.
  workflow.train(config, workdir, progress=False)
  assert _lines(workdir) == _lines(tmp_path / "ref")
  seconds = [line["seconds"] for line in run_metrics.read_metrics(workdir)]
  assert seconds == sorted(seconds)  # Training seconds, carried across the resume.


def test_a_window_resumed_from_its_snapshot_gives_bitwise_the_same_means():
  values = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
  whole, first = run_metrics.MetricsWindow(), run_metrics.MetricsWindow()
  for window, rows in ((whole, values[:21]), (first, values[:21])):
    for loss, acc in rows:
      window.add_means({"loss": jnp.float32(loss), "acc": jnp.float32(acc)}, 1)
  snapshot = json.loads(json.dumps(whole.snapshot()))  # As a checkpoint stores it.
  assert snapshot == first.snapshot() and snapshot["steps"] == 21
  second = run_metrics.MetricsWindow()
  second.resume(snapshot)
  for window in (whole, second):
    for loss, acc in values[21:]:
      window.add_means({"loss": jnp.float32(loss), "acc": jnp.float32(acc)}, 1)
  assert whole.mean() == second.mean()
  with pytest.raises(errors.BadCheckpoint, match="not a window of step metrics"):
    run_metrics.MetricsWindow().resume({"steps": 3, "sums": {"loss": "x"}})


def test_a_resume_that_cannot_recompute_later_lines_keeps_them(tmp_path):
  """From a checkpoint without the window (an older release's), the killed run's later
  lines stand and are not written again."""
  log = run_metrics.MetricsLog(tmp_path, resume_step=None)
  for step in (10, 20):
    log.write(step, {"loss": float(step)})
  log.close()
  log = run_metrics.MetricsLog(tmp_path, resume_step=16, keep_later=True)
  log.write(20, {"loss": 0.5})  # A mean of steps 17-20 only: not written.
  log.write(30, {"loss": 3.0})
  log.close()
  assert [(r["step"], r["loss"]) for r in run_metrics.read_metrics(tmp_path)] == [
      (10, 10.0), (20, 20.0), (30, 3.0)]
  assert os.path.exists(tmp_path / run_metrics.METRICS_FILE)
