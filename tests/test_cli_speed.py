"""Speed of the tool (issue #9), through the real ``mnemonic-jax`` command.

* JAX's persistent compilation cache: a folder under the user's cache directory by
  default, another with ``--compilation-cache DIR`` or ``$MNEMONIC_JAX_CACHE_DIR``, none
  with ``--no-compilation-cache`` or ``MNEMONIC_JAX_CACHE_DIR=off``. (How much it saves is
  measured by ``experiments/bench_cli.py``, not here: timings on a shared machine are no
  test.)
* ``--help`` and ``--version`` answer without importing JAX.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from mnemonic_jax import cli_parser, compilation_cache, workflow

from cli_support import REPO, run_cli, small_config


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> pathlib.Path:
  workdir = tmp_path_factory.mktemp("train")
  workflow.train(small_config(epochs=1), workdir, progress=False)
  return workdir / "bundle"


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


def test_the_cache_is_under_the_users_cache_directory_by_default(bundle, tmp_path):
  env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-m", "mnemonic_jax.cli", "forget",
                           "--checkpoint", str(bundle), "--classes", "3", "--output",
                           str(tmp_path / "out"), "-q"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  cached = _entries(tmp_path / "xdg" / "mnemonic-jax" / "compilation")
  assert any(name.startswith("jit_") for name in cached), cached


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


#: Runs the command line with JAX made unimportable: anything that imports it fails.
WITHOUT_JAX = """
import runpy, sys
sys.modules["jax"] = None
sys.argv = ["mnemonic-jax", *sys.argv[1:]]
runpy.run_module("mnemonic_jax.cli", run_name="__main__")
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["forget", "--help"]])
def test_help_and_version_do_not_import_jax(args):
  result = subprocess.run([sys.executable, "-c", WITHOUT_JAX, *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("usage: mnemonic-jax") or \
      result.stdout.strip() == f"mnemonic-jax {cli_parser.version()}"


def test_the_parser_imports_no_jax():
  """What the command line controls: building the parser and the version import nothing."""
  code = ("import sys, importlib.util; "
          "spec = importlib.util.spec_from_file_location('c', sys.argv[1]); "
          "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
          "m.build_parser(); print(m.version(), 'jax' in sys.modules)")
  parser = str(REPO / "mnemonic_jax" / "cli_parser.py")
  result = subprocess.run([sys.executable, "-c", code, parser],
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == [cli_parser.version(), "False"]
