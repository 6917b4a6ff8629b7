"""Benchmark: repeated library calls run the compiled program, with little overhead.

For the paper's MNIST MLP (784-1000-10, sigmoid) and a width-4 ResNet-18 it prints, per
public entry point, the wall seconds of the first call after ``jax.clear_caches()`` (a
cold start: compilation included, and the part of it JAX spent compiling, measured by
:class:`mnemonic_jax.timing.CompileClock`), the median of later calls (other classes and
lambdas each time; checked to compile nothing), the compiled program's own median run
time (the library's module-level ``jax.jit`` program, called directly with the same
arguments), and their ratio: the Python-side overhead of the library (validation,
report). The forgetting calls are also compared with the PyTorch reference's whole
forget on the MLP, 0.060 s on this machine's CPU (measured by the session that filed
issue #8; not re-run here).

Usage:
  python -m experiments.bench_forget [--repeats 20] [--out experiments/results/bench_forget.md]
"""

import argparse
import functools
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import mnemonic_jax as mj
from experiments.common import emit, median_seconds, out_path
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax import forgetting
from mnemonic_jax.forgetting.moves import algorithm2
from mnemonic_jax.pytrees import as_pytree
from mnemonic_jax.timing import CompileClock

REFERENCE_FORGET_SECONDS = 0.060


def cold(fn: Callable[[], Any]) -> tuple[float, float]:
  """``(wall seconds, compile seconds)`` of ``fn()`` right after ``jax.clear_caches()``."""
  jax.clear_caches()
  start = time.perf_counter()
  with CompileClock() as clock:
    jax.block_until_ready(fn())
  return time.perf_counter() - start, clock.seconds


def warm(make_call: Callable[[int], Callable[[], Any]], repeats: int, what: str) -> float:
  """Median seconds of later calls (see :func:`median_seconds`), checked to compile nothing.

  Raises:
    AssertionError: a later call compiled.
  """
  with CompileClock() as clock:
    seconds = median_seconds(make_call, repeats)
  assert clock.seconds == 0, f"{what}: a later call compiled ({clock.seconds:.2f} s)"
  return seconds


def setup(name: str, shape, **kwargs):
  model = mj.create_model(name, 10, **kwargs)
  codes = mj.generate_codes(jax.random.key(0), 10, shape)
  variables = model.init(jax.random.key(1), codes)
  apply_fn = mj.inference_apply_fn(model, variables.get("batch_stats", {}))
  return apply_fn, variables["params"], codes


def bench(name: str, shape, repeats: int, **kwargs) -> list[dict]:
  apply_fn, params, codes = setup(name, shape, **kwargs)
  rows = []

  def row(entry, first, later, run):
    rows.append({"model": name, "entry": entry, "first": first[0], "compile": first[1],
                 "later": later, "compiled": run, "ratio": later / run})
    print(rows[-1], flush=True)

  # Algorithm 2 with given lambdas: one jitted program (forgetting.moves.algorithm2).
  fixed = lambda c, l1: mj.forget(apply_fn, params, codes, [c], l1, 10.0)[0]
  first = cold(lambda: fixed(0, 1e-3))
  later = warm(lambda i: lambda: fixed(i % 10, 1e-3 * i), repeats, "forget (fixed)")
  request = forgetting.validate_request(apply_fn, params, codes, [0])
  program = functools.partial(
      algorithm2._algorithm2, request.apply_fn, params, request.codes,  # pylint: disable=protected-access
      request.in_forget, request.in_remain, microbatch_size=None, method="auto", mesh=None)
  run = median_seconds(
      lambda i: lambda: program((np.float32(1e-3 * i), np.float32(10.0))), repeats)
  row("forget (fixed lambdas)", first, later, run)

  # The paper's move with the lambda search: several programs from a host loop.
  reports = []

  def auto(i):
    new_params, report = mj.forget(apply_fn, params, codes, [i % 10], move="paper")
    reports.append(report)
    return new_params

  first = cold(lambda: auto(0))
  reports.clear()
  later = warm(lambda i: lambda: auto(i), repeats, "forget (paper)")
  # "compiled" is the time the report gives the move (its programs and its host-side
  # choice, compilation excluded).
  row("forget (paper: the search)", first, later,
      statistics.median(r.seconds for r in reports))

  labels = jnp.arange(10)
  diagonal = lambda: mj.fisher_diagonal(apply_fn, params, codes, labels)
  first = cold(diagonal)
  later = warm(lambda i: diagonal, repeats, "fisher_diagonal")
  weights, offsets = np.full((1, 10), 0.1, np.float32), np.zeros(1, np.float32)
  program = functools.partial(
      fisher_lib._fisher_program, as_pytree(apply_fn), params, codes,  # pylint: disable=protected-access
      labels, weights, offsets, loss_fn=fisher_lib.cross_entropy, microbatch_size=None,
      method="auto", mesh=None)
  run = median_seconds(lambda i: program, repeats)
  row("fisher_diagonal", first, later, run)
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--out", type=out_path, default=None, help="also write a markdown table here")
  args = parser.parse_args(argv)
  rows = bench("mlp", (28, 28, 1), args.repeats)
  rows += bench("resnet18_cifar", (32, 32, 3), max(3, args.repeats // 4), width=4)
  device = (f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores)")
  lines = [
      f"Device: {device}, jax {jax.__version__}. Command: `python -m experiments.bench_forget"
      f" --repeats {args.repeats}`. First call: after `jax.clear_caches()`.", "",
      "| model | entry point | first call (s) | of which compiling (s) | later calls, median "
      "(s) | compiled program alone (s) | later / compiled | later / reference forget "
      "(0.060 s) |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    versus = (f"{r['later'] / REFERENCE_FORGET_SECONDS:.2f}"
              if r["model"] == "mlp" and r["entry"].startswith("forget") else "-")
    lines.append(f"| {r['model']} | {r['entry']} | {r['first']:.3f} | {r['compile']:.3f} | "
                 f"{r['later']:.4f} | {r['compiled']:.4f} | {r['ratio']:.2f} | {versus} |")
  emit(lines, args.out)


if __name__ == "__main__":
  main()
