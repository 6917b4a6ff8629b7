"""Benchmark: ``mnemonic-jax forget`` end to end beside the PyTorch transcription's.

Times ``mnemonic-jax forget`` as a user runs it (a new process: start, imports, loading
the bundle, compiling or reading compiled programs, forgetting, saving the new bundle) on
the paper's digits MLP (64-1000-10) and Fashion-MNIST MLP (784-1000-10) bundles, with
fixed lambdas (``--lambda1 1e-3 --lambda2 10``), with the data-free search (``--move
paper``) and with the command's default move (``reassign``, no lambdas), each:

* without the persistent compilation cache (``--no-compilation-cache``);
* first run: an empty cache folder, which the run fills;
* second run: the same folder, now holding what the first run compiled (JAX's persistent
  compilation cache: a second run reads the compiled executables and traces again).

Beside them, in the same rounds, the PyTorch transcription's load-forget-save
(``python -m experiments.torch_reference forget``: import torch, load the checkpoint,
Algorithm 2 with the same fixed lambdas, save) on the same weights, exported once from
each bundle before the rounds (not timed), at 1 thread and at 2 (``--torch-threads``).
Runs are interleaved (the order of the groups rotates each round; a first and second run
stay in order), medians reported, and the ratios divide figures of this run: the second
run over the first, and the second run over the reference's load-forget-save. Also
``--help`` and ``--version``.

The bundles: ``--bundle NAME=PATH`` (MLPs: the transcription has the MLP; another model
gets no reference run); by default they are trained once by ``mnemonic-jax train`` into
``runs/bench_cli`` (digits: the ``quick`` variant; Fashion-MNIST: 1 epoch, which needs
``dataset-fashion-mnist``).

Usage:
  python -m experiments.bench_cli [--repeats 3] [--bundle digits=PATH ...] \\
      [--torch-threads 1,2] [--out FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from experiments import bench_common as bc

REPO = bc.REPO
#: The ways ``forget`` runs: the paper's fixed lambdas, the paper's move with the data-free
#: lambda search, and the command's default without lambdas (the ``reassign`` move).
LAMBDAS = {"fixed": ("--lambda1", "1e-3", "--lambda2", "10"), "paper (search)": ("--move",
                                                                                 "paper"),
           "default (reassign)": ()}
#: name -> (config spec, forget class) of the bundles trained when none is given.
DEFAULT_BUNDLES = {
    "digits": ("digits_mlp:quick", 3),
    "fashion_mnist": ("fashion_mnist_mlp:e1", 8),
}
SCRATCH = pathlib.Path("runs/bench_cli")
KINDS = ("no cache", "first run", "second run")
#: JAX's own start, nothing of mnemonic-jax: what any ``mnemonic-jax`` run takes at least.
JAX_START = "import jax; jax.numpy.zeros(1).block_until_ready()"
#: Part of JAX's start: its dtypes library's import beyond NumPy's (setup.cfg keeps
#: ml_dtypes under 0.7, whose import registers its ufunc loops for 0.5 s).
DTYPES_START = ("import numpy", "import ml_dtypes")


def command(*args: str) -> list[str]:
  return [sys.executable, "-m", "mnemonic_jax.cli", *args]


def environment() -> dict[str, str]:
  """This environment without any compilation-cache setting (each run names its own)."""
  import os  # pylint: disable=import-outside-toplevel

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
    sys.exit(f"bench_cli: {shlex.join(args)} failed:\n{result.stderr[-3000:]}")
  return seconds


def default_bundle(name: str) -> pathlib.Path:
  """The bundle of ``DEFAULT_BUNDLES[name]``, trained by ``mnemonic-jax train`` if missing."""
  spec, _ = DEFAULT_BUNDLES[name]
  workdir = REPO / SCRATCH / name
  if not (workdir / "bundle").is_dir():
    print(f"training {spec} into {workdir} ...", file=sys.stderr, flush=True)
    timed(command("train", "--config", spec, "--workdir", str(workdir), "-q"))
  return workdir / "bundle"


def export(bundle: str, output: str) -> None:
  """Writes the bundle's MLP and codes as a checkpoint of the transcription (a child).

  Prints ``ok`` or ``skip: <why>`` (a model the transcription does not have).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel

  from experiments import torch_reference as tr  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel

  b = checkpointing.load_bundle(bundle)
  if b.model_name != "mlp":
    print(f"skip: a {b.model_name} bundle (the transcription has the MLP only)")
    return
  kwargs = {"in_features": int(np.prod(b.input_shape)), "num_classes": b.num_classes,
            "hidden": list(b.model_kwargs.get("hidden", (1000,))),
            "activation": b.model_kwargs.get("activation", "sigmoid")}
  model = tr.build("mlp", kwargs)
  tr.load_flax_params(model, b.params)
  codes = tr.import_torch().tensor(np.asarray(b.codes, np.float32))
  tr.save_checkpoint(output, "mlp", kwargs, model, codes)
  print("ok")


