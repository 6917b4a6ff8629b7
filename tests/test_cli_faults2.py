"""Faults of issue #22 owned by the command line, each through the real command (or the
public function):

1. Tracebacks where one line was promised: a full disk during ``forget`` or ``train``; a
   report that cannot be written after the bundle was saved (``> /dev/full``); JAX told
   to use a platform the machine lacks (``JAX_PLATFORMS=gpu``); Ctrl-C at any moment;
   ``mj.fit`` on a model without a ``train`` keyword.
2. Text from a bundle or a dataset (class names, dataset names, error messages) reaches
   the terminal with its control characters escaped.
3. ``forget`` on a model that never saw its codes warns only what is true: measured on
   images (``--dataset``), a class that is gone is not said to be maybe still known.

Small digits bundles (MLP 64-32-10) are trained in-process (the one with codes once per
test run, the one without once per module); commands run as ``python -m mnemonic_jax.cli``
unless a fault can only be staged in-process.
"""

import errno
import gc
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import checkpointing, cli, errors, workflow
from mnemonic_jax.cli import commands, report
from mnemonic_jax.data import load_dataset

from cli_support import (REPO, assert_refused, compilation_cache, run_commands, small_config,
                         tree_digest)

TIMEOUT_S = 300
#: The exit status of a command whose output was saved but whose report was lost.
EXIT_REPORT_LOST = 3
CONFIG = "digits_mlp:quick"
#: ``train`` small and quick (the paper's digits config, a 32-unit MLP, two epochs).
TRAIN_FLAGS = ("--config.model_kwargs.hidden=(32,)", "--config.epochs=2", "-q")
#: Runs the command with Ctrl-C handled as in a terminal, even when the tests run with
#: SIGINT ignored (a background job); set in the child.
_INTERRUPTIBLE = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                  "signal.default_int_handler); sys.argv[0] = 'mnemonic-jax'; "
                  "runpy.run_module('mnemonic_jax.cli', run_name='__main__')")


def _env(**extra: str) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env.setdefault("MNEMONIC_JAX_CACHE_DIR", compilation_cache())
  env.pop("JAX_PLATFORMS", None)
  env.update(extra)
  return env


def cli_run(*args, stdout=subprocess.PIPE, **extra_env: str) -> subprocess.CompletedProcess:
  """``python -m mnemonic_jax.cli ARGS`` to completion (stdout may be a file)."""
  return subprocess.run([sys.executable, "-m", "mnemonic_jax.cli", *map(str, args)],
                        stdout=stdout, stderr=subprocess.PIPE, text=True, env=_env(**extra_env),
                        cwd=REPO, timeout=TIMEOUT_S, check=False)


def one_error_line(result, status: int, *words: str) -> str:
  """Exactly one ``mnemonic-jax: error:`` line on stderr holding ``words``; the status."""
  assert result.returncode == status, (
      f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}")
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("mnemonic-jax: error: "), result.stderr[-3000:]
  for word in words:
    assert word in lines[0], lines[0]
  return lines[0]


@pytest.fixture(scope="module")
def trained(small_trained_copy) -> pathlib.Path:
  """A small bundle trained with codes (``small_config()``): this module's copy."""
  return small_trained_copy()


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> pathlib.Path:
  """A small bundle trained without codes (``t_mix = 0``)."""
  workdir = tmp_path_factory.mktemp("plain")
  workflow.train(small_config(t_mix=0.0), workdir, progress=False)
  return workdir / "bundle"


@pytest.fixture
def terminal_ctrl_c():
  """Ctrl-C raises KeyboardInterrupt in this process, as in a terminal, for the test."""
  before = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, before)


@pytest.fixture
def tiny_disk(tmp_path):
  """A 64 KiB tmpfs (a full disk for a bundle of ~100 KiB), or a skip without mounts."""
  mount = tmp_path / "tiny"
  mount.mkdir()
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                        capture_output=True, check=False)
  if done.returncode != 0:
    pytest.skip("cannot mount a tmpfs here (needs root); the in-process tests cover it")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


