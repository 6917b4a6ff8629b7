"""Every benchmark, each beside the PyTorch transcription where it has one, into one report.

Runs, each in its own process (so that one's compilations and caches do not help
another): ``bench_train`` (a training epoch and the first fit beside the transcription;
roofline, progress bar, compiling once), ``bench_forget`` (``mj.forget`` with fixed
lambdas, first and later calls, beside the transcription, and the check that both forget
alike on the same weights), ``bench_fisher`` (the per-example Fisher on ResNet-18, first
and later calls, beside the transcription's loop over the codes), ``bench_search`` (the
data-free lambda search; mnemonic-jax alone) and ``bench_cli`` (a second ``mnemonic-jax
forget`` beside the transcription's load-forget-save), at a size that takes under 10
minutes on 2 idle cores. It writes their reports, the machine, the load and a table of
every ratio (mnemonic-jax / PyTorch) into one Markdown file.

The PyTorch side is :mod:`experiments.torch_reference`, a transcription of the paper's
Algorithms 1 and 2 written from the paper's text (no code of the published reference
implementation was copied: its licence forbids it); ``pip install -e ".[bench]"``
installs CPU torch. Every ratio divides two figures measured in the same benchmark run;
no figure of another run is divided by. Without torch each benchmark says so in one line
and measures mnemonic-jax only.

Usage:
  python -m experiments.bench_all [--out experiments/results/bench.md] [--only NAMES]
      [--torch-threads 1,2] [--tiny]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time

from experiments import bench_common as bc

#: ``(name, arguments)``: each benchmark at the size of the report (under 10 minutes in
#: all on 2 idle cores).
BENCHES = (
    ("bench_train", ["--rounds", "3", "--first-rounds", "2"]),
    ("bench_forget", ["--repeats", "10", "--rounds", "3", "--models", "mlp"]),
    ("bench_fisher", ["--models", "resnet18_cifar", "--microbatches", "all", "--skip-224",
                      "--repeats", "5", "--rounds", "3"]),
    ("bench_search", ["--classes", "10,100", "--repeats", "2"]),
    ("bench_cli", ["--only", "fashion_mnist", "--repeats", "3"]),
)
#: The same at a size that only checks the wiring (``--tiny``; its figures mean nothing).
TINY = {
    "bench_train": ["--data", "random", "--examples", "1280", "--rounds", "1",
                    "--first-rounds", "1", "--repeats", "2", "--torch-threads", "1"],
    "bench_forget": ["--repeats", "2", "--rounds", "1", "--models", "mlp",
                     "--torch-threads", "1"],
    "bench_fisher": ["--models", "", "--skip-224", "--repeats", "1", "--rounds", "1",
                     "--torch-threads", "1"],
    "bench_search": ["--classes", "10", "--repeats", "1", "--no-full"],
    "bench_cli": ["--only", "digits", "--repeats", "1", "--torch-threads", "1"],
}
#: The benchmarks that write ratio rows with ``--json``.
SIDE_BY_SIDE = ("bench_train", "bench_forget", "bench_fisher", "bench_cli")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="experiments.bench_all",
                                   formatter_class=bc.HelpFormatter,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=bc.out_path, default="runs/experiments/bench.md",
                      help="the report (default: the scratch folder)")
  parser.add_argument("--only", default=None, help="comma-separated benchmark names")
  parser.add_argument("--tiny", action="store_true",
                      help="tiny sizes: checks that everything runs (figures mean nothing)")
  parser.add_argument("--torch-threads", default="1,2",
                      help="PyTorch thread counts of every side-by-side benchmark (on a "
                           "loaded machine, 2 threads can wait for each other many times "
                           "over: give 1)")
  args = parser.parse_args(argv)
  names = [name for name, _ in BENCHES]
  unknown = [n for n in (args.only or "").split(",") if n and n not in names]
  if unknown or (args.only is not None and not any(args.only.split(","))):
    print(f"experiments.bench_all: error: --only: unknown benchmark "
          f"{', '.join(unknown) or repr(args.only)}; choose from {', '.join(names)}",
          file=sys.stderr)
    return 2
  argv = sys.argv[1:] if argv is None else list(argv)
  threads = [] if args.tiny else ["--torch-threads", args.torch_threads]
  chosen = [(name, TINY[name] if args.tiny else
             bench_args + (threads if name in SIDE_BY_SIDE else []))
            for name, bench_args in BENCHES if args.only is None or name in args.only.split(",")]
  sections, failed, rows = [], [], []
  start_all, load_start = time.perf_counter(), bc.load_average()
  with tempfile.TemporaryDirectory(prefix="bench-all-") as scratch:
    for name, bench_args in chosen:
      load = bc.load_average()
      json_args = ["--json", f"{scratch}/{name}.json"] if name in SIDE_BY_SIDE else []
      start = time.perf_counter()
      run = subprocess.run([sys.executable, "-m", f"experiments.{name}", *bench_args,
                            *json_args], cwd=bc.REPO, capture_output=True, text=True,
                           check=False)
      seconds = time.perf_counter() - start
      print(f"{name}: {seconds:.0f} s, exit {run.returncode}", file=sys.stderr, flush=True)
      command = bc.command_line(name, bench_args)
      status = "" if run.returncode == 0 else f" **failed (exit {run.returncode})**"
      if run.returncode:
        failed.append(name)
      elif json_args:
        rows += [{"benchmark": name, **r}
                 for r in json.loads(open(json_args[1]).read())["rows"]]
      body = run.stdout.strip() if run.returncode == 0 else (
          run.stdout.strip()[-2000:] + "\n\n```\n" + run.stderr.strip()[-3000:] + "\n```")
      body = "\n".join("##" + line if line.startswith("#") else line  # Sub-sections.
                       for line in body.splitlines())
      sections.append(f"## {name}{status}\n\nCommand: `{command}` ({seconds:.0f} s; load "
                      f"average before: {load})\n\n{body}\n")
  table = ["| benchmark | path | PyTorch transcription (s) | mnemonic-jax (s) | ratio | note |",
           "|---|---|---:|---:|---:|---|"]
  for r in rows:
    ref = "-" if r["reference"] is None else f"{r['reference']:.4g}"
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    table.append(f"| {r['benchmark']} | {r['path']} | {ref} | {r['ours']:.4g} | {ratio} | "
                 f"{r['note']} |")
  text = "\n".join([
      "# Benchmarks: mnemonic-jax beside a PyTorch transcription of the paper", "",
      f"Command: `{bc.command_line('bench_all', argv)}`, {datetime.date.today()}, "
      f"{time.perf_counter() - start_all:.0f} s in all"
      + (" (**tiny sizes: the figures mean nothing**)" if args.tiny else "") + ".", "",
      f"Machine: {bc.machine()}. Load average at the start: {load_start}; at the end: "
      f"{bc.load_average()}.", "",
      bc.torch_line(), "",
      "Each section below is one benchmark run in its own process; each ratio is "
      "mnemonic-jax / PyTorch, both medians of interleaved rounds of that run (a figure "
      "from another run is never divided by). First calls run in a fresh process per round "
      "for both sides. Lower is better for mnemonic-jax.", "",
      "## Every ratio", "", *table, "", *sections])
  bc.write(text, args.out)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