def floor_lines(med: dict, checkpoints: dict, threads: list[int]) -> list[str]:
  """JAX's own start beside the reference's load-forget-save: the lowest ratio possible."""
  jax_start = med[("", "jax", "")]
  line = f"JAX's own start (`python -c '{JAX_START}'`, nothing of mnemonic-jax): {jax_start:.2f} s"
  dtypes = med[("", DTYPES_START[1], "")] - med[("", DTYPES_START[0], "")]
  line += f" (ml_dtypes {_version('ml_dtypes')}'s import beyond NumPy's: {dtypes:.2f} s)"
  refs = [f"{jax_start / med[(name, f'PyTorch, {bc.threads(n)}', '')]:.2f} of the "
          f"transcription's load-forget-save ({name}, {bc.threads(n)})"
          for name in checkpoints for n in threads]
  if refs:
    line += ": " + "; ".join(refs) + ". No `mnemonic-jax` run can go below these ratios"
  return [line + ".", ""]


def _version(distribution: str) -> str:
  import importlib.metadata  # pylint: disable=import-outside-toplevel
  return importlib.metadata.version(distribution)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="experiments.bench_cli",
                                   formatter_class=bc.HelpFormatter,
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3, help="rounds (medians are reported)")
  parser.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                      help="a bundle to forget from (default: digits and fashion_mnist, "
                           f"trained into {SCRATCH})")
  parser.add_argument("--only", default=None,
                      help="comma-separated names of the default bundles to use")
  parser.add_argument("--torch-threads", default="1,2", help="PyTorch thread counts")
  parser.add_argument("--note", action="append", default=[], help="a line about the machine")
  parser.add_argument("--out", type=bc.out_path, default=None, help="also write the report")
  parser.add_argument("--json", default=None, help="write the ratio rows here (bench_all)")
  parser.add_argument("--child", choices=("export",), help=argparse.SUPPRESS)
  parser.add_argument("--bundle-path", help=argparse.SUPPRESS)
  parser.add_argument("--output", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    export(args.bundle_path, args.output)
    return 0
  argv = sys.argv[1:] if argv is None else list(argv)
  lines = bc.header("`mnemonic-jax forget` end to end beside the PyTorch transcription's "
                    "load-forget-save", bc.command_line("bench_cli", argv))
  lines += args.note + ([""] if args.note else [])
  threads = ([int(t) for t in args.torch_threads.split(",") if t]
             if bc.torch_available() else [])
  given = dict(item.split("=", 1) for item in args.bundle)
  names = args.only.split(",") if args.only else list(DEFAULT_BUNDLES)
  bundles = {name: pathlib.Path(path).absolute() for name, path in given.items()} or {
      name: default_bundle(name) for name in names}
  classes = {name: str(DEFAULT_BUNDLES.get(name, ("", 3))[1]) for name in bundles}

  times: dict[tuple[str, str, str], list[float]] = {}
  skipped: dict[str, str] = {}
  with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
    scratch = pathlib.Path(scratch)
    checkpoints = {}
    for name, bundle in bundles.items():
      if not threads:
        break
      out = scratch / f"{name}.pt"
      said = subprocess.run(
          [sys.executable, "-m", "experiments.bench_cli", "--child", "export", "--bundle-path",
           str(bundle), "--output", str(out)], cwd=REPO, env=environment(), capture_output=True,
          text=True, check=False)
      if said.returncode:
        sys.exit(f"bench_cli: exporting {bundle} failed:\n{said.stderr[-3000:]}")
      if said.stdout.strip() == "ok":
        checkpoints[name] = out
      else:
        skipped[name] = said.stdout.strip()

    def ours(round_, name, lambdas):
      def run():
        tag = lambdas.split()[0]
        cache = scratch / f"cache-{round_}-{name}-{tag}"
        base = ("forget", "--checkpoint", str(bundles[name]), "--classes", classes[name], "-q",
                *LAMBDAS[lambdas])
        flags = {"no cache": ("--no-compilation-cache",),
                 "first run": ("--compilation-cache", str(cache)),
                 "second run": ("--compilation-cache", str(cache))}
        for kind, flag in flags.items():
          out = scratch / f"out-{round_}-{name}-{tag}-{kind.replace(' ', '-')}"
          seconds = timed(command(*base, *flag, "--output", str(out)))
          times.setdefault((name, lambdas, kind), []).append(seconds)
          print(f"round {round_ + 1}: {name} {lambdas} {kind}: {seconds:.2f} s",
                file=sys.stderr, flush=True)
      return run

    def reference(round_, name, n):
      def run():
        out = scratch / f"ref-{round_}-{name}-{n}.pt"
        seconds = timed([sys.executable, "-m", "experiments.torch_reference", "forget",
                         "--checkpoint", str(checkpoints[name]), "--classes", classes[name],
                         "--lambda1", "1e-3", "--lambda2", "10", "--threads", str(n),
                         "--output", str(out)])
        times.setdefault((name, f"PyTorch, {bc.threads(n)}", ""), []).append(seconds)
        print(f"round {round_ + 1}: {name} PyTorch {bc.threads(n)}: {seconds:.2f} s",
              file=sys.stderr, flush=True)
      return run

    for round_ in range(args.repeats):
      groups = [ours(round_, name, lambdas) for name in bundles for lambdas in LAMBDAS]
      groups += [reference(round_, name, n) for name in checkpoints for n in threads]
      shift = round_ * max(1, len(groups) // max(args.repeats, 1)) % len(groups)
      for group in groups[shift:] + groups[:shift]:
        group()
      for flag in ("--help", "--version"):
        times.setdefault(("", flag, ""), []).append(timed(command(flag)))
      for code in (JAX_START, *DTYPES_START):
        times.setdefault(("", "jax" if code == JAX_START else code, ""), []).append(
            timed([sys.executable, "-c", code]))

  med = {key: statistics.median(values) for key, values in times.items()}
  ratios = bc.Ratios()
  for name in bundles:
    for lambdas in LAMBDAS:
      for n in threads if name in checkpoints else [None]:
        ref = None if n is None else med[(name, f"PyTorch, {bc.threads(n)}", "")]
        ratios.add(f"`mnemonic-jax forget`, second run, {name}, {lambdas}"
                   f"{bc.versus(n, 'load-forget-save with fixed lambdas')}", ref,
                   med[(name, lambdas, "second run")], skipped.get(name, ""))
  lines += [
      f"Medians of {args.repeats} round(s), wall seconds of the whole process. *First "
      "run*: an empty compilation-cache folder, which the run fills; *second run*: the same "
      "folder. The PyTorch runs: load-forget-save of the same weights with lambdas 1e-3 "
      "and 10.", "", *ratios.table(), "",
      "| bundle | lambdas | no cache | first run | second run | second / first |",
      "|---|---|---|---|---|---|"]
  for name in bundles:
    for lambdas in LAMBDAS:
      no, first, second = (med[(name, lambdas, kind)] for kind in KINDS)
      lines.append(f"| {name} | {lambdas} | {no:.2f} | {first:.2f} | {second:.2f} | "
                   f"{second / first:.2f} |")
  lines += [
      "",
      f"`mnemonic-jax --help`: {med[('', '--help', '')]:.2f} s; "
      f"`mnemonic-jax --version`: {med[('', '--version', '')]:.2f} s.", "",
      *floor_lines(med, checkpoints, threads),
      "Bundles: " + "; ".join(f"{name} `{path}` (class {classes[name]})"
                              for name, path in bundles.items()) + ".", "",
      "Every run (s): " + "; ".join(f"{' '.join(filter(None, k))}: {bc.spread(v)}"
                                    for k, v in times.items() if k[0]) + ".",
      f"Load average at the end: {bc.load_average()}."]
  with bc.staged():  # The table and the ratio rows replaced together, or neither.
    bc.write("\n".join(lines), args.out)
    ratios.write_json(args.json, {"benchmark": "bench_cli"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
