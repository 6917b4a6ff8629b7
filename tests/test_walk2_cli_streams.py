"""Command-line faults of the second engineer's walk (walk2_cli_faults G3-G5), each fixed as
a kind, through the real commands (:func:`cli_support.run_commands`, :func:`run_cli`).

* G3: a path that is not UTF-8 (a Latin-1 file name), which TensorStore cannot take, gave
  a pybind11 traceback from every command that writes (``train`` after training all its
  steps) and called an intact bundle "truncated or corrupt". Every path a command is
  given is now refused up front, in one line, exit 2, nothing written.
* G5: a stdout (stderr) whose encoding cannot carry a character of the report (ASCII,
  a C locale without UTF-8 mode) gave a UnicodeEncodeError traceback after the output was
  saved (the error line was lost without a word). Both streams now write such a
  character as a backslash escape.
* G4: a Ctrl-C landing inside the constructor of Orbax's asyncio event loop left a
  half-built loop whose ``__del__`` printed an "Exception ignored" traceback after the
  one error line.
"""

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
