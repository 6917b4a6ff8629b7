"""Helpers shared by the command-line tests (``test_cli_safety``, ``test_cli_faults``,
``test_attach``)."""

import atexit
import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import select
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

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


def write_idx(directory: pathlib.Path, split: str, images: np.ndarray,
              labels: np.ndarray) -> None:
  """``images`` ``(N, H, W)`` uint8 and ``labels`` as an IDX split (``idx:DIR`` reads it)."""
  prefix = {"train": "train", "test": "t10k"}[split]
  directory.mkdir(parents=True, exist_ok=True)
  with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">BBBB3I", 0, 0, 0x08, 3, *images.shape[:3]) + images.tobytes())
  with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, len(labels)) + labels.astype(np.uint8).tobytes())


def config_file(folder: pathlib.Path, config: dict) -> pathlib.Path:
  """``config`` as a config file the command line reads (``--config FILE``)."""
  path = folder / "tiny_config.py"
  path.write_text(f"def get_config():\n  return {config!r}\n")
  return path


def stopper(checks: int):
  """A ``stop`` for :func:`mnemonic_jax.workflow.train` that stops the run at its
  ``checks``-th check."""
  asked = []

  def stop():
    asked.append(1)
    return len(asked) >= checks

  return stop


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


#: The program behind :func:`run_commands`: ``python -c SERVER CLI_SUPPORT_PY``, a batch server. It
#: imports what every command imports first (JAX, Flax, Orbax: ~2 s of CPU a process; scikit-learn's
#: datasets, which loading the digits imports: ~1.5 s) once, then for each request line on its stdin
#: (``[CASES.json, RESULTS.json]``) runs each case's ``mnemonic-jax ARGS`` in a child forked from
#: it, with nothing started yet (no JAX backend, no command run: the server itself never runs one),
#: writes the results and answers ``done`` on its stdout. The child is the real program from there
#: on: ``python -m mnemonic_jax.cli``'s own ``__main__`` run by ``runpy`` (as ``-m`` does,
#: ``sys.path[0]`` its working directory), its stdin /dev/null, its stdout and stderr files, the
#: exit status the interpreter makes of it. The digests of each case's watched paths are taken just
#: before and just after its command. It says ``ready`` once it has imported (which must print
#: nothing on stderr, as a fresh command would show it) and ends with its stdin (this process).
_SERVER = r"""
import importlib, importlib.util, json, os, resource, runpy, sys

spec = importlib.util.spec_from_file_location("cli_support", sys.argv[1])
support = importlib.util.module_from_spec(spec)
spec.loader.exec_module(support)
import mnemonic_jax.cli.commands  # noqa: F401  (what the program imports before any work)
import sklearn.datasets  # noqa: F401  (what loading the digits imports: ~1.5 s a command)
for name in sys.argv[2:]:  # What other programs run here import first (experiments.table).
  importlib.import_module(name)

sys.stdout.write("ready\n")
sys.stdout.flush()


def run(cases):
  results = []
  for case in cases:
    before = [support.tree_digest(w) for w in case["watch"]]
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      try:  # Dies with the server (killed when a test gives up on it); Linux only.
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
      except (AttributeError, OSError):
        pass
      os.chdir(case["cwd"])
      sys.path[0] = os.getcwd()
      os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
      for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
      if case["memory_limit"]:
        resource.setrlimit(resource.RLIMIT_AS, (case["memory_limit"],) * 2)
      sys.argv = ["mnemonic-jax", *case["args"]]  # argv[0]: the module's file, as with -m.
      runpy.run_module(case["module"], run_name="__main__", alter_sys=True)
      sys.exit(0)  # Not reached: the program's __main__ always exits.
    _, status = os.waitpid(pid, 0)
    results.append(dict(returncode=os.waitstatus_to_exitcode(status), before=before,
                        after=[support.tree_digest(w) for w in case["watch"]]))
  return results


for line in sys.stdin:
  cases_file, results_file = json.loads(line)
  results = run(json.loads(open(cases_file).read()))
  with open(results_file, "w") as f:
    json.dump(results, f)
  sys.stdout.write("done\n")
  sys.stdout.flush()
"""

#: One batch server per environment, started on first use, for this process's life.
_SERVERS: dict[tuple, subprocess.Popen] = {}


def _server(env: dict[str, str], preload: tuple[str, ...] = ()) -> subprocess.Popen:
  """The running batch server (:data:`_SERVER`) for ``env`` and ``preload``, started if
  need be.

  pytest's ``PYTEST_CURRENT_TEST`` (the running test's name) is left out: with it, every
  test would get a server of its own.
  """
  env = {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}
  key = (tuple(sorted(env.items())), preload)
  server = _SERVERS.get(key)
  if server is not None and server.poll() is None:
    return server
  log = tempfile.TemporaryFile(prefix="mnemonic-jax-batch-server-")
  server = subprocess.Popen([sys.executable, "-c", _SERVER, __file__, *preload],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                            env=env, cwd=REPO)
  server.log = log
  if not _SERVERS:
    atexit.register(_stop_servers)
  _SERVERS[key] = server
  _expect(server, "ready", 300)
  log.seek(0)
  said = log.read().decode(errors="replace")
  assert said == "", f"importing the programs printed on stderr:\n{said}"
  return server


