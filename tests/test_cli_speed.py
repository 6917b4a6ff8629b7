"""Speed of the tool (issue #9), through the real ``mnemonic-jax`` command.

* JAX's persistent compilation cache: a folder under the user's cache directory by
  default, another with ``--compilation-cache DIR`` or ``$MNEMONIC_JAX_CACHE_DIR``, none
  with ``--no-compilation-cache`` or ``MNEMONIC_JAX_CACHE_DIR=off``. (How much it saves is
  measured by ``experiments/bench_cli.py``, not here: timings on a shared machine are no
  test.) The folder is created private (0700) whatever the umask, and a folder someone
  else may write to, or one holding another user's entry, is refused (issue #22).
* ``--help`` and ``--version`` answer without importing JAX; ``forget`` (the paper's
  Algorithm 2, so the Fisher is traced) without importing optax or the depth attacks.
"""

import os
import pathlib
import stat
import subprocess
import sys

import pytest

import mnemonic_jax
from mnemonic_jax import cli
from mnemonic_jax.cli import compilation_cache
from mnemonic_jax.cli import parser as cli_parser

from cli_support import REPO, assert_refused, run_cli


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def _forget(bundle: pathlib.Path, output: pathlib.Path, *extra: str, env=None):
  result = run_cli("forget", "--checkpoint", bundle, "--classes", "3", "--lambda1", "1e-3",
                   "--lambda2", "10", "--output", output, "-q", *extra, env=env)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ""
  return result


