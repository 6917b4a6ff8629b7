"""Benchmark: the ``mnemonic-jax`` command end to end, first and second run.

Times ``mnemonic-jax forget`` as a user runs it (a new process: start, imports, loading
the bundle, compiling or reading compiled programs, forgetting, saving the new bundle) on
the paper's digits MLP (64-1000-10) and Fashion-MNIST MLP (784-1000-10) bundles, with
fixed lambdas (``--lambda1 1e-3 --lambda2 10``), with the data-free search (``auto``:
``--move paper``) and with the command's default move (``bias``, no lambdas),
each:

* without the persistent compilation cache (``--no-compilation-cache``);
* first run: an empty cache folder, which the run fills;
* second run: the same folder, now holding the programs the first run compiled.

The cache is JAX's persistent compilation cache alone. The project's own store of whole
compiled programs (the ``mnemonic-jax-programs`` folder of ``mnemonic_jax/_jit.py``,
which spared a second run the tracing) was deleted with the hand-made program cache
(issue #18), so this benchmark no longer compares against it, and its second runs are not
comparable with reports written before that change; the report says so.

It prints, in one run, the medians over ``--repeats`` rounds (runs interleaved, so that a
busy moment of a shared machine does not land on one kind of run only), the ratio of the
second run to the first, and the ratio to the PyTorch reference implementation's
load-forget-save, 5.2 s on this machine's CPU (measured by the session that filed issue
#9; not re-run here). Also ``--help`` and ``--version``.

The bundles: ``--bundle NAME=PATH`` (e.g. trained by ``experiments.table``); by default
they are trained once by ``mnemonic-jax train`` into ``runs/bench_cli`` (digits: the
``quick`` variant; Fashion-MNIST: 1 epoch, which needs ``dataset-fashion-mnist``).

Usage:
  python -m experiments.bench_cli [--repeats 3] [--bundle digits=PATH ...] \\
      [--out experiments/results/bench_cli.md]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from experiments.common import out_path

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_SECONDS = 5.2
#: The ways ``forget`` runs: the paper's fixed lambdas, the paper's move with the data-free
#: lambda search (``auto``), and the command's default without lambdas (the ``bias`` move).
LAMBDAS = {"fixed": ("--lambda1", "1e-3", "--lambda2", "10"), "auto": ("--move", "paper"),
           "default (bias)": ()}
#: name -> (config spec, forget class) of the bundles trained when none is given.
DEFAULT_BUNDLES = {
    "digits": ("digits_mlp:quick", 3),
    "fashion_mnist": ("fashion_mnist_mlp:e1", 8),
}
SCRATCH = pathlib.Path("runs/bench_cli")
KINDS = ("no cache", "first run", "second run")


def command(*args: str) -> list[str]:
  return [sys.executable, "-m", "mnemonic_jax.cli", *args]


def environment() -> dict[str, str]:
  """This environment without any compilation-cache setting (each run names its own)."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("MNEMONIC_JAX_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR",
                      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  return env