# --------------------------------------------------------------------------------------
# 1a. A full disk: one line naming the output and the cause, exit 2, nothing left behind.

#: What tensorstore raises for a full disk (a ValueError; its file is a staging path).
TENSORSTORE_FULL = (
    'RESOURCE_EXHAUSTED: Error writing local file "/x/.out.saving-1/arrays/_sharding": '
    'Failed writing: "/x/.out.saving-1/arrays/_sharding.__lock": Failed to write 511 bytes '
    "to file 7: No space left on device [os_error_code='28']")


def test_the_os_error_behind_a_failure_is_found():
  from mnemonic_jax import environment  # pylint: disable=import-outside-toplevel

  found = environment.os_error(ValueError(TENSORSTORE_FULL))
  assert found is not None and found.errno == errno.ENOSPC
  assert environment.is_environment_error(ValueError(TENSORSTORE_FULL))
  wrapped = RuntimeError("save failed")
  wrapped.__cause__ = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
  assert environment.os_error(wrapped).errno == errno.EDQUOT
  assert environment.os_error(ValueError("shape (3,) does not fit")) is None
  assert not environment.is_environment_error(OSError(errno.ENOENT, "absent", "f"))


def test_full_disk_during_forget_through_the_command(trained, tiny_disk):
  before = tree_digest(trained)
  out = tiny_disk / "out"
  result = run_commands({"forget": dict(args=(  # Forked after the imports.
      "forget", "--checkpoint", trained, "--classes", "3", "--output", out, "-q"))},
                        env=_env())["forget"].result
  one_error_line(result, 2, str(out), "No space left on device")
  assert result.stdout == ""
  assert list(tiny_disk.iterdir()) == [], "a full disk left files behind"
  assert tree_digest(trained) == before


@pytest.mark.slow  # About 13 s: a real training run filling a small disk.
def test_full_disk_during_train_through_the_command(tiny_disk):
  workdir = tiny_disk / "run"
  result = cli_run("train", "--config", CONFIG, *TRAIN_FLAGS, "--workdir", workdir)
  one_error_line(result, 2, str(workdir), "No space left on device")
  left = [p for p in workdir.rglob("*") if "tmp" in p.name or p.name.startswith(".bundle")]
  assert left == [], f"a full disk left {left}"


def _full_disk(*args, **kwargs):
  raise ValueError(TENSORSTORE_FULL)