def _clean_env(**changes: str) -> dict[str, str]:
  """The environment without any cache setting, plus ``changes``."""
  env = {k: v for k, v in os.environ.items()
         if k not in (compilation_cache.CACHE_ENV, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")}
  return {**env, **changes}


def _entries(directory: pathlib.Path) -> list[str]:
  return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


#: Runs its arguments under umask 000 (set in the child shell: nothing forks this process).
UMASK_000 = ["bash", "-c", 'umask 000 && exec "$@"', "umask-000"]


def _mode(path: pathlib.Path) -> int:
  return stat.S_IMODE(path.stat().st_mode)


def test_the_cache_is_private_under_the_users_cache_directory_by_default(bundle, tmp_path):
  """Under umask 000 every folder the command creates for its cache is 0700, not 0777."""
  env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   PYTHONPATH=str(REPO))
  result = subprocess.run([*UMASK_000, sys.executable, "-m", "mnemonic_jax.cli", "forget",
                           "--checkpoint", str(bundle), "--classes", "3", "--output",
                           str(tmp_path / "out"), "-q"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  cache = tmp_path / "xdg" / "mnemonic-jax" / "compilation"
  cached = _entries(cache)
  assert any(name.startswith("jit_") for name in cached), cached
  for folder in (tmp_path / "xdg", cache.parent, cache):
    assert _mode(folder) == 0o700, (folder, oct(_mode(folder)))
  assert _mode(tmp_path / "out") & 0o777 == 0o777  # The umask did apply to the command.


def test_a_cache_folder_others_may_write_to_is_refused(bundle, tmp_path):
  shared = tmp_path / "shared"
  shared.mkdir()
  shared.chmod(0o777)
  result = run_cli("forget", "--checkpoint", bundle, "--classes", "3", "--output",
                   tmp_path / "out", "-q", "--compilation-cache", shared)
  line = assert_refused(result, f"compilation cache {shared} is writable by others (mode 777)")
  assert "chmod 700" in line and "--no-compilation-cache" in line
  assert not (tmp_path / "out").exists() and _entries(shared) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a folder to another user needs root")
def test_a_cache_folder_or_entry_of_another_user_is_refused(tmp_path, capsys):
  """In-process (the check runs before any command): another user's folder, then entry."""
  theirs = tmp_path / "theirs"
  theirs.mkdir(mode=0o700)
  os.chown(theirs, 65534, 65534)
  args = ["evaluate", "--checkpoint", str(tmp_path / "absent"), "--compilation-cache"]
  assert cli.main([*args, str(theirs)]) == 2
  assert "belongs to another user (uid 65534)" in capsys.readouterr().err
  mine = tmp_path / "mine"
  mine.mkdir(mode=0o700)
  (mine / "jit_planted-cache").write_bytes(b"not a program of mine")
  os.chown(mine / "jit_planted-cache", 65534, 65534)
  assert cli.main([*args, str(mine)]) == 2
  err = capsys.readouterr().err
  assert "holds jit_planted-cache, written by another user (uid 65534)" in err
  assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # Three forget commands (~10 s); the default location is tested above.
def test_the_cache_folder_is_configurable_and_can_be_disabled(bundle, tmp_path):
  flag, unused = tmp_path / "flag", tmp_path / "unused"
  _forget(bundle, tmp_path / "a", "--compilation-cache", str(flag),
          env={compilation_cache.CACHE_ENV: str(unused)})
  assert _entries(flag) and not _entries(unused)  # The flag wins over the variable.
  _forget(bundle, tmp_path / "c", "--no-compilation-cache",
          env={compilation_cache.CACHE_ENV: str(unused), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
  assert not _entries(unused) and not (tmp_path / "xdg").exists()
  # MNEMONIC_JAX_CACHE_DIR=off leads to the same setting (test_compilation_cache_dir_precedence).

  # A second run reads what the first compiled: it adds nothing to the cache.
  before = _entries(flag)
  _forget(bundle, tmp_path / "e", "--compilation-cache", str(flag))
  assert _entries(flag) == before


def test_compilation_cache_dir_precedence(tmp_path):
  where, key = compilation_cache.compilation_cache_dir, compilation_cache.CACHE_ENV
  env = {"XDG_CACHE_HOME": str(tmp_path)}
  expected = tmp_path / "mnemonic-jax" / "compilation"
  if sys.platform in ("win32", "darwin"):
    expected = compilation_cache.user_cache_dir(env) / "mnemonic-jax" / "compilation"
  assert where(environ=env) == expected
  assert where(environ={**env, "JAX_COMPILATION_CACHE_DIR": "/j"}) == "jax"
  assert where(environ={**env, key: "off"}) is None
  assert where(environ={**env, key: str(tmp_path / "m"),
                        "JAX_COMPILATION_CACHE_DIR": "/j"}) == tmp_path / "m"
  assert where(tmp_path / "f", environ={key: "off"}) == tmp_path / "f"
  assert where(tmp_path / "f", disabled=True, environ=env) is None


#: Runs the command line with a module made unimportable: anything that imports it fails.
WITHOUT = """
import runpy, sys
sys.modules.update(dict.fromkeys({modules!r}))
sys.argv = ["mnemonic-jax", *sys.argv[1:]]
runpy.run_module("mnemonic_jax.cli", run_name="__main__")
"""
WITHOUT_JAX = WITHOUT.format(modules=["jax"])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["forget", "--help"]])
def test_help_and_version_do_not_import_jax(args):
  result = subprocess.run([sys.executable, "-c", WITHOUT_JAX, *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("usage: mnemonic-jax") or \
      result.stdout.strip() == f"mnemonic-jax {cli_parser.version()}"


def test_the_parser_imports_no_jax():
  """What the command line controls: the package, the parser and the version import no JAX."""
  code = ("import sys; from mnemonic_jax.cli import parser; "
          "parser.build_parser(); print(parser.version(), 'jax' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == [cli_parser.version(), "False"]
  assert cli_parser.version() == mnemonic_jax.__version__


def test_forget_imports_neither_optax_nor_the_depth_attacks(bundle, tmp_path):
  """Each costs 0.1 s or more of every ``forget`` (the Fisher's loss imported optax)."""
  blocked = WITHOUT.format(modules=["optax", "mnemonic_jax.evaluation"])
  command = [sys.executable, "-c", blocked, "forget", "--checkpoint", str(bundle), "--classes",
             "3", "--lambda1", "1e-3", "--lambda2", "10", "--output", str(tmp_path / "out"),
             "-q", "--no-compilation-cache"]
  result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert (tmp_path / "out").is_dir()
