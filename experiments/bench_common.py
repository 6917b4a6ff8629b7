"""What the side-by-side benchmarks share: the machine line, rounds, cold runs, ratios.

The benchmarks (``bench_train``, ``bench_forget``, ``bench_cli``, ``bench_fisher``) time
mnemonic-jax and the PyTorch transcription of :mod:`experiments.torch_reference` in the
same command: interleaved rounds (the order rotates each round, so that a busy moment of
a shared machine does not land on one side only), medians, and the ratio mnemonic-jax /
reference of figures measured in that run (never a figure from another run). A *first*
call is measured in a fresh process per round (:func:`cold`), for both sides alike, so
that neither side's one-off costs are hidden by an earlier round.

Nothing here imports JAX or torch at module level (``bench_cli`` times processes and
imports neither).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, NoReturn, Sequence

from experiments import report_files, runner_args, torch_reference

#: The benchmarks' ``--help``: every option's default shown.
HelpFormatter = runner_args.HelpFormatter

REPO = pathlib.Path(__file__).resolve().parents[1]


def version(package: str) -> str:
  """An installed distribution's version, read without importing it (``-`` if absent)."""
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "-"


def load_average() -> str:
  """The 1, 5 and 15 minute load averages, e.g. ``1.2 0.9 0.7``."""
  return " ".join(f"{v:.1f}" for v in os.getloadavg())


def machine() -> str:
  """The CPU model, cores usable, OS, Python, jax and torch versions (nothing imported)."""
  model = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return (f"{model}, {cores} cores usable, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}, jax {version('jax')} (CPU), "
          f"torch {version('torch')}")


def torch_available() -> bool:
  """Whether ``import torch`` would find torch (it is not imported here)."""
  return torch_reference.torch_version() is not None


def torch_line() -> str:
  """The one line about the PyTorch side: its provenance, or that it is not installed."""
  if torch_available():
    return torch_reference.PROVENANCE + "."
  return ("PyTorch is not installed (pip install -e '.[bench]'): the PyTorch side is "
          "skipped and only mnemonic-jax is measured.")


def header(title: str, command: str) -> list[str]:
  """The lines every report starts with: title, command, machine, load, the torch line."""
  return [f"# {title}", "", f"Command: `{command}`", "",
          f"Machine: {machine()}; load average at the start: {load_average()}.", "",
          torch_line(), ""]


def command_line(module: str, argv: Sequence[str]) -> str:
  """``python -m experiments.<module> ARGS`` without ``--out``/``--json`` and their values,
  every argument shell-quoted (an empty value is ``''``: pasted back, it reruns)."""
  kept, skip = [], False
  for arg in argv:
    if skip:
      skip = False
    elif arg in ("--out", "--json"):
      skip = True
    elif not arg.startswith(("--out=", "--json=")):
      kept.append(arg)
  return runner_args.command_line(f"experiments.{module}", kept)