@pytest.mark.slow  # The command's full-disk case below stays in the default suite.
def test_full_disk_in_process_forget_and_train(trained, tmp_path, monkeypatch, capsys):
  """The same fault staged where no tmpfs can be mounted: tensorstore's very error."""
  real = checkpointing.bundles._bundle_checkpointer  # pylint: disable=protected-access

  class Filling:
    """Orbax's checkpointer, whose save writes a part and then finds the disk full."""

    def __init__(self):
      self._real = real()

    def __getattr__(self, name):
      return getattr(self._real, name)

    def save(self, path, *args, **kwargs):
      pathlib.Path(path).mkdir(parents=True, exist_ok=True)
      (pathlib.Path(path) / "half").write_bytes(b"half a save")
      _full_disk()

  monkeypatch.setattr(checkpointing.bundles, "_bundle_checkpointer", Filling)
  out = tmp_path / "out"
  argv = ["forget", "--checkpoint", str(trained), "--classes", "3", "--output", str(out),
          "-q", "--no-compilation-cache"]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and str(out) in err and "No space left on device" in err, err
  assert sorted(p.name for p in tmp_path.iterdir()) == []
  monkeypatch.setattr(checkpointing.bundles, "_bundle_checkpointer", real)

  monkeypatch.setattr(checkpointing.TrainCheckpointer, "save", _full_disk)
  workdir = tmp_path / "run"
  assert cli.main(["train", "--config", CONFIG, *TRAIN_FLAGS, "--workdir", str(workdir),
                   "--no-compilation-cache"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and str(workdir) in err and "No space left" in err, err


# --------------------------------------------------------------------------------------
# 1b. The report cannot be written after the bundle was saved.


@pytest.fixture(scope="module")
def forget_runs(trained, plain, tmp_path_factory):
  """The ``forget`` commands of the tests below, in turn, each its own process forked
  after the imports (``cli_support.run_commands``); name -> (output folder, Ran)."""
  lost, never = tmp_path_factory.mktemp("lost"), tmp_path_factory.mktemp("never")
  lost_args = ("forget", "--checkpoint", trained, "--classes", "3", "--output", lost / "out",
               "-q")
  ran = run_commands({
      "lost": dict(args=lost_args, stdout_to="/dev/full"),
      "again": dict(args=lost_args),  # A rerun on the saved output.
      "never": dict(args=("forget", "--checkpoint", plain, "--classes", "3", "--output",
                          never / "out", "--dataset", "digits", "-q")),
  }, env=_env())
  return {"lost": (lost, ran["lost"]), "again": (lost, ran["again"]),
          "never": (never, ran["never"])}


def test_a_lost_report_after_a_complete_save_says_so(forget_runs):
  tmp_path, ran = forget_runs["lost"]
  out = tmp_path / "out"
  line = one_error_line(ran.result, EXIT_REPORT_LOST, str(out), "No space left on device",
                        "complete")
  assert "report" in line
  bundle = checkpointing.load_bundle(out)  # Complete and valid: its history says what.
  assert bundle.forgotten_classes == (3,)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
  # A rerun is refused as usual: the output is there (documented in command-line.md).
  _, again = forget_runs["again"]
  assert_refused(again.result, "already exists")


@pytest.mark.slow  # The saved case runs by default; this one adds a command run.
def test_a_lost_report_with_nothing_saved_is_exit_2(trained):
  with open("/dev/full", "w", encoding="utf-8") as full:
    result = cli_run("evaluate", "--checkpoint", trained, "-q", stdout=full)
  one_error_line(result, 2, "stdout", "No space left on device")


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(trained):
  """``mnemonic-jax evaluate ... | head -1``: status 128 + SIGPIPE, no error line."""
  read, write = os.pipe()
  os.close(read)  # The reader is gone before the first line.
  try:
    result = cli_run("evaluate", "--checkpoint", trained, "-q", stdout=write)
  finally:
    os.close(write)
  assert result.returncode == 128 + signal.SIGPIPE, result.stderr[-3000:]
  assert "error" not in result.stderr.lower() and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------
# 1c. JAX told to use a platform this machine lacks: an environment error, named so.


@pytest.mark.parametrize("command", [
    "forget", pytest.param("train", marks=pytest.mark.slow),
    pytest.param("evaluate", marks=pytest.mark.slow)])
def test_a_platform_jax_cannot_start_is_named(trained, tmp_path, command):
  out = tmp_path / "out"
  args = {"forget": ("forget", "--checkpoint", trained, "--classes", "3", "--output", out),
          "train": ("train", "--config", CONFIG, *TRAIN_FLAGS, "--workdir", out),
          "evaluate": ("evaluate", "--checkpoint", trained)}[command]
  result = cli_run(*args, "-q", JAX_PLATFORMS="gpu")
  line = one_error_line(result, 2, "JAX_PLATFORMS", "gpu")
  assert "not a mnemonic-jax bundle" not in line and not out.exists()


@pytest.mark.slow  # The command's case runs by default (forget).
def test_the_library_names_a_platform_jax_cannot_start(trained, tmp_path):
  """Checks that catch every exception let the environment's through, named."""
  child = (
      "import sys\n"
      "from mnemonic_jax import checkpointing, errors\n"
      "try:\n"
      f"  checkpointing.import_params({str(tmp_path / 'orbax')!r}, {str(tmp_path / 'c.npy')!r},"
      " model_name='mlp', num_classes=10, input_shape=(8, 8, 1), model_kwargs={'hidden': (32,)},"
      f" mean=(0.,), std=(1.,), output={str(tmp_path / 'out')!r})\n"
      "except errors.BadEnvironment as e:\n"
      "  print('environment:', e)\n"
      "except Exception as e:\n"
      "  print('other:', type(e).__name__, e)\n")
  bundle = checkpointing.load_bundle(trained)
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).save(tmp_path / "orbax", bundle.params)
  np.save(tmp_path / "c.npy", np.asarray(bundle.codes))
  done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                        env=_env(JAX_PLATFORMS="gpu"), cwd=REPO, timeout=TIMEOUT_S,
                        check=False)
  assert done.stdout.startswith("environment:") and "JAX_PLATFORMS" in done.stdout, (
      done.stdout + done.stderr[-2000:])


