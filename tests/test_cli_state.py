"""``mnemonic_jax.cli.main`` called in-process puts back the process-wide state it changes.

The command line quiets the libraries' logging and warnings, hooks ``sys.unraisablehook``
and points JAX's persistent compilation cache at its folder; called in-process (tests,
notebooks) it must leave none of that behind, whether the command succeeds, is refused,
is interrupted or fails with a bug, so that tests calling it do not depend on their order.
The snapshot below is written out here, not taken from the package, so that it checks the
package's own restoring.
"""

import logging
import pathlib
import stat
import sys
import threading
import warnings

import jax
import pytest
from jax._src import compilation_cache as jax_cache

from mnemonic_jax import checkpointing, cli
from mnemonic_jax.cli import commands

JAX_OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
               "jax_persistent_cache_min_compile_time_secs",
               "jax_persistent_cache_min_entry_size_bytes")
#: What JAX remembers of the persistent cache it opened (private; JAX 0.4.35 to 0.10).
JAX_CACHE_GLOBALS = ("_cache", "_cache_initialized", "_cache_checked", "_cache_used")


def _logger(name: str | None) -> tuple:
  logger = logging.getLogger(name)
  return (logger.level, list(logger.filters), list(logger.handlers), logger.propagate,
          logger.disabled)


def snapshot() -> dict:
  """The process-wide state a command may change."""
  return {
      "loggers": {name: _logger(name) for name in (None, "absl", "jax", "orbax")},
      "warnings.filters": list(warnings.filters),
      "showwarning": warnings.showwarning,
      "sys.unraisablehook": sys.unraisablehook,
      "sys.excepthook": sys.excepthook,
      "threading.excepthook": threading.excepthook,
      "streams": (sys.stdout, sys.stderr),
      "jax options": {name: getattr(jax.config, name) for name in JAX_OPTIONS},
      "jax cache": tuple(getattr(jax_cache, name) for name in JAX_CACHE_GLOBALS),
  }


@pytest.fixture
def bundle_path(tiny_digits_bundle, tmp_path):
  return checkpointing.save_bundle(tmp_path / "in", tiny_digits_bundle[0])


@pytest.fixture
def inside(monkeypatch):
  """Records the state inside the ``forget`` command, which then runs as usual."""
  seen = []
  real = commands.COMMANDS["forget"]

  def forget(args):
    seen.append(snapshot())
    return real(args)

  monkeypatch.setitem(commands.COMMANDS, "forget", forget)
  return seen


def test_version_and_help_leave_the_state_as_it_was(capsys):
  before = snapshot()
  for argv in (["--version"], ["forget", "--help"]):
    with pytest.raises(SystemExit) as exit_info:
      cli.main(argv)
    assert exit_info.value.code == 0
  assert capsys.readouterr().out
  assert snapshot() == before


def test_a_command_puts_back_what_it_changed(bundle_path, tmp_path, inside, capsys):
  cache = tmp_path / "cache"
  forget = ["forget", "--checkpoint", str(bundle_path), "--classes", "3", "--lambda1", "1e-3",
            "--lambda2", "10", "-q", "--compilation-cache", str(cache), "--output"]
  before = snapshot()
  # Programs compiled by earlier tests of this process would leave the cache empty, and a
  # cache folder a command made and left empty is removed again (walk4 F2).
  jax.clear_caches()
  assert cli.main([*forget, str(tmp_path / "out")]) == 0
  assert "wrote" in capsys.readouterr().out
  assert snapshot() == before
  # The state did change while the command ran: the test can fail.
  during = inside[0]
  assert during["loggers"]["absl"] != before["loggers"]["absl"]
  assert during["warnings.filters"] != before["warnings.filters"]
  assert during["sys.unraisablehook"] is not before["sys.unraisablehook"]
  assert during["jax options"]["jax_compilation_cache_dir"] == str(cache)
  assert stat.S_IMODE(cache.stat().st_mode) == 0o700

  # Refused (the output exists): one line, exit 2, and the state is put back as well.
  assert cli.main([*forget, str(tmp_path / "out")]) == 2
  assert capsys.readouterr().err.startswith("mnemonic-jax: error: ")
  assert snapshot() == before


def test_an_interrupt_or_a_bug_puts_back_the_state_too(bundle_path, tmp_path, monkeypatch,
                                                       capsys):
  def interrupted(args):
    raise KeyboardInterrupt

  def buggy(args):
    raise ZeroDivisionError("a bug")

  argv = ["forget", "--checkpoint", str(bundle_path), "--classes", "3", "--output",
          str(tmp_path / "out"), "--compilation-cache", str(tmp_path / "cache")]
  before = snapshot()
  monkeypatch.setitem(commands.COMMANDS, "forget", interrupted)
  assert cli.main(argv) == cli.EXIT_INTERRUPTED  # Returned: the caller's process goes on.
  assert capsys.readouterr().err == "mnemonic-jax: error: interrupted\n"
  assert snapshot() == before
  monkeypatch.setitem(commands.COMMANDS, "forget", buggy)
  with pytest.raises(ZeroDivisionError, match="a bug"):
    cli.main(argv)
  assert snapshot() == before


def test_one_process_leaves_without_the_interpreter_s_shutdown(small_trained_copy):
  """After a command, one process exits at once (no atexit hook runs, so no SIGINT can land
  after the shutdown restored the default handler); the status and the report stay."""
  import subprocess  # pylint: disable=import-outside-toplevel

  argv = ["mnemonic-jax", "evaluate", "--checkpoint", str(small_trained_copy()), "-q"]
  code = ("import atexit, runpy, sys; atexit.register(lambda: print('shutdown ran', "
          f"file=sys.stderr)); sys.argv = {argv!r}; "
          "runpy.run_module('mnemonic_jax.cli', run_name='__main__')")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        check=False, timeout=300, cwd=pathlib.Path(__file__).parents[1])
  assert (done.returncode, done.stderr) == (0, ""), done
  assert "accuracy" in done.stdout
