"""Command-line faults of the second engineer's walk (walk2_cli_faults G3-G5), each fixed as
a kind, through the real commands (:func:`cli_support.run_commands`, :func:`run_cli`).

* G3: a path that is not UTF-8 (a Latin-1 file name), which TensorStore cannot take, gave
  a pybind11 traceback from every command that writes (``train`` after training all its
  steps) and called an intact bundle "truncated or corrupt". Every path a command is
  given is now refused up front, in one line, exit 2, nothing written.
* G5: a stdout whose encoding cannot carry a character of the report (ASCII, a C locale
  without UTF-8 mode) gave a UnicodeEncodeError traceback and exit 1 after the output
  was saved, the report cut off. stdout (and stderr, which Python already opens so) now
  write such a character as a backslash escape.
* G4: a Ctrl-C landing inside the constructor of Orbax's asyncio event loop left a
  half-built loop whose ``__del__`` printed an "Exception ignored" traceback after the
  one error line.
"""

import dataclasses
import json
import os
import pathlib
import shutil

import pytest

from cli_support import assert_refused, run_cli, run_commands, tree_digest
from mnemonic_jax import _files, checkpointing


@pytest.fixture(scope="module")
def base(tiny_digits_bundle, tmp_path_factory):
  """A bundle on disk (the tiny digits MLP), never modified."""
  return checkpointing.save_bundle(tmp_path_factory.mktemp("walk2") / "base",
                                   tiny_digits_bundle[0])


def _latin1(folder: pathlib.Path, name: bytes) -> pathlib.Path:
  """``folder / name`` for a name of bytes that are not UTF-8, as Python's argv carries
  it (surrogate escapes, :func:`os.fsdecode`)."""
  return folder / os.fsdecode(name)


# --------------------------------------------------------------------------------------
# G3: paths that are not UTF-8.


def test_a_path_that_is_not_utf8_is_refused_before_any_work(base, tmp_path):
  """Every path option of every command, read or written, and the current directory a
  relative path is taken from: one line naming the option and the path (each byte that
  is not UTF-8 as ``\\xNN``, the name on disk), exit 2, nothing written or changed."""
  intact = _latin1(tmp_path, b"caf\xe9")  # An intact bundle under a Latin-1 name.
  shutil.copytree(base, intact, symlinks=True)
  bad = _latin1(tmp_path, b"new\xff")  # Never created.
  cwd = _latin1(tmp_path, b"here\xe9")
  cwd.mkdir()
  good = tmp_path / "good"
  config = _latin1(tmp_path, b"conf\xe9.py")
  config.write_text("from mnemonic_jax.configs import get_config as _g\n"
                    "def get_config(variant=None):\n  return _g('digits_mlp:quick')\n")
  forget = ("forget", "-q", "--checkpoint", base, "--classes", "3")
  evaluate = ("evaluate", "-q", "--checkpoint", base)
  train = ("train", "-q", "--config", "digits_mlp:quick")
  cases = {
      "evaluate an intact bundle": (("evaluate", "-q", "--checkpoint", intact),
                                    "--checkpoint", "caf\\xe9"),
      "forget --output": ((*forget, "--output", bad), "--output", "new\\xff"),
      "forget --data-dir": ((*forget, "--output", good, "--dataset", "digits", "--data-dir",
                             bad), "--data-dir", "new\\xff"),
      "attach-codes --output": (("attach-codes", "-q", "--checkpoint", base, "--output", bad),
                                "--output", "new\\xff"),
      "attach-codes --checkpoint": (("attach-codes", "-q", "--checkpoint", intact, "--output",
                                     good), "--checkpoint", "caf\\xe9"),
      "import --params": (("import", "--params", intact, "--codes", good, "--model", "mlp",
                           "--num-classes", "10", "--input-shape", "8,8,1", "--mean", "0",
                           "--std", "1", "--output", good), "--params", "caf\\xe9"),
      "import --output": (("import", "--params", base, "--codes", good, "--model", "mlp",
                           "--num-classes", "10", "--input-shape", "8,8,1", "--mean", "0",
                           "--std", "1", "--output", bad), "--output", "new\\xff"),
      "demo --output-dir": (("demo", "-q", "--output-dir", bad), "--output-dir", "new\\xff"),
      "train --workdir": ((*train, "--workdir", bad), "--workdir", "new\\xff"),
      "train --config FILE": (("train", "-q", "--config", config, "--workdir", good),
                              "--config", "conf\\xe9.py"),
      "train --config.data_dir": ((*train, "--workdir", good, f"--config.data_dir={bad}"),
                                  "data_dir", "new\\xff"),
      "evaluate --oracle": ((*evaluate, "--depth", "--oracle", intact), "--oracle",
                            "caf\\xe9"),
      "evaluate --original": ((*evaluate, "--depth", "--original", intact), "--original",
                              "caf\\xe9"),
      "evaluate --dataset idx:DIR": ((*evaluate, "--dataset", f"idx:{bad}"), "idx:",
                                     "new\\xff"),
      "evaluate --compilation-cache": ((*evaluate, "--compilation-cache", bad),
                                       "--compilation-cache", "new\\xff"),
  }
  ran = run_commands({
      **{name: dict(args=args, watch=[tmp_path]) for name, (args, _, _) in cases.items()},
      "a relative output in a Latin-1 current directory": dict(
          args=(*forget, "--output", "out"), cwd=cwd, watch=[tmp_path])})
  cases["a relative output in a Latin-1 current directory"] = (None, "--output",
                                                               "here\\xe9/out")
  for name, (_, option, shown) in cases.items():
    line = assert_refused(ran[name].result, "is not valid UTF-8")
    assert f"{option}" in line and shown in line and "\\udc" not in line, (name, line)
    assert ran[name].before == ran[name].after, name
  assert not os.path.lexists(bad) and not good.exists()
  assert tree_digest(intact) == tree_digest(base)  # Intact, as it was.