# --------------------------------------------------------------------------------------
# 1d. Ctrl-C: one line and exit 130 whatever the moment; never half-written, never ignored.


def _interrupt_while(monkeypatch, how):
  """``forget``'s move runs ``how()`` first: an interrupt lands and is swallowed there."""
  real = workflow.forget_bundle

  def forget_bundle(*args, **kwargs):
    how()
    return real(*args, **kwargs)

  monkeypatch.setattr(commands.workflow, "forget_bundle", forget_bundle)


def _in_a_gc_callback():
  """SIGINT handled inside a garbage-collection callback (as inside JAX's): Python reports
  the KeyboardInterrupt as unraisable and goes on."""
  def callback(phase, info):
    if phase == "start":
      os.kill(os.getpid(), signal.SIGINT)
      for _ in range(1000):  # The handler runs at one of these bytecodes.
        pass

  gc.callbacks.append(callback)
  try:
    gc.collect()
  finally:
    gc.callbacks.remove(callback)


def _in_a_broad_except():
  """SIGINT caught by ``except BaseException`` (as Orbax's wait_until_finished does)."""
  try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)
  except BaseException:  # pylint: disable=broad-except
    pass


@pytest.mark.parametrize("how", [_in_a_gc_callback, _in_a_broad_except])
def test_a_swallowed_interrupt_still_stops_forget(trained, tmp_path, monkeypatch, capsys,
                                                  terminal_ctrl_c, how):
  _interrupt_while(monkeypatch, how)
  out = tmp_path / "out"
  status = cli.main(["forget", "--checkpoint", str(trained), "--classes", "3", "--output",
                     str(out), "-q", "--no-compilation-cache"])
  captured = capsys.readouterr()
  assert (status, captured.err) == (cli.EXIT_INTERRUPTED, "mnemonic-jax: error: interrupted\n")
  assert not out.exists() and "wrote" not in captured.out


def _jax_loading(pid: int) -> bool:
  try:
    return "jaxlib" in pathlib.Path(f"/proc/{pid}/maps").read_text()
  except OSError:
    return False


def _interrupted_forget(trained, out, delay, signum=signal.SIGINT):
  """The real ``forget``, sent ``signum`` ``delay`` s after it started loading JAX (a
  negative ``delay``: as soon as anything appears beside ``out``, i.e. during the save)."""
  proc = subprocess.Popen(
      [sys.executable, "-c", _INTERRUPTIBLE, "forget", "--checkpoint", str(trained),
       "--classes", "3", "--output", str(out), "-q"], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
  try:
    while not _jax_loading(proc.pid) and proc.poll() is None:
      time.sleep(0.002)
    if delay >= 0:
      time.sleep(delay)
    else:
      while proc.poll() is None and not any(p.name.startswith(f".{out.name}.saving-")
                                            or p == out for p in out.parent.iterdir()):
        time.sleep(0.001)
    sent = time.time()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
  finally:
    proc.kill()
  return proc.returncode, stdout, stderr, sent


def _check_interrupted_forget(trained, tmp_path, delay, signum=signal.SIGINT):
  out = tmp_path / f"out-{delay}"
  status, stdout, stderr, sent = _interrupted_forget(trained, out, delay, signum)
  assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
  if status == 0:  # It finished before the signal: complete, written before it was sent.
    assert stderr == "" and "wrote" in stdout
    assert out.lstat().st_ctime <= sent, "the signal came before the write, yet exit 0"
  else:
    words = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert status == 128 + signum, (status, stderr)
    assert stderr.startswith(f"mnemonic-jax: error: {words}") and stderr.count("\n") == 1
  if out.exists():  # Never half-written.
    assert checkpointing.load_bundle(out).forgotten_classes == (3,)
  # Nothing beside it: a signal during the save waits for it (Orbax's temporary folder
  # was left behind when the save was cut short).
  leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".out-{delay}")]
  assert not leftovers, leftovers


