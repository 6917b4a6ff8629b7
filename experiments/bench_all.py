"""Every benchmark at a size that runs in minutes on 2 CPU cores, into one report.

Runs, each in its own process (so one's compilations and caches do not help another):
``bench_train`` (roofline, progress bar, compiling once), ``bench_forget`` (first and
later library calls), ``bench_fisher`` (per-example Fisher, the MLP and a narrow
ResNet-18), ``bench_search`` (the data-free lambda search) and ``bench_cli`` (a second
``mnemonic-jax forget``), and writes their tables, the machine and the load into one
Markdown file. Each benchmark's ratios divide figures measured in its own run.

Not measured here: the side-by-side comparison with a PyTorch transcription of the
paper's Algorithms 1 and 2 (no such transcription is in this repository yet); no figure
of another run is divided by.

Usage:
  python -m experiments.bench_all [--out experiments/results/bench.md]
"""

import argparse
import datetime
import os
import subprocess
import sys
import time

from experiments.common import machine_line, out_path

#: ``(name, arguments)``: each benchmark at its small size.
BENCHES = (
    ("bench_train", ["--data", "random", "--rounds", "2", "--repeats", "10"]),
    ("bench_forget", ["--repeats", "5"]),
    ("bench_fisher", ["--repeats", "3", "--skip-224", "--models", "mlp,resnet18_cifar"]),
    ("bench_search", ["--classes", "10,100", "--repeats", "2"]),
    ("bench_cli", ["--repeats", "2"]),
)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="experiments.bench_all",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=out_path, default="runs/experiments/bench.md",
                      help="the report (default: the scratch folder)")
  parser.add_argument("--only", default=None, help="comma-separated benchmark names")
  args = parser.parse_args(argv)
  chosen = [b for b in BENCHES if args.only is None or b[0] in args.only.split(",")]
  sections, failed = [], []
  for name, bench_args in chosen:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", f"experiments.{name}", *bench_args],
                         capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    command = f"python -m experiments.{name} {' '.join(bench_args)}"
    status = "" if run.returncode == 0 else f" **failed (exit {run.returncode})**"
    if run.returncode:
      failed.append(name)
    body = run.stdout.strip() or run.stderr.strip()[-2000:]
    sections.append(f"## {name}{status}\n\nCommand: `{command}` ({seconds:.0f} s; load average "
                    f"before: {load})\n\n{body}\n")
  text = "\n".join([
      "# Benchmarks", "",
      f"Command: `python -m experiments.bench_all`, {datetime.date.today()}; "
      f"{machine_line()}.", "",
      "Each section is one benchmark run in its own process; its ratios divide figures of "
      "that run. No PyTorch reference is run here (see the module docstring).", "",
      *sections])
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
