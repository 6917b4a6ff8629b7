"""A fault-injection round over the kinds of #22 the command line owns, with totals.

Each case runs the real command (``python -m mnemonic_jax.cli``) or the public function
in a child process, injects one fault and checks the promised outcome:

* a full disk during ``forget`` and ``train`` (a 64 KiB tmpfs; skipped, and said, where
  mounting is not allowed): one line naming the output, exit 2, nothing left behind;
* the report lost after the save (``> /dev/full``, a closed pipe): exit 3 naming the
  complete output (``evaluate``: exit 2);
* ``JAX_PLATFORMS=gpu`` on a machine without one, for every command and for
  ``checkpointing.import_params`` of an Orbax directory: one line naming JAX_PLATFORMS;
* Ctrl-C at several moments of ``forget`` (timed from when the child starts loading JAX):
  one line and 130, or exit 0 with a complete output written before the signal;
* ``mj.fit`` on a model without a ``train`` keyword: the project's one-line error;
* class and dataset names holding control characters: printed escaped;
* ``forget`` on a model trained without codes: no "may still be known" once the test
  images show the class gone.

Every run is counted once: ``ok``, ``traceback`` (a traceback or an "Exception ignored"
on stderr, or exit 1), ``hang`` (past the time limit), ``silent`` (exit 0 with a wrong
result), ``wrong`` (another wrong outcome) or ``input lost`` (an input changed).

Usage: ``python -m experiments.fault_round [--keep DIR]`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from experiments import runner_args

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
OUTCOMES = ("ok", "traceback", "hang", "silent", "wrong", "input lost")
_INTERRUPTIBLE = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                  "signal.default_int_handler); sys.argv[0] = 'mnemonic-jax'; "
                  "runpy.run_module('mnemonic_jax.cli', run_name='__main__')")
HOSTILE = ["\x1b[2J\x1b[31mred", "bell\x07", "two\nlines", "\u202eevil", "tab\tbed",
           "del\x7f", "c1\x9b31m", "ok", "nbsp\u00a0", "z\x00"]


class Totals:
  """Outcomes of the round's runs, by case."""

  def __init__(self):
    self.rows: list[tuple[str, str, str]] = []

  def add(self, case: str, outcome: str, note: str = "") -> None:
    """Records one run of ``case`` (``outcome`` one of :data:`OUTCOMES`)."""
    if outcome not in OUTCOMES:
      raise ValueError(f"unknown outcome {outcome!r}")
    self.rows.append((case, outcome, note))

  def count(self, outcome: str) -> int:
    return sum(1 for _, o, _ in self.rows if o == outcome)

  @property
  def runs(self) -> int:
    return len(self.rows)

  @property
  def tracebacks(self) -> int:
    return self.count("traceback")

  def summary(self) -> str:
    """The totals line."""
    return (f"runs {self.runs}, tracebacks {self.tracebacks}, hangs {self.count('hang')}, "
            f"silent wrong results {self.count('silent')}, other wrong outcomes "
            f"{self.count('wrong')}, inputs lost {self.count('input lost')}")


def _env(**extra: str) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env.pop("JAX_PLATFORMS", None)
  env.update(extra)
  return env


def digest(root: pathlib.Path) -> dict[str, str]:
  """Every file under ``root`` by SHA-256 (an input must keep it)."""
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


