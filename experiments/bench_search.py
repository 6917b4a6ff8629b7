"""Benchmark: the data-free search against the fixed-lambda path, at many classes.

For an MLP (784-1000-C, sigmoid, untrained: only shapes matter for time) and C codes, it
forgets class 0 with fixed lambdas and with the search, in both strategies of
:func:`mnemonic_jax.lambda_search.select_lambdas` (``"full"``: every candidate on every
code; ``"pruned"``: the same choice from fewer candidates and codes), and prints each
one's seconds after compilation (median of ``--repeats`` calls, other classes each time)
and its ratio to the fixed path, plus the share of candidates the pruned search scored
on the forgotten codes and the share it also scored on remaining codes. Both strategies
must choose the same candidate; the benchmark checks it (``--no-full`` skips the full
grid, which takes minutes at 1000 classes). ``--chunk`` sets the pruned search's
candidates vectorised at once (default: the library's, 1 on a CPU).

Memory: the fixed path holds params, the two Fishers and eta (about 4x params) plus the
activations of the C codes. The pruned search holds the same, plus ``chunk`` candidate
copies of params (one on a CPU) and the activations of ``chunk`` x (forgotten codes +
64) codes, plus the activations of the C codes once per verification, and host arrays of
a few floats per candidate and tensor: bounded by the model and C, not by the grid. The
full strategy holds ``chunk`` copies (at most 256 MiB by default) and the activations of
``chunk`` x C codes.

Usage:
  python -m experiments.bench_search [--classes 10,100,1000] [--repeats 2] [--no-full]
      [--chunk N] [--out FILE]
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


def bench(num_classes: int, repeats: int, full: bool = True, chunk: int | None = None
          ) -> dict:
  model = mj.create_model("mlp", num_classes)
  codes = mj.generate_codes(jax.random.key(0), num_classes, (28, 28, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  row = {"classes": num_classes}
  row["fixed"] = seconds(lambda i: mj.forget(apply_fn, params, codes, [i], 1e-3, 10.0)[0],
                         repeats)
  results = {}
  for strategy in lambda_search.STRATEGIES if full else ("pruned",):
    def search(i, strategy=strategy):
      results[strategy, i] = lambda_search.select_lambdas(
          apply_fn, params, codes, [i], strategy=strategy,
          chunk=chunk if strategy == "pruned" else None)
      return results[strategy, i].eta
    row[strategy] = seconds(search, repeats)
  for i in range(repeats + 1):
    pruned = results["pruned", i]
    if full:
      want = results["full", i]
      assert (want.lambda1, want.lambda2, want.sign) == (pruned.lambda1, pruned.lambda2,
                                                         pruned.sign), (num_classes, i)
  grids = [results["pruned", i].grid for i in range(repeats + 1)]
  row["scored"] = float(np.mean([np.isfinite(g.forget_margin).mean() for g in grids]))
  row["remain"] = float(np.mean([np.isfinite(g.remain_margin).mean() for g in grids]))
  row["met"] = sum(results["pruned", i].met for i in range(repeats + 1))
  print(row, flush=True)
  return row


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--classes", default="10,100,1000")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--no-full", action="store_true",
                      help="skip the full grid (and the check that it chooses the same)")
  parser.add_argument("--chunk", type=int, default=None,
                      help="candidates the pruned search vectorises at once")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  full = not args.no_full
  rows = [bench(int(c), args.repeats, full, args.chunk) for c in args.classes.split(",")]
  flags = (" --no-full" if not full else "") + (
      f" --chunk {args.chunk}" if args.chunk else "")
  lines = [
      f"Device: {jax.devices()[0].device_kind} ({platform.machine()}, {os.cpu_count()} cores), "
      f"jax {jax.__version__}. "
      f"Command: `python -m experiments.bench_search --classes {args.classes} --repeats "
      f"{args.repeats}{flags}`.", "",
      "| classes | fixed (s) | search, full (s) | full / fixed | search, pruned (s) | "
      "pruned / fixed | candidates scored (pruned): forgotten codes / also remaining | met |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    full_cells = (f"{r['full']:.2f} | {r['full'] / r['fixed']:.0f}" if full else "- | -")
    lines.append(f"| {r['classes']} | {r['fixed']:.3f} | {full_cells} | {r['pruned']:.2f} | "
                 f"{r['pruned'] / r['fixed']:.1f} | {100 * r['scored']:.0f}% / "
                 f"{100 * r['remain']:.0f}% | {r['met']}/{args.repeats + 1} |")
  emit(lines, args.out)


if __name__ == "__main__":
  main()