def timed(args: Sequence[str]) -> float:
  """Wall seconds of one command run to completion (it must succeed)."""
  start = time.perf_counter()
  result = subprocess.run(list(args), env=environment(), cwd=REPO, capture_output=True,
                          text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    sys.exit(f"bench_cli: {shlex.join(args)} failed:\n{result.stderr}")
  return seconds


def default_bundle(name: str) -> pathlib.Path:
  """The bundle of ``DEFAULT_BUNDLES[name]``, trained by ``mnemonic-jax train`` if missing."""
  spec, _ = DEFAULT_BUNDLES[name]
  workdir = REPO / SCRATCH / name
  if not (workdir / "bundle").is_dir():
    print(f"training {spec} into {workdir} ...", file=sys.stderr, flush=True)
    timed(command("train", "--config", spec, "--workdir", str(workdir), "-q"))
  return workdir / "bundle"


def machine() -> str:
  """The CPU, its cores, the load and the JAX version (the benchmark imports no JAX)."""
  model = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
  jax_version = subprocess.run(
      [sys.executable, "-c", "import jax; print(jax.__version__, jax.devices()[0].platform)"],
      capture_output=True, text=True, check=False).stdout.split()
  return (f"{model}, {cores} cores usable, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}, jax {' on '.join(jax_version) or '?'}; "
          f"load average at the start {load}")


def main(argv: Sequence[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3, help="rounds (medians are reported)")
  parser.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                      help="a bundle to forget from (default: digits and fashion_mnist, "
                           f"trained into {SCRATCH})")
  parser.add_argument("--note", action="append", default=[], help="a line about the machine")
  parser.add_argument("--out", type=lambda t: pathlib.Path(out_path(t)), default=None,
                      help="also write the report")
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)

  host = machine()
  given = dict(item.split("=", 1) for item in args.bundle)
  bundles = {name: pathlib.Path(path).absolute() for name, path in given.items()} or {
      name: default_bundle(name) for name in DEFAULT_BUNDLES}
  classes = {name: str(DEFAULT_BUNDLES.get(name, ("", 3))[1]) for name in bundles}

  times: dict[tuple[str, str, str], list[float]] = {}
  with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
    scratch = pathlib.Path(scratch)
    for round_ in range(args.repeats):
      for name, bundle in bundles.items():
        for lambdas, extra in LAMBDAS.items():
          tag = lambdas.split()[0]
          cache = scratch / f"cache-{round_}-{name}-{tag}"
          base = ("forget", "--checkpoint", str(bundle), "--classes", classes[name], "-q",
                  *extra)
          runs = {
              "no cache": ("--no-compilation-cache",),
              "first run": ("--compilation-cache", str(cache)),
              "second run": ("--compilation-cache", str(cache)),
          }
          for kind, flags in runs.items():
            out = scratch / f"out-{round_}-{name}-{tag}-{kind.replace(' ', '-')}"
            seconds = timed(command(*base, *flags, "--output", str(out)))
            times.setdefault((name, lambdas, kind), []).append(seconds)
            print(f"round {round_ + 1}: {name} {lambdas} {kind}: {seconds:.2f} s",
                  file=sys.stderr, flush=True)
      for flag in ("--help", "--version"):
        times.setdefault(("", flag, ""), []).append(timed(command(flag)))

  med = {key: statistics.median(values) for key, values in times.items()}
  lines = [
      "# `mnemonic-jax forget` end to end: first and second run",
      "",
      f"Command: `python -m experiments.bench_cli {shlex.join(argv)}`",
      "",
      f"Machine: {host}.",
      *[f"{note}" for note in args.note],
      "",
      f"Medians of {args.repeats} rounds, wall seconds of the whole process (start, imports, "
      "loading the bundle, compiling or reading the compiled programs, forgetting, saving "
      "the new bundle). *First run*: an empty compilation-cache folder, which the run "
      "fills; *second run*: the same folder. Reference: the PyTorch implementation's "
      f"load-forget-save, {REFERENCE_SECONDS} s on this CPU (issue #9).",
      "",
      "The folder is JAX's persistent compilation cache alone: a second run reads the "
      "compiled executables from it but traces every program again. The project's own "
      "store of whole programs (`mnemonic-jax-programs`, `mnemonic_jax/_jit.py`) was "
      "deleted (issue #18), so there is no comparison with it, and second runs measured "
      "with it (reports written before that change) are not comparable with these.",
      "",
      "| bundle | lambdas | no cache | first run | second run | second / first "
      "| second / reference |",
      "|---|---|---|---|---|---|---|",
  ]
  for name, bundle in bundles.items():
    for lambdas in LAMBDAS:
      no, first, second = (med[(name, lambdas, kind)] for kind in KINDS)
      lines.append(f"| {name} | {lambdas} | {no:.2f} | {first:.2f} | {second:.2f} | "
                   f"{second / first:.2f} | {second / REFERENCE_SECONDS:.2f} |")
  lines += [
      "",
      f"`mnemonic-jax --help`: {med[('', '--help', '')]:.2f} s; "
      f"`mnemonic-jax --version`: {med[('', '--version', '')]:.2f} s.",
      "",
      "Bundles: " + "; ".join(f"{name} `{path}`" for name, path in bundles.items()) + ".",
      "",
      "Every run: " + ", ".join(f"{k[0]} {k[1]} {k[2]}: "
                                + " ".join(f"{v:.2f}" for v in values)
                                for k, values in times.items() if k[0]) + ".",
  ]
  report = "\n".join(lines) + "\n"
  if args.out is not None:
    args.out.write_text(report)
  return report


if __name__ == "__main__":
  print(main(), end="")