@pytest.mark.parametrize("signum", [signal.SIGINT,
                                    pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_signal_during_the_save_of_the_real_forget_leaves_nothing_beside_it(
    trained, tmp_path, signum):
  """SIGTERM killed forget with no line and left the save's hidden temporary folder."""
  _check_interrupted_forget(trained, tmp_path, -1.0, signum)


@pytest.mark.parametrize("delay", [0.0, pytest.param(0.4, marks=pytest.mark.slow),
                                   pytest.param(1.5, marks=pytest.mark.slow)])
def test_ctrl_c_during_forget_is_one_line_and_130(trained, tmp_path, delay):
  _check_interrupted_forget(trained, tmp_path, delay)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.7, 1.0, 2.0, 2.5, 3.0, 4.0, 6.0])
def test_ctrl_c_during_forget_at_every_moment(trained, tmp_path, delay):
  _check_interrupted_forget(trained, tmp_path, delay)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.2, 1.0, 2.0, 3.0])
def test_sigterm_during_forget_at_every_moment(trained, tmp_path, delay):
  _check_interrupted_forget(trained, tmp_path, delay, signal.SIGTERM)


# --------------------------------------------------------------------------------------
# 1e. mj.fit on a model that takes no ``train`` keyword.


class _NoTrainKeyword(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x.reshape((x.shape[0], -1)))


def test_fit_says_what_a_model_must_accept():
  images = np.zeros((8, 2, 2, 1), np.uint8)
  labels = np.arange(8) % 3
  codes = jnp.zeros((3, 2, 2, 1))
  with pytest.raises(errors.BadRequestType, match=r"train") as info:
    mj.fit(_NoTrainKeyword(), (images, labels), codes, mj.FitConfig(epochs=1, batch_size=4),
           jax.random.key(0), progress=False)
  assert "_NoTrainKeyword" in str(info.value) and "\n" not in str(info.value)
  assert "train" in mj.fit.__doc__.split("model:")[1].split("data:")[0]


# --------------------------------------------------------------------------------------
# 2. Text from a bundle or a dataset reaches the terminal escaped.

HOSTILE = ["\x1b[2J\x1b[31mred", "bell\x07", "two\nlines", "\u202eevil", "tab\tbed",
           "del\x7f", "c1\x9b31m", "ok", "nbsp\u00a0", "z\x00"]


def _printable(text: str) -> bool:
  return all(ch == "\n" or ch.isprintable() for ch in text)


def test_printable_escapes_control_characters():
  assert report.printable("\x1b[31mred") == "\\x1b[31mred"
  assert report.printable("a\nb") == "a\\nb"
  assert report.printable("\u202eevil") == "\\u202eevil"
  assert report.printable("Ankle boot \u00e9") == "Ankle boot \u00e9"
  assert all(_printable(report.printable(name)) and "\n" not in report.printable(name)
             for name in HOSTILE)


def test_class_and_dataset_names_reach_the_terminal_escaped(trained, tmp_path, capsys):
  bundle = checkpointing.load_bundle(trained).replace(class_names=tuple(HOSTILE))
  path = checkpointing.save_bundle(tmp_path / "hostile", bundle)
  assert cli.main(["evaluate", "--checkpoint", str(path), "-q",
                   "--no-compilation-cache"]) == 0
  out = capsys.readouterr().out
  assert "\\x1b[2J" in out and _printable(out), out
  # The table keeps one row per class: a newline in a name does not break it.
  assert sum(1 for line in out.splitlines() if re.match(r"^\s+\d+[ *] ", line)) == 10

  out2 = tmp_path / "forgotten"
  assert cli.main(["forget", "--checkpoint", str(path), "--classes", "0", "--output",
                   str(out2), "--dataset", "digits", "-q", "--no-compilation-cache"]) == 0
  assert _printable(capsys.readouterr().out)

  # A dataset name recorded in a bundle, in an error line.
  odd = checkpointing.save_bundle(tmp_path / "odd", bundle.replace(dataset="\x1b]0;pwned\x07"))
  assert cli.main(["evaluate", "--checkpoint", str(odd), "-q", "--no-compilation-cache"]) == 2
  captured = capsys.readouterr()
  assert _printable(captured.err) and captured.err.count("\n") == 1, captured.err