def refuse(prog: str, message: str) -> NoReturn:
  """A benchmark's user error: one line ``<prog>: error: <message>`` on stderr, exit 2,
  nothing written."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(2)


def interleaved(rounds: int, calls: dict[str, Callable[[], float]],
                log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
  """Seconds of each call, ``rounds`` times, in an order that rotates every round.

  Args:
    rounds: how many rounds.
    calls: name -> a function that runs once and returns its seconds.
    log: receives one line per measurement (default: stderr).

  Returns:
    name -> the ``rounds`` measurements, in round order.
  """
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))
  names = list(calls)
  out: dict[str, list[float]] = {name: [] for name in names}
  for r in range(rounds):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      seconds = calls[name]()
      out[name].append(seconds)
      log(f"round {r + 1}: {name}: {seconds:.4f} s")
  return out


def timed(fn: Callable[[], Any], wait: Callable[[Any], Any] = lambda x: x) -> float:
  """Wall seconds of ``wait(fn())``."""
  start = time.perf_counter()
  wait(fn())
  return time.perf_counter() - start


def cold(module: str, kind: str, args: Sequence[str] = (), env: dict | None = None) -> dict:
  """Runs ``python -m experiments.<module> --child <kind> ARGS`` and reads its result.

  The child measures one first call after its imports and set-up, and prints a JSON
  object as its last line of stdout.

  Raises:
    RuntimeError: the child failed (its stderr's end is in the message).
  """
  run = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--child", kind,
                        *args], cwd=REPO, capture_output=True, text=True, check=False,
                       env={**os.environ, **(env or {})})
  if run.returncode != 0 or not run.stdout.strip():
    raise RuntimeError(f"experiments.{module} --child {kind} failed (exit {run.returncode}):\n"
                       f"{run.stderr[-3000:]}")
  return json.loads(run.stdout.strip().splitlines()[-1])


def child_result(result: dict) -> None:
  """A child's last line: its result as JSON on stdout."""
  print(json.dumps(result), flush=True)


def median(values: Sequence[float]) -> float:
  """The median (``nan`` for no values)."""
  return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
  """Every measurement, e.g. ``0.52 0.55 0.61`` (for the report's detail lines)."""
  return " ".join(f"{v:.3g}" for v in values)


class Ratios:
  """The side-by-side rows of a benchmark: a table and, for ``bench_all``, a JSON file.

  Each row: what was measured, the reference's median, mnemonic-jax's median and their
  ratio (mnemonic-jax / reference), both medians from the same run.
  """

  def __init__(self):
    self.rows: list[dict[str, Any]] = []

  def add(self, path: str, reference: float | None, ours: float, note: str = "") -> None:
    """One row; ``reference`` None when torch is absent (no ratio then)."""
    ratio = None if reference is None or reference <= 0 else ours / reference
    self.rows.append({"path": path, "reference": reference, "ours": ours, "ratio": ratio,
                      "note": note})

  def table(self) -> list[str]:
    """Markdown lines of the rows."""
    lines = ["| path | PyTorch transcription (s) | mnemonic-jax (s) | ratio (mnemonic-jax / "
             "PyTorch) | note |", "|---|---:|---:|---:|---|"]
    for r in self.rows:
      ref = "-" if r["reference"] is None else f"{r['reference']:.4g}"
      ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
      lines.append(f"| {r['path']} | {ref} | {r['ours']:.4g} | {ratio} | {r['note']} |")
    return lines

  def write_json(self, path: str | None, extra: dict | None = None) -> None:
    """Writes ``{"rows": [...], **extra}`` to ``path`` (nothing without a path), whole or
    not at all; inside :func:`staged` with the report's table."""
    if path:
      report_files.write_text(path, json.dumps({"rows": self.rows, **(extra or {})}, indent=1))


def write(text: str, out: str | None) -> None:
  """Prints the report and, with ``out``, writes it there too, whole or not at all; inside
  :func:`staged` with the report's other files."""
  print(text)
  if out:
    report_files.write_text(out, text if text.endswith("\n") else text + "\n")


def staged() -> contextlib.AbstractContextManager[None]:
  """The files a benchmark writes inside (:func:`write`'s table, :meth:`Ratios.write_json`'s
  rows) replace the earlier ones together or not at all
  (:func:`experiments.report_files.staged_files`): a Ctrl-C between the two left a new
  table beside the rows of an earlier run."""
  return report_files.staged_files()


def out_path(text: str) -> str:
  """``--out``'s type in the benchmarks: the report's file, written again on a rerun (the
  committed ``experiments/results/bench.md`` is such a file). An empty value (an unset
  shell variable) and an existing folder are refused."""
  if not text:
    raise argparse.ArgumentTypeError("is empty (an unset shell variable?); give the "
                                     "report's file, e.g. runs/bench.md")
  if pathlib.Path(text).is_dir():
    raise argparse.ArgumentTypeError(f"{text} is a folder; give the report's file, e.g. "
                                     f"{pathlib.Path(text) / 'bench.md'}")
  return text


def threads(n: int) -> str:
  """``1 thread``, ``2 threads``."""
  return f"{n} thread" + ("" if n == 1 else "s")


def versus(n: int | None, what: str = "") -> str:
  """A row label's end naming the PyTorch side: `` (PyTorch WHAT, at 1 thread)``, or ``""``
  when torch is absent (``n`` None)."""
  return "" if n is None else f" (PyTorch{' ' + what + ',' if what else ''} at {threads(n)})"
