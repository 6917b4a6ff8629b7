"""A finished run's metrics log is the run's own, and a log read back never drops a junk
line silently (closing_prev2 F10: a junk line appended to a finished workdir's
``metrics.jsonl``, ``train/`` deleted, passed the "finished" rerun, which names the log as
the run's metrics)."""

import shutil

import pytest

from cli_support import assert_refused, config_file, run_commands, small_config
from mnemonic_jax import errors, run_metrics, workflow

#: 22 steps (1438 digits, batch 64), lines every 10 steps: 10, 20, 22.
CONFIG = small_config(epochs=1, checkpoint_every=11, log_every=10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  root = tmp_path_factory.mktemp("finished")
  workflow.train(CONFIG, root / "run", progress=False)
  return root / "run", config_file(root, CONFIG)


def test_a_finished_rerun_refuses_a_log_with_lines_the_run_did_not_write(finished, tmp_path):
  """Junk appended, with and without the checkpoints (which record the log): one line
  naming the line, exit 2, nothing modified. The run's own log without the checkpoints (its
  lines checked one by one): finished, exit 0."""
  run, config = finished
  cases, made = {}, {}
  for name in ("junk", "junk_no_train", "own_no_train"):
    made[name] = shutil.copytree(run, tmp_path / name, symlinks=True)
    log = made[name] / run_metrics.METRICS_FILE
    if name.startswith("junk"):
      log.write_bytes(log.read_bytes() + b"junk\n")
    if name.endswith("no_train"):
      shutil.rmtree(made[name] / "train")
    cases[name] = dict(args=("train", "-q", "--config", config, "--workdir", made[name]),
                       watch=[made[name]])
  ran = run_commands(cases)
  for name, words in {"junk": "line 4 ('junk') is not a line the run logged",
                      "junk_no_train": "line 4 ('junk') is not a line the run logged"}.items():
    assert_refused(ran[name].result, words)
    assert ran[name].before == ran[name].after, name
  own = ran["own_no_train"]
  assert own.result.returncode == 0 and "is finished" in own.result.stdout, own.result.stderr
  assert own.before == own.after


def test_a_log_read_back_refuses_a_junk_line_but_skips_a_torn_last_one(tmp_path):
  """read_metrics skipped any line that was not JSON; a resume from a checkpoint that
  records no log (an older release's) dropped it silently from the rewritten log."""
  log = tmp_path / run_metrics.METRICS_FILE
  log.write_bytes(b'{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
  assert run_metrics.read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]
  log.write_bytes(b'{"step": 1, "loss": 1.0}\n[1]\n{"step": 2, "loss": 0.5}\n')
  with pytest.raises(errors.BadCheckpoint, match=r"line 2 \('\[1\]'\) is not a logged step"):
    run_metrics.read_metrics(tmp_path)
  with pytest.raises(errors.BadCheckpoint, match="line 2"):
    run_metrics.check_resumable_log(tmp_path, 1, None)
  with pytest.raises(errors.BadCheckpoint, match="line 2"):
    run_metrics.MetricsLog(tmp_path, resume_step=1)
  assert log.read_bytes() == b'{"step": 1, "loss": 1.0}\n[1]\n{"step": 2, "loss": 0.5}\n'