# --------------------------------------------------------------------------------------
# 3. The warning about a model that never saw its codes says what is true.


def test_forget_on_a_model_without_codes_warns_what_is_true(plain, forget_runs):
  tmp_path, ran = forget_runs["never"]
  out, result = tmp_path / "out", ran.result
  assert result.returncode == 0, result.stderr
  e_f = float(re.search(r"E_F \(error on forgotten classes\):\s+\S+ -> (\S+)",
                        result.stdout).group(1))
  warnings = checkpointing.load_bundle(out).history[-1]["warnings"]
  if e_f == 100.0:  # The class is gone from the images: nothing says it may be known.
    assert not any("may still be known" in w for w in warnings), warnings
    assert "may still be known" not in result.stdout
  else:
    assert any(f"{e_f:.1f}" in w for w in warnings), warnings

  # Without images to look at, the warning says what the codes can and cannot tell.
  (warning,) = workflow.untrained_codes_warnings(
      checkpointing.load_bundle(plain), {"classes": [3], "move": "bias",
                                         "acts_on": "output layer"})
  assert "cannot tell" in warning and "--dataset" in warning


def test_measured_images_revise_the_warning(plain):
  bundle = checkpointing.load_bundle(plain)
  new, _ = workflow.forget_bundle(bundle, [3])
  assert any("t_mix = 0" in w for w in new.history[-1]["warnings"])
  test = load_dataset("digits", "test")
  after = workflow.evaluate(new, test.images, test.labels)
  gone = workflow.warnings_from_images(bundle, new, after.per_class, "digits test")
  if after.per_class[3] == 0.0:
    assert not any("t_mix = 0" in w for w in gone.history[-1]["warnings"])
  kept = list(after.per_class)
  kept[3] = 40.0  # As if 40% of class 3's images were still classified as 3.
  still = workflow.warnings_from_images(bundle, new, kept, "digits test")
  (warning,) = [w for w in still.history[-1]["warnings"] if "t_mix = 0" in w]
  assert "40.0%" in warning and "attach" in warning
  assert gone.params is new.params and bundle.history == ()


def test_fault_round_script_reports_totals():
  """experiments/fault_round.py is importable and counts what it runs."""
  from experiments import fault_round  # pylint: disable=import-outside-toplevel
  totals = fault_round.Totals()
  totals.add("x", "traceback")
  assert totals.runs == 1 and totals.tracebacks == 1


def test_a_ctrl_c_during_the_save_waits_for_it(trained, tmp_path, monkeypatch, capsys,
                                                terminal_ctrl_c):
  """Cut short inside Orbax, a save could leave its temporary beside the output after the
  cleanup ran; an interrupt during the save is raised once the save has returned."""
  real = commands.checkpointing.save_bundle

  def save_bundle(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the save begins.
    return real(*args, **kwargs)

  monkeypatch.setattr(commands.checkpointing, "save_bundle", save_bundle)
  out = tmp_path / "out"
  status = cli.main(["forget", "--checkpoint", str(trained), "--classes", "3", "--output",
                     str(out), "-q", "--no-compilation-cache"])
  captured = capsys.readouterr()
  assert (status, captured.err) == (
      cli.EXIT_INTERRUPTED, f"mnemonic-jax: error: interrupted; {out} was written and is "
      "complete\n")
  assert checkpointing.load_bundle(out).history[-1]["classes"] == [3]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
