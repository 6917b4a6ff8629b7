"""Benchmark: the data-free search against the fixed-lambda path, at many classes.

For an MLP (784-1000-C, sigmoid, untrained: only shapes matter for time) and C codes, it
forgets class 0 with fixed lambdas and with the search, in both strategies of
:func:`mnemonic_jax.lambda_search.select_lambdas` (``"full"``: every candidate on every
code; ``"pruned"``: the same choice from fewer candidates and codes), and prints each
one's seconds after compilation (median of ``--repeats`` calls, other classes each time)
and its ratio to the fixed path, plus the share of candidates the pruned search scored.
Both strategies must choose the same candidate; the benchmark checks it.

Usage:
  python -m experiments.bench_search [--classes 10,100,1000] [--repeats 2] [--out FILE]
"""

import argparse
import os
import platform

import jax
import numpy as np

import mnemonic_jax as mj
from experiments.bench_common import emit, median_seconds
from mnemonic_jax import lambda_search


def seconds(fn, repeats: int) -> float:
  fn(0)  # Compiles.
  return median_seconds(lambda i: lambda: fn(i), repeats)


def bench(num_classes: int, repeats: int) -> dict:
  model = mj.create_model("mlp", num_classes)
  codes = mj.generate_codes(jax.random.key(0), num_classes, (28, 28, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  row = {"classes": num_classes}
  row["fixed"] = seconds(lambda i: mj.forget(apply_fn, params, codes, [i], 1e-3, 10.0)[0],
                         repeats)
  results = {}
  for strategy in lambda_search.STRATEGIES:
    def search(i, strategy=strategy):
      results[strategy, i] = lambda_search.select_lambdas(
          apply_fn, params, codes, [i], strategy=strategy)
      return results[strategy, i].eta
    row[strategy] = seconds(search, repeats)
  for i in range(repeats + 1):
    full, pruned = results["full", i], results["pruned", i]
    assert (full.lambda1, full.lambda2, full.sign) == (pruned.lambda1, pruned.lambda2,
                                                       pruned.sign), (num_classes, i)
  row["scored"] = float(np.mean([np.isfinite(results["pruned", i].grid.forget_margin).mean()
                                 for i in range(repeats + 1)]))
  print(row, flush=True)
  return row


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--classes", default="10,100,1000")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  rows = [bench(int(c), args.repeats) for c in args.classes.split(",")]
  lines = [
      f"Device: {jax.devices()[0].device_kind} ({platform.machine()}, {os.cpu_count()} cores), "
      f"jax {jax.__version__}. "
      f"Command: `python -m experiments.bench_search --classes {args.classes} --repeats "
      f"{args.repeats}`.", "",
      "| classes | fixed (s) | search, full (s) | full / fixed | search, pruned (s) | "
      "pruned / fixed | candidates scored (pruned) |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['classes']} | {r['fixed']:.3f} | {r['full']:.2f} | "
                 f"{r['full'] / r['fixed']:.0f} | {r['pruned']:.2f} | "
                 f"{r['pruned'] / r['fixed']:.0f} | {100 * r['scored']:.0f}% |")
  emit(lines, args.out)


if __name__ == "__main__":
  main()
