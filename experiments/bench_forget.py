"""Benchmark: repeated library calls run the compiled program, with little overhead.

For the paper's MNIST MLP (784-1000-10, sigmoid) and a width-4 ResNet-18 it prints, per
public entry point, the wall seconds of the first call (compilation included), the median
of later calls (other classes and lambdas each time), the compiled program's own median
run time (the same jitted program, called directly), and their ratio: the Python-side
overhead of the library (validation, cache lookup, report). The forgetting calls are also
compared with the PyTorch reference's whole forget on the MLP, 0.060 s on this machine's
CPU (measured by the session that filed issue #8; not re-run here).

Usage:
  python -m experiments.bench_forget [--repeats 20] [--out experiments/results/bench_forget.md]
"""

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import mnemonic_jax as mj
from experiments.common import emit, median_seconds
from mnemonic_jax import _jit

REFERENCE_FORGET_SECONDS = 0.060


def wall(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def compiled_run(key_prefix: str, *args, repeats: int) -> float:
  """Median seconds of the cached jitted program ``key_prefix`` called directly."""
  (program,) = [v for k, v in _jit._cache.items() if k[0] == key_prefix]
  return median_seconds(lambda i: lambda: program(*args), repeats)


def setup(name: str, shape, **kwargs):
  model = mj.create_model(name, 10, **kwargs)
  codes = mj.generate_codes(jax.random.key(0), 10, shape)
  variables = model.init(jax.random.key(1), codes)
  apply_fn = mj.inference_apply_fn(model, variables.get("batch_stats", {}))
  return apply_fn, variables["params"], codes


def bench(name: str, shape, repeats: int, **kwargs) -> list[dict]:
  apply_fn, params, codes = setup(name, shape, **kwargs)
  _jit.clear_cache()
  static, arrays = _jit.split_callable(apply_fn)
  masks = mj.fisher.class_masks([0], [], 10)
  rows = []

  def row(entry, first, later, run):
    rows.append({"model": name, "entry": entry, "first": first, "later": later,
                 "compiled": run, "ratio": later / run})
    print(rows[-1], flush=True)

  first = wall(lambda: mj.forget(apply_fn, params, codes, [0], 1e-3, 10.0)[0])
  later = median_seconds(
      lambda i: lambda: mj.forget(apply_fn, params, codes, [i % 10], 1e-3 * i, 10.0)[0], repeats)
  run = compiled_run("forget", arrays, params, codes, *masks,
                     (jnp.float32(1e-3), jnp.float32(10.0)), repeats=repeats)
  row("forget (fixed lambdas)", first, later, run)

  first = wall(lambda: mj.forget(apply_fn, params, codes, [0], move="paper")[0])
  reports = []

  def auto(i):
    new_params, report = mj.forget(apply_fn, params, codes, [i % 10], move="paper")
    reports.append(report)
    return new_params

  with _jit.CompileClock() as clock:
    later = median_seconds(lambda i: lambda: auto(i), repeats)
  assert clock.seconds == 0, "the search recompiled"
  # The search runs several compiled programs from a host loop: "compiled" is the time
  # the report gives it (its programs and its host-side choice, compilation excluded).
  row("forget (auto: the search)", first, later,
      statistics.median(r.seconds for r in reports))

  labels = jnp.arange(10)
  first = wall(lambda: mj.fisher_diagonal(apply_fn, params, codes, labels))
  later = median_seconds(lambda i: lambda: mj.fisher_diagonal(apply_fn, params, codes, labels),
                      repeats)
  weights, offsets = jnp.full((1, 10), 0.1, jnp.float32), jnp.zeros(1, jnp.float32)
  run = compiled_run("fisher", arrays, params, codes, labels, weights, offsets,
                     repeats=repeats)
  row("fisher_diagonal", first, later, run)
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--out", default=None, help="also write a markdown table here")
  args = parser.parse_args(argv)
  rows = bench("mlp", (28, 28, 1), args.repeats)
  rows += bench("resnet18_cifar", (32, 32, 3), max(3, args.repeats // 4), width=4)
  device = (f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores)")
  lines = [
      f"Device: {device}, jax {jax.__version__}. Command: `python -m experiments.bench_forget"
      f" --repeats {args.repeats}`.", "",
      "| model | entry point | first call (s) | later calls, median (s) | compiled program "
      "alone (s) | later / compiled | later / reference forget (0.060 s) |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    versus = (f"{r['later'] / REFERENCE_FORGET_SECONDS:.2f}"
              if r["model"] == "mlp" and r["entry"].startswith("forget") else "-")
    lines.append(f"| {r['model']} | {r['entry']} | {r['first']:.3f} | {r['later']:.4f} | "
                 f"{r['compiled']:.4f} | {r['ratio']:.2f} | {versus} |")
  emit(lines, args.out)


if __name__ == "__main__":
  main()
