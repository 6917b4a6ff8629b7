"""walk7 F2-F4: a finished run's rerun checks its log without the final checkpoint too
(steps in order, none past the run's last, each at the epoch the run logs it), says what is
true of a finished run, and a refused rerun or resume leaves the workdir as it was (its
lock too)."""

import json
import re
import shutil

import pytest

from cli_support import assert_refused, config_file, run_commands, small_config
from mnemonic_jax import errors, run_metrics

#: small_config(): 176 steps (1438 digits, batch 64: 22 an epoch, 8 epochs), lines at 100
#: and 176.
CONFIG = small_config()


def _line(step, epoch):
  return json.dumps({"step": step, "epoch": epoch, "loss": 0.5}).encode() + b"\n"


def test_a_finished_rerun_without_its_checkpoints_checks_the_steps_of_its_log(
    small_trained_copy, tmp_path):
  """train/ removed: the log's lines were checked one by one only for being JSON with an
  int step (and against step None), so a step past the run's end, a negative one, a
  duplicated or reordered line and another run's log passed as the run's, exit 0; the
  refusal said 'it finished at step None'. Now one line naming the line, exit 2, nothing
  modified; the run's own log still passes."""
  workdir = small_trained_copy().parent
  shutil.rmtree(workdir / "train")
  own = (workdir / run_metrics.METRICS_FILE).read_bytes()
  first, last = own.splitlines(keepends=True)
  assert json.loads(last)["step"] == 176 and json.loads(first)["step"] == 100
  logs = {
      "past_end": (own + b'{"step": 1000}\n', "line 3", "logs step 1000 at epoch None"),
      "negative": (own + b'{"step": -5}\n', "line 3", "step -5 after step 176"),
      "duplicated": (own + last, "line 3", "step 176 after step 176"),
      "reordered": (last + first, "line 2", "step 100 after step 176"),
      "another_run": (_line(10, 0.4545) + _line(22, 1.0), "line 2", "at epoch 8 (config"),
      "off_epoch": (_line(100, 4.0) + last, "line 1",
                    "step 100 at epoch 4.0; in 8 epochs ending at "
                    "step 176 (the last line's) it is at epoch 4.5455"),
  }
  cases = {}
  for name, (data, _, _) in logs.items():
    case = tmp_path / name
    shutil.copytree(workdir, case, symlinks=True)
    (case / run_metrics.METRICS_FILE).write_bytes(data)
    cases[name] = dict(args=("train", "-q", "--config", config_file(tmp_path, CONFIG),
                             "--workdir", case), watch=[case])
  cases["own"] = dict(args=("train", "-q", "--config", config_file(tmp_path, CONFIG),
                            "--workdir", workdir), watch=[workdir])
  ran = run_commands(cases)
  for name, (_, line, words) in logs.items():
    text = assert_refused(ran[name].result, f"{line} (")
    assert words in text and "step None" not in text and "is not a line the run logged" in text, (
        name, text)
    assert ran[name].before == ran[name].after, name
  assert ran["own"].result.returncode == 0, ran["own"].result.stderr
  assert "is finished" in ran["own"].result.stdout
  assert ran["own"].before == ran["own"].after


def test_read_metrics_refuses_a_step_out_of_order(tmp_path):
  """read_metrics returned duplicated and reordered steps as the run's; a log MetricsLog
  writes holds each step once, in order, from 1."""
  log = tmp_path / run_metrics.METRICS_FILE
  for data, words in ((_line(10, 1.0) + _line(10, 1.0), "line 2"),
                      (_line(20, 2.0) + _line(10, 1.0), r"line 2 .*step 10 after step 20"),
                      (_line(0, 0.0), r"line 1 .*steps start at 1")):
    log.write_bytes(data)
    with pytest.raises(errors.BadCheckpoint, match=words):
      run_metrics.read_metrics(tmp_path)
  log.write_bytes(_line(10, 1.0) + _line(20, 2.0) + b'{"step": 5')  # A torn last line.
  assert [r["step"] for r in run_metrics.read_metrics(tmp_path)] == [10, 20]


