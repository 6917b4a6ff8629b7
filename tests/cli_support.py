"""Helpers shared by the command-line tests (``test_cli_safety``, ``test_cli_faults``,
``test_attach``)."""

import atexit
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
_CACHE: list[str] = []


def compilation_cache() -> str:
  """A compilation cache shared by this process's command runs, removed at exit.

  The commands would otherwise keep their compiled programs in the user's cache
  directory; sharing one here also lets each program compile once per test process.
  """
  if not _CACHE:
    _CACHE.append(tempfile.mkdtemp(prefix="mnemonic-jax-test-cache-"))
    atexit.register(shutil.rmtree, _CACHE[0], True)
  return _CACHE[0]


def tree_digest(root: pathlib.Path) -> dict[str, str]:
  """Every file (sha256), directory and symlink (its target) under ``root``, links unfollowed."""
  if not os.path.lexists(root):
    return {}
  if os.path.islink(root):
    return {".": "link:" + os.readlink(root)}
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      full = os.path.join(dirpath, name)
      rel = os.path.relpath(full, root)
      if os.path.islink(full):
        out[rel] = "link:" + os.readlink(full)
      elif os.path.isdir(full):
        out[rel + "/"] = "dir"
      else:
        out[rel] = hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest()
  return out


def small_config(**changes: Any) -> dict[str, Any]:
  """A digits MLP (64-32-10) config that trains in seconds, with ``changes`` applied."""
  config = dict(seed=0, dataset="digits", model="mlp", model_kwargs={"hidden": (32,)},
                epochs=8, batch_size=64, learning_rate=0.1, momentum=0.9,
                weight_decay=5e-4, t_mix=0.1, checkpoint_every=1000)
  config.update(changes)
  return config


def run_cli(*args: Any, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs the real ``mnemonic-jax ARGS`` (``python -m mnemonic_jax.cli``) to completion.

  Args:
    *args: the command's arguments (paths are turned into strings).
    env: extra environment variables. The compilation cache is
      :func:`compilation_cache` unless ``MNEMONIC_JAX_CACHE_DIR`` is set.
    timeout: seconds before the run is killed (the test then fails).
  """
  full = dict(os.environ)
  full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
  full.setdefault("MNEMONIC_JAX_CACHE_DIR", compilation_cache())
  full.update(env or {})
  return subprocess.run([sys.executable, "-m", "mnemonic_jax.cli", *map(str, args)],
                        capture_output=True, text=True, env=full, cwd=REPO, timeout=timeout,
                        check=False)


def assert_refused(result: subprocess.CompletedProcess, words: str) -> str:
  """One line ``mnemonic-jax: error: ...`` holding ``words``, exit 2, nothing on stdout."""
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
  assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
  assert lines[0].startswith("mnemonic-jax: error: "), lines[0]
  assert words in lines[0], lines[0]
  assert result.stdout == "", result.stdout
  return lines[0]