class Round:
  """The cases, sharing a scratch folder, a compilation cache and two trained bundles."""

  def __init__(self, scratch: pathlib.Path):
    self.scratch = scratch
    self.totals = Totals()
    self.cache = scratch / "cache"
    self.trained = self.plain = scratch / "none"
    self.baseline: dict[pathlib.Path, dict[str, str]] = {}  # The inputs, before any run.

  def watch(self, *paths: pathlib.Path) -> None:
    """Records the inputs ``paths`` as they are: every later run must keep them."""
    for path in paths:
      self.baseline[path] = digest(path)

  # -- running -------------------------------------------------------------------------

  def cli(self, *args, stdout=subprocess.PIPE, argv0: Sequence[str] | None = None,
          **env: str) -> subprocess.CompletedProcess | None:
    """The real command to completion; None if it hung."""
    start = list(argv0) if argv0 else [sys.executable, "-m", "mnemonic_jax.cli"]
    try:
      return subprocess.run([*start, *map(str, args)], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S,
                            env=_env(MNEMONIC_JAX_CACHE_DIR=str(self.cache), **env), cwd=REPO,
                            check=False)
    except subprocess.TimeoutExpired:
      return None

  def judge(self, case: str, result, check: Callable[[], str], inputs=()) -> None:
    """Counts one run: ``check()`` returns "" when the outcome is the promised one; the
    ``inputs`` (watched, see :meth:`watch`) must be as they were."""
    if result is None:
      self.totals.add(case, "hang")
      return
    err = result.stderr or ""
    if "Traceback" in err or "Exception ignored" in err or result.returncode == 1:
      self.totals.add(case, "traceback", err.strip().splitlines()[-1:][0] if err else "")
      return
    problem = check()
    if any(digest(p) != self.baseline[p] for p in inputs):
      self.totals.add(case, "input lost")
    elif problem:
      self.totals.add(case, "silent" if result.returncode == 0 else "wrong", problem)
    else:
      self.totals.add(case, "ok")

  @staticmethod
  def one_line(result, status: int, *words: str) -> str:
    """"" if stderr is one error line holding ``words`` and the exit status is ``status``."""
    lines = result.stderr.splitlines()
    if result.returncode != status:
      return f"exit {result.returncode}, expected {status}: {result.stderr.strip()[-200:]}"
    if len(lines) != 1 or not lines[0].startswith("mnemonic-jax: error: "):
      return f"stderr is not one error line: {result.stderr[-200:]!r}"
    missing = [w for w in words if w not in lines[0]]
    return f"the line lacks {missing}: {lines[0]}" if missing else ""

  # -- setting up ----------------------------------------------------------------------

  def train_bundles(self) -> None:
    """Two small digits MLPs (64-32-10): with codes, and without (``t_mix = 0``)."""
    code = ("import sys\nfrom mnemonic_jax import workflow\n"
            "base = dict(seed=0, dataset='digits', model='mlp', model_kwargs={'hidden': (32,)},"
            " epochs=8, batch_size=64, learning_rate=0.1, momentum=0.9, weight_decay=5e-4,"
            " checkpoint_every=1000)\n"
            "workflow.train({**base, 't_mix': 0.1}, sys.argv[1], progress=False)\n"
            "workflow.train({**base, 't_mix': 0.0}, sys.argv[2], progress=False)\n")
    subprocess.run([sys.executable, "-c", code, str(self.scratch / "coded"),
                    str(self.scratch / "plain")], check=True, env=_env(), cwd=REPO,
                   timeout=1200, capture_output=True)
    self.trained = self.scratch / "coded" / "bundle"
    self.plain = self.scratch / "plain" / "bundle"
    self.watch(self.trained, self.plain)

  def tiny_disk(self, name: str) -> pathlib.Path | None:
    mount = self.scratch / name
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    return mount if done.returncode == 0 else None

  # -- the cases -----------------------------------------------------------------------

  def full_disk(self) -> None:
    disk = self.tiny_disk("disk1")
    if disk is None:
      print("full disk: skipped (a tmpfs cannot be mounted here; the tests stage it "
            "in-process)")
      return
    try:
      out = disk / "out"
      result = self.cli("forget", "--checkpoint", self.trained, "--classes", "3", "--output",
                        out, "-q")
      self.judge("full disk: forget", result, lambda: self.one_line(
          result, 2, str(out), "No space left on device") or (
              f"left {list(disk.iterdir())}" if list(disk.iterdir()) else ""),
                 inputs=[self.trained])
      workdir = disk / "run"
      result = self.cli("train", "--config", "digits_mlp:quick",
                        "--config.model_kwargs.hidden=(32,)", "--config.epochs=2", "--workdir",
                        workdir, "-q")
      left = lambda: [p.name for p in workdir.rglob("*") if "tmp" in p.name]  # noqa: E731
      self.judge("full disk: train", result, lambda: self.one_line(
          result, 2, str(workdir), "No space left on device") or (
              f"left {left()}" if left() else ""))
    finally:
      subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)

  def lost_report(self) -> None:
    out = self.scratch / "lost1"
    with open("/dev/full", "w", encoding="utf-8") as full:
      result = self.cli("forget", "--checkpoint", self.trained, "--classes", "3", "--output",
                        out, "-q", stdout=full)
    self.judge("report lost: forget > /dev/full", result, lambda: self.one_line(
        result, 3, str(out), "complete") or self._loads(out), inputs=[self.trained])
    with open("/dev/full", "w", encoding="utf-8") as full:
      result = self.cli("evaluate", "--checkpoint", self.trained, "-q", stdout=full)
    self.judge("report lost: evaluate > /dev/full", result,
               lambda: self.one_line(result, 2, "stdout"), inputs=[self.trained])
    out = self.scratch / "lost2"
    read, write = os.pipe()
    os.close(read)  # A reader that went away: EPIPE.
    with os.fdopen(write, "w") as closed:
      result = self.cli("forget", "--checkpoint", self.trained, "--classes", "3", "--output",
                        out, "-q", stdout=closed)
    self.judge("report lost: forget | (closed)", result, lambda: self.one_line(
        result, 3, str(out)) or self._loads(out), inputs=[self.trained])

  @staticmethod
  def _loads(path: pathlib.Path) -> str:
    code = ("import sys; from mnemonic_jax import checkpointing; "
            "checkpointing.load_bundle(sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          env=_env(), cwd=REPO, check=False, timeout=TIMEOUT_S)
    return "" if done.returncode == 0 else f"{path} does not load"

  def platforms(self) -> None:
    scratch = self.scratch / "gpu"
    commands = {
        "forget": ("forget", "--checkpoint", self.trained, "--classes", "3", "--output",
                   scratch / "f"),
        "train": ("train", "--config", "digits_mlp:quick", "--workdir", scratch / "t"),
        "evaluate": ("evaluate", "--checkpoint", self.trained),
        "import": ("import", "--params", self.trained, "--codes", scratch / "c.npy", "--model",
                   "mlp", "--num-classes", "10", "--input-shape", "8,8,1", "--mean", "0",
                   "--std", "1", "--output", scratch / "i"),
        "attach-codes": ("attach-codes", "--checkpoint", self.trained, "--output",
                         scratch / "a"),
    }
    scratch.mkdir()
    code = ("import sys, numpy as np, orbax.checkpoint as ocp\n"
            "from mnemonic_jax import checkpointing, errors\n"
            "b = checkpointing.load_bundle(sys.argv[1])\n"
            "ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).save(sys.argv[2], b.params)\n"
            "np.save(sys.argv[3], np.asarray(b.codes))\n")
    subprocess.run([sys.executable, "-c", code, str(self.trained), str(scratch / "orbax"),
                    str(scratch / "c.npy")], env=_env(), cwd=REPO, check=True,
                   capture_output=True, timeout=TIMEOUT_S)
    for name, args in commands.items():
      result = self.cli(*args, "-q", JAX_PLATFORMS="gpu")
      self.judge(f"JAX_PLATFORMS=gpu: {name}", result,
                 lambda: self.one_line(result, 2, "JAX_PLATFORMS"), inputs=[self.trained])
    child = ("import sys\nfrom mnemonic_jax import checkpointing, errors\ntry:\n"
             "  checkpointing.import_params(sys.argv[1], sys.argv[2], model_name='mlp',"
             " num_classes=10, input_shape=(8, 8, 1), model_kwargs={'hidden': (32,)},"
             " mean=(0.,), std=(1.,), output=sys.argv[3])\n"
             "except errors.BadEnvironment as e:\n  print('environment:', e)\n")
    result = self.cli(str(scratch / "orbax"), str(scratch / "c.npy"), str(scratch / "o"),
                      argv0=[sys.executable, "-c", child], JAX_PLATFORMS="gpu")
    self.judge("JAX_PLATFORMS=gpu: import_params (library)", result,
               lambda: "" if "JAX_PLATFORMS" in (result.stdout or "") else
               f"not named: {result.stdout!r}")

  def interrupts(self, delays: Sequence[float]) -> None:
    for delay in delays:
      out = self.scratch / f"int-{delay}"
      proc = subprocess.Popen(
          [sys.executable, "-c", _INTERRUPTIBLE, "forget", "--checkpoint", str(self.trained),
           "--classes", "3", "--output", str(out), "-q"], stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True, env=_env(MNEMONIC_JAX_CACHE_DIR=str(self.cache)),
          cwd=REPO)
      while proc.poll() is None and not _jax_loading(proc.pid):
        time.sleep(0.002)
      time.sleep(delay)
      sent = time.time()
      proc.send_signal(signal.SIGINT)
      try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
      except subprocess.TimeoutExpired:
        proc.kill()
        result = None

      def check(result=result, out=out, sent=sent):
        if result.returncode == 0:
          if not out.exists():
            return "exit 0 without its output"
          if out.lstat().st_ctime > sent:
            return "exit 0, yet the signal came before the write"
          return self._loads(out)
        problem = self.one_line(result, 130, "interrupted")
        return problem or (self._loads(out) if out.exists() else "")

      self.judge(f"Ctrl-C {delay:.2f} s into forget", result, check, inputs=[self.trained])

  def fit_without_train(self) -> None:
    child = ("import jax, numpy as np, flax.linen as nn, mnemonic_jax as mj\n"
             "class M(nn.Module):\n  @nn.compact\n  def __call__(self, x):\n"
             "    return nn.Dense(3)(x.reshape((x.shape[0], -1)))\n"
             "try:\n  mj.fit(M(), (np.zeros((8, 2, 2, 1), np.uint8), np.arange(8) % 3),"
             " np.zeros((3, 2, 2, 1), np.float32), mj.FitConfig(epochs=1, batch_size=4),"
             " jax.random.key(0), progress=False)\n"
             "except mj.errors.MnemonicJaxError as e:\n  print('refused:', e)\n")
    result = self.cli(argv0=[sys.executable, "-c", child])
    self.judge("mj.fit without a train keyword", result,
               lambda: "" if "refused:" in (result.stdout or "") and "train" in result.stdout
               else f"not the project's error: {result.stdout!r}")

  def escapes(self) -> None:
    code = ("import sys\nfrom mnemonic_jax import checkpointing\n"
            "b = checkpointing.load_bundle(sys.argv[1])\n"
            f"h = b.replace(class_names=tuple({HOSTILE!r}))\n"
            "checkpointing.save_bundle(sys.argv[2], h)\n"
            "checkpointing.save_bundle(sys.argv[3], h.replace(dataset='\\x1b]0;pwned\\x07'))\n")
    hostile, odd = self.scratch / "hostile", self.scratch / "odd"
    subprocess.run([sys.executable, "-c", code, str(self.trained), str(hostile), str(odd)],
                   env=_env(), cwd=REPO, check=True, capture_output=True, timeout=TIMEOUT_S)
    self.watch(hostile, odd)
    printable = lambda text: all(ch == "\n" or ch.isprintable() for ch in text)  # noqa: E731
    result = self.cli("evaluate", "--checkpoint", hostile, "-q")
    self.judge("escapes: evaluate's class names", result, lambda: "" if (
        result.returncode == 0 and printable(result.stdout)) else "raw control characters",
               inputs=[hostile])
    result = self.cli("forget", "--checkpoint", hostile, "--classes", "0", "--output",
                      self.scratch / "hostile-out", "--dataset", "digits", "-q")
    self.judge("escapes: forget --dataset's table", result, lambda: "" if (
        result.returncode == 0 and printable(result.stdout)) else "raw control characters",
               inputs=[hostile])
    result = self.cli("evaluate", "--checkpoint", odd, "-q")
    self.judge("escapes: a dataset name in the error line", result, lambda: self.one_line(
        result, 2) or ("" if printable(result.stderr) else "raw control characters"),
               inputs=[odd])

  def untrained_warning(self) -> None:
    for cls in (3, 8):
      out = self.scratch / f"plain-{cls}"
      result = self.cli("forget", "--checkpoint", self.plain, "--classes", cls, "--output",
                        out, "--dataset", "digits", "-q")

      def check(result=result):
        if result.returncode != 0:
          return f"exit {result.returncode}"
        e_f = re.search(r"E_F \(error on forgotten classes\):\s+\S+ -> (\S+)", result.stdout)
        if e_f is None:
          return "no E_F"
        if float(e_f.group(1)) == 100.0 and "t_mix = 0" in result.stdout:
          return "E_F 100, yet warned that the codes were never seen"
        if float(e_f.group(1)) < 100.0 and "still classified" not in result.stdout:
          return "E_F below 100, without saying how much is still known"
        return ""

      self.judge(f"untrained codes: forget class {cls} --dataset", result, check,
                 inputs=[self.plain])


def _jax_loading(pid: int) -> bool:
  try:
    return "jaxlib" in pathlib.Path(f"/proc/{pid}/maps").read_text()
  except OSError:
    return False


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the round and prints every run and the totals.

  Returns:
    0 when every run had the promised outcome, 1 otherwise.
  """
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=runner_args.HelpFormatter)
  parser.add_argument("--keep", type=pathlib.Path, help="scratch folder to keep")
  parser.add_argument("--delays", default="0,0.2,0.5,1,1.5,2,3,4,6",
                      help="seconds after JAX starts loading at which Ctrl-C is sent")
  args = parser.parse_args(argv)
  holder = None if args.keep else tempfile.TemporaryDirectory(prefix="fault-round-")
  scratch = args.keep or pathlib.Path(holder.name)
  scratch.mkdir(parents=True, exist_ok=True)
  start = time.time()
  fault_round = Round(scratch)
  fault_round.train_bundles()
  fault_round.full_disk()
  fault_round.lost_report()
  fault_round.platforms()
  fault_round.interrupts([float(d) for d in args.delays.split(",")])
  fault_round.fit_without_train()
  fault_round.escapes()
  fault_round.untrained_warning()
  totals = fault_round.totals
  by_case = collections.Counter(outcome for _, outcome, _ in totals.rows)
  for case, outcome, note in totals.rows:
    print(f"{outcome:<10}  {case}" + (f"  ({note})" if note else ""))
  print(f"\n{totals.summary()} ({dict(by_case)}; {time.time() - start:.0f} s)")
  if holder is not None:
    holder.cleanup()
  return 0 if by_case.get("ok", 0) == totals.runs else 1


if __name__ == "__main__":
  sys.exit(main())