def test_a_utf8_name_read_in_a_c_locale_is_told_the_locale(base, tmp_path):
  """Under ``LC_ALL=C PYTHONUTF8=0`` Python reads a UTF-8 name as surrogate escapes, which
  TensorStore cannot take either: refused up front, with the locale named as the fix."""
  out = tmp_path / "sortie-é"
  result = run_cli("forget", "-q", "--checkpoint", base, "--classes", "3", "--output", out,
                   env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
  line = assert_refused(result, "Python reads file names as")
  assert "sortie-\\xc3\\xa9" in line and "PYTHONUTF8=1" in line, line
  assert not out.exists()


def test_a_byte_that_is_not_utf8_is_shown_as_that_byte():
  """Messages named ``caf\\xe9`` (the name on disk) ``caf\\udce9`` (Python's escape)."""
  assert _files.shown(os.fsdecode(b"caf\xe9/x\n")) == "caf\\xe9/x\\n"
  assert _files.shown(b"caf\xe9") == _files.escape(_files.shown(b"caf\xe9"))  # Once only.
  assert _files.unstorable(b"caf\xe9") is not None and _files.unstorable("café") is None


# --------------------------------------------------------------------------------------
# G5: a stream whose encoding cannot carry the report.

_NAMES = ("zéro", "一", "два", "3", "4", "5", "6", "7", "8", "9")


@pytest.fixture(scope="module")
def named(tiny_digits_bundle, tmp_path_factory):
  """The tiny digits bundle with class names outside ASCII (Latin, CJK, Cyrillic)."""
  bundle = dataclasses.replace(tiny_digits_bundle[0], class_names=_NAMES)
  return checkpointing.save_bundle(tmp_path_factory.mktemp("walk2") / "named", bundle)


def _all_ascii(ran) -> None:
  for name, case in ran.items():
    result = case.result
    assert result.returncode == 0 and result.stderr == "", (name, result.stderr)
    assert result.stdout.isascii(), (name, result.stdout)


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_a_report_the_stdout_cannot_encode_is_written_escaped(named, tmp_path):
  """``PYTHONIOENCODING=ascii``: the report and its table are complete, what the stream
  lacks escaped (``z\\xe9ro``, ``\\u4e00``, an output named ``\\xe92``), exit 0;
  before, a UnicodeEncodeError traceback and exit 1 after the output was saved."""
  out = tmp_path / "\u00e92"
  ran = run_commands({
      "evaluate": dict(args=("evaluate", "-q", "--checkpoint", named)),
      "forget": dict(args=("forget", "-q", "--checkpoint", named, "--classes", "3",
                           "--output", out))}, env={"PYTHONIOENCODING": "ascii"})
  _all_ascii(ran)
  table = ran["evaluate"].result.stdout
  assert "z\\xe9ro" in table and "\\u4e00" in table and "accuracy: " in table, table
  assert ran["forget"].result.stdout.endswith(f"wrote {tmp_path}/\\xe92\n")
  assert checkpointing.load_bundle(out).class_names == _NAMES


@pytest.mark.slow
def test_a_c_locale_report_is_written_escaped(named, tmp_path):
  """``LC_ALL=C`` without UTF-8 mode (stdout ASCII, ``surrogateescape``): evaluate's table,
  ``--json`` and forget's before/after table, complete and escaped, exit 0."""
  out = tmp_path / "out"
  ran = run_commands({
      "evaluate": dict(args=("evaluate", "-q", "--checkpoint", named)),
      "evaluate --json": dict(args=("evaluate", "-q", "--json", "--checkpoint", named)),
      "forget": dict(args=("forget", "-q", "--checkpoint", named, "--classes", "3",
                           "--dataset", "digits", "--output", out))},
      env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
  _all_ascii(ran)
  assert "z\\xe9ro" in ran["evaluate"].result.stdout
  assert json.loads(ran["evaluate --json"].result.stdout)["per_class"][0]["name"] == "zéro"
  forget = ran["forget"].result.stdout
  assert "z\\xe9ro" in forget and "\\u0434\\u0432\\u0430" in forget, forget
  assert forget.endswith(f"wrote {out}\n") and checkpointing.load_bundle(out).class_names == _NAMES



# --------------------------------------------------------------------------------------
# G4: Ctrl-C inside the event loop Orbax makes.

#: A program: ``mnemonic-jax ARGS`` with SIGINT delivered (through the run's own handler,
#: as Ctrl-C is) inside the constructor of the first asyncio event loop, after
#: ``BaseEventLoop.__init__`` and before the loop's self-pipe exists: the moment the
#: engineer's Ctrl-C once met (Orbax makes a loop for each read and save).
_CUT_LOOP = """
import asyncio.selector_events, runpy, signal

loops = asyncio.selector_events.BaseSelectorEventLoop
make_self_pipe = loops._make_self_pipe


def cut(self):
  loops._make_self_pipe = make_self_pipe
  signal.raise_signal(signal.SIGINT)
  make_self_pipe(self)


loops._make_self_pipe = cut
runpy.run_module("mnemonic_jax.cli", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_inside_an_event_loop_constructor_is_one_line(base, tmp_path):
  """The half-built loop's ``__del__`` printed "Exception ignored ... no attribute
  '_ssock'" (12 lines) after the one line, and the coroutines it never ran warned on
  stdout. Now: the line alone, exit 130, nothing on stdout, nothing written."""
  (tmp_path / "cut_loop.py").write_text(_CUT_LOOP)
  out = tmp_path / "out"
  ran = run_commands({
      "evaluate": dict(module="cut_loop", cwd=tmp_path,
                       args=("evaluate", "-q", "--checkpoint", base)),
      "forget": dict(module="cut_loop", cwd=tmp_path, watch=[base],
                     args=("forget", "-q", "--checkpoint", base, "--classes", "3",
                           "--output", out))})
  for name, case in ran.items():
    result = case.result
    assert result.returncode == 130, (name, result.returncode, result.stderr)
    assert result.stderr == "mnemonic-jax: error: interrupted\n", (name, result.stderr)
    assert result.stdout == "", (name, result.stdout)
    assert case.before == case.after, name
  assert not out.exists()