def test_a_finished_rerun_says_what_is_true_of_its_log(small_trained_copy, tmp_path):
  """With the final checkpoint: an empty log, a line removed or a value edited shorter were
  refused as if 'a resume would end with a log that lacks them' (none is resumed), the
  edit called 'cut short'. Without it, an empty log passed where a missing one passes too
  but the empty one is named as the run's metrics: refused now, as with the checkpoint.
  A missing log passes (the rerun names none)."""
  workdir = small_trained_copy().parent
  own = (workdir / run_metrics.METRICS_FILE).read_bytes()
  edited = re.sub(rb'"loss": [0-9.e-]+', b'"loss": 9.9', own, count=1)  # As sed -i would.
  assert len(edited) < len(own) and edited.count(b"\n") == 2
  logs = {"empty": (b"", "is empty; it is not the log of the finished run"),
          "empty_no_train": (b"", "is empty; it is not the log of the finished run"),
          "line_removed": (own[own.index(b"\n") + 1:], "not the log the finished run wrote"),
          "edited_shorter": (edited, "lines removed, or edited); it is not the log the fini"),
          "missing": (None, None)}
  cases = {}
  for name, (data, _) in logs.items():
    case = shutil.copytree(workdir, tmp_path / name, symlinks=True)
    (case / run_metrics.METRICS_FILE).unlink()
    if data is not None:
      (case / run_metrics.METRICS_FILE).write_bytes(data)
    if name.endswith("no_train"):
      shutil.rmtree(case / "train")
    cases[name] = dict(args=("train", "-q", "--config", config_file(tmp_path, CONFIG),
                             "--workdir", case), watch=[case])
  ran = run_commands(cases)
  for name, (data, words) in logs.items():
    assert ran[name].before == ran[name].after, name
    if data is None:
      assert ran[name].result.returncode == 0, ran[name].result.stderr
      assert "metrics.jsonl" not in ran[name].result.stdout
      continue
    text = assert_refused(ran[name].result, words)
    assert "resume" not in text and "remove the file (the rerun then names no log)" in text, text


def test_a_refused_resume_leaves_the_workdir_as_it_was_its_lock_too(small_trained_copy,
                                                                    tmp_path):
  """walk7 F4: a resume refused under the run's lock (its log emptied, another config)
  left a new WORKDIR/.lock, or the one there rewritten with its own process id. Now the
  lock file is put back as it was found: absent, or with its earlier contents."""
  workdir = small_trained_copy().parent
  shutil.rmtree(workdir / "bundle")  # train/ at its last step: the run resumes there.
  (workdir / ".lock").write_bytes(b"12345\n")  # Another run's, long gone.
  refusals = {"emptied_log": ("is empty", CONFIG), "emptied_log_no_lock": ("is empty", CONFIG),
              "other_config": ("holds a run with another config",
                               small_config(learning_rate=0.05))}
  cases = {}
  for name, (_, config) in refusals.items():
    case = shutil.copytree(workdir, tmp_path / name, symlinks=True)
    if name.startswith("emptied"):
      (case / run_metrics.METRICS_FILE).write_bytes(b"")
    if name != "emptied_log":
      (case / ".lock").unlink()
    folder = tmp_path / f"{name}_config"
    folder.mkdir()
    cases[name] = dict(args=("train", "-q", "--config", config_file(folder, config),
                             "--workdir", case), watch=[case])
  ran = run_commands(cases)
  for name, (words, _) in refusals.items():
    assert_refused(ran[name].result, words)
    assert ran[name].before == ran[name].after, name


def test_workdir_lock_puts_its_file_back_only_for_an_untouched_refusal(tmp_path):
  """The folders the lock made for a refused block go with its file; a block that wrote
  (or says nothing) keeps the file; a block that ends normally keeps it too."""
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel
  for untouched, kept in ((lambda: True, False), (lambda: False, True), (None, True)):
    with pytest.raises(errors.BadRequest):
      with checkpointing.workdir_lock(tmp_path / "a" / "b", untouched=untouched):
        raise errors.BadRequest("refused")
    assert (tmp_path / "a" / "b" / ".lock").exists() == kept and (tmp_path / "a").exists() == kept
    shutil.rmtree(tmp_path / "a", ignore_errors=True)