def _stop_servers() -> None:
  for server in _SERVERS.values():
    server.stdin.close()  # The server ends at the end of its input.
    try:
      server.wait(timeout=10)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()
  _SERVERS.clear()


def _expect(server: subprocess.Popen, word: str, timeout: float) -> None:
  """Waits for the server's next line, ``word``; a dead or stuck server fails the test.

  A server given up on (no answer in time, or the wait interrupted, e.g. by a test's
  alarm) is killed with the command it runs, so that a later batch starts a new one.
  """
  ready = answer = None
  try:
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    answer = server.stdout.readline() if ready else ""
  finally:
    if answer != word + "\n":
      if server.poll() is None:
        server.kill()
      server.wait()
  if answer != word + "\n":
    server.log.seek(0)
    raise AssertionError(f"the batch failed ({'timed out' if not ready else server.returncode})"
                         f":\n{server.log.read().decode(errors='replace')}")


def _ask(server: subprocess.Popen, request: list[str], timeout: float) -> None:
  """Sends ``request`` and waits for ``done``."""
  server.stdin.write(json.dumps(request) + "\n")
  server.stdin.flush()
  _expect(server, "done", timeout)


@dataclasses.dataclass
class Ran:
  """One command of :func:`run_commands`: its result and its watched paths' digests.

  Attributes:
    result: ``args``, ``returncode``, ``stdout``, ``stderr`` (text), as ``subprocess.run``.
    before: :func:`tree_digest` of each watched path just before the command.
    after: the same just after it.
  """
  result: subprocess.CompletedProcess
  before: list[dict[str, str]]
  after: list[dict[str, str]]


def run_commands(cases: dict[str, dict[str, Any]], env: dict[str, str] | None = None,
                 memory_limit: int | None = None, timeout: float = 600,
                 preload: tuple[str, ...] = ()) -> dict[str, Ran]:
  """Runs many ``mnemonic-jax ARGS`` in turn, each in its own process, for ~2 s less each.

  Each command runs in a child forked from one Python process that imported JAX, Flax and
  Orbax once (see :data:`_SERVER`; one such server per environment, kept for this
  process's later batches), instead of a fresh ``python -m mnemonic_jax.cli`` each: the
  same program, status and output, without paying the imports again. For many quick
  commands in one environment (refused inputs); a command that needs its own
  environment (``JAX_PLATFORMS``, no cache) or a fresh interpreter (``--version`` without
  JAX) runs with :func:`run_cli`. Another program (``python -m MODULE``) runs the same way
  with ``"module"``, its imports named in ``preload``.

  Args:
    cases: name -> ``{"args": [...], "cwd": path (default the repository), "watch":
      [paths whose digests are taken around the command], "stdout_to": a file the
      command's stdout goes to instead (e.g. /dev/full; its ``stdout`` is then None),
      "module": the program (default ``mnemonic_jax.cli``)}``; run in this order.
    env: extra environment variables, as :func:`run_cli`.
    memory_limit: an address-space limit (bytes) for each command (``ulimit -v``).
    timeout: seconds for the whole batch.
    preload: modules the server imports once before forking (e.g. ``experiments.table``);
      a server is kept per environment and preload.

  Returns:
    name -> :class:`Ran`.
  """
  full = dict(os.environ)
  full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
  full.setdefault("MNEMONIC_JAX_CACHE_DIR", compilation_cache())
  full.update(env or {})
  with tempfile.TemporaryDirectory(prefix="mnemonic-jax-batch-") as tmp:
    root = pathlib.Path(tmp)
    listed = []
    for i, (name, case) in enumerate(cases.items()):
      listed.append(dict(args=list(map(str, case["args"])), cwd=str(case.get("cwd", REPO)),
                         watch=[str(w) for w in case.get("watch", ())],
                         stdout=str(case.get("stdout_to", root / f"{i}.out")),
                         stderr=str(root / f"{i}.err"),
                         module=case.get("module", "mnemonic_jax.cli"),
                         memory_limit=memory_limit))
    (root / "cases.json").write_text(json.dumps(listed))
    _ask(_server(full, tuple(preload)), [str(root / "cases.json"), str(root / "results.json")],
         timeout)
    results = json.loads((root / "results.json").read_text())
    ran = {}
    for (name, given), case, got in zip(cases.items(), listed, results):
      stdout = None if "stdout_to" in given else pathlib.Path(case["stdout"]).read_text()
      result = subprocess.CompletedProcess(["mnemonic-jax", *case["args"]], got["returncode"],
                                           stdout, pathlib.Path(case["stderr"]).read_text())
      ran[name] = Ran(result, got["before"], got["after"])
    return ran
