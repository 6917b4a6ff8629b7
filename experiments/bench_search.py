"""Benchmark: the data-free search against the fixed-lambda path, at many classes.

For an MLP (784-1000-C, sigmoid, untrained: only shapes matter for time) and C codes, it
forgets class 0 with fixed lambdas and with the search, in both strategies of
:func:`mnemonic_jax.forgetting.moves.paper_search.select_lambdas` (``"full"``: every
candidate on every code; ``"pruned"``: the same choice from fewer candidates and codes;
and the not exact ``"boundary"``), and prints each one's seconds after compilation (median
of ``--repeats`` calls, other classes each time) and its ratio to the fixed path, plus the
share of candidates the pruned search scored on the forgotten codes and the share it also
scored on remaining codes. Both strategies must choose the same candidate; the benchmark
checks it (``--no-full`` skips the full grid, which takes minutes at 1000 classes).
``--chunk`` sets the pruned search's candidates vectorised at once (default: the
library's, 1 on a CPU). ``--train-steps N`` first fits the MLP to its codes (N full-batch
Adam steps; 60 get every code right at 1000 classes), so that the codes have margins as in
a trained model and the choice sits where it does there (an untrained model gets most
codes wrong, and its choice sits elsewhere among the candidates).

Memory: the fixed path holds params, the two Fishers and eta (about 4x params) plus the
activations of the C codes. The pruned search holds the same, plus ``chunk`` candidate
copies of params (one on a CPU) and the activations of ``chunk`` x (forgotten codes +
64) codes, plus the activations of the C codes once per verification, and host arrays of
a few floats per candidate and tensor: bounded by the model and C, not by the grid. The
full strategy holds ``chunk`` copies (at most 256 MiB by default) and the activations of
``chunk`` x C codes.

With ``--bundles B1 B2 ...`` it instead measures, on trained models, what a non-exact
search would rely on (the full grid of every class of every bundle, default rule): how
often the forgotten-codes test ("margin <= -target") fails to be monotone (met at some
``(lambda1, lambda2)`` and not at the next larger ``lambda1`` or ``lambda2``, same sign)
and how often the remaining-codes test fails to be monotone the other way; whether the
``"boundary"`` strategy chooses what the full grid chooses; where the choice sits among
the candidates' sizes; and the share of candidates the pruned and boundary searches
scored.

Usage:
  python -m experiments.bench_search [--classes 10,100,1000] [--repeats 2] [--no-full]
      [--chunk N] [--train-steps N] [--out FILE]
  python -m experiments.bench_search --bundles DIR [DIR ...] [--out FILE]
"""

import argparse
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mnemonic_jax as mj
from experiments import bench_common as bc
from experiments.common import median_seconds
from mnemonic_jax.forgetting import DEFAULT_RULE
from mnemonic_jax.forgetting.moves import paper_search


def seconds(fn, repeats: int) -> float:
  fn(0)  # Compiles.
  return median_seconds(lambda i: lambda: fn(i), repeats)


def fit_codes(apply_fn, params, codes, steps: int):
  """``params`` after ``steps`` full-batch Adam steps (lr 1e-3) on the codes alone."""
  labels = jnp.arange(codes.shape[0])
  opt = optax.adam(1e-3)

  @jax.jit
  def step(params, state):
    loss = lambda p: jnp.mean(mj.cross_entropy(apply_fn(p, codes), labels))
    updates, state = opt.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return params


def bench(num_classes: int, repeats: int, full: bool = True, chunk: int | None = None,
          train_steps: int = 0) -> dict:
  model = mj.create_model("mlp", num_classes)
  codes = mj.generate_codes(jax.random.key(0), num_classes, (28, 28, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  params = fit_codes(apply_fn, params, codes, train_steps)
  right = float(jnp.mean(jnp.argmax(apply_fn(params, codes), -1) == jnp.arange(num_classes)))
  row = {"classes": num_classes, "right": right}
  row["fixed"] = seconds(lambda i: mj.forget(apply_fn, params, codes, [i], 1e-3, 10.0)[0],
                         repeats)
  results = {}
  for strategy in ("pruned", "boundary") + (("full",) if full else ()):
    def search(i, strategy=strategy):
      results[strategy, i] = paper_search.select_lambdas(
          apply_fn, params, codes, [i], strategy=strategy,
          chunk=None if strategy == "full" else chunk)
      return results[strategy, i].eta
    row[strategy] = seconds(search, repeats)
  for i in range(repeats + 1):
    pruned = results["pruned", i]
    if full:
      want = results["full", i]
      assert (want.lambda1, want.lambda2, want.sign) == (pruned.lambda1, pruned.lambda2,
                                                         pruned.sign), (num_classes, i)
  row["boundary_same"] = sum(results["boundary", i].index == results["pruned", i].index
                             for i in range(repeats + 1))
  row["boundary_scored"] = float(np.mean([
      np.isfinite(results["boundary", i].grid.forget_margin).mean() for i in range(repeats + 1)]))
  grids = [results["pruned", i].grid for i in range(repeats + 1)]
  row["scored"] = float(np.mean([np.isfinite(g.forget_margin).mean() for g in grids]))
  row["remain"] = float(np.mean([np.isfinite(g.remain_margin).mean() for g in grids]))
  row["met"] = sum(results["pruned", i].met for i in range(repeats + 1))
  row["percentile"] = float(np.mean([
      np.mean(g.size < g.size[results["pruned", i].index]) for i, g in enumerate(grids)]))
  print(row, file=sys.stderr, flush=True)  # Progress: the report is on stdout.
  return row


def monotone(paths) -> list[str]:
  """The ``--bundles`` measurements (see the module docstring), as markdown lines."""
  from mnemonic_jax import checkpointing  # Only this mode needs it.
  rule = DEFAULT_RULE
  shape = (len(paper_search.LAMBDA1_GRID), len(paper_search.LAMBDA2_GRID), 2)
  lines = ["| bundle | classes | met | forgotten test not monotone (pairs) | remaining test "
           "not monotone (pairs) | boundary = full grid | choice's size percentile "
           "(mean) | scored by pruned: forgotten / also remaining (mean) | scored by "
           "boundary (mean) |", "|---|---|---|---|---|---|---|---|---|"]
  for path in paths:
    bundle = checkpointing.load_bundle(path)
    apply_fn = bundle.apply_fn()
    n = bundle.codes.shape[0]
    stats = dict(met=0, f=0, k=0, pairs=0, same=0, pct=[], scored=[], remain=[], fast=[])
    for c in range(n):
      full = paper_search.select_lambdas(apply_fn, bundle.params, bundle.codes, [c],
                                          rule=rule, strategy="full")
      pruned = paper_search.select_lambdas(apply_fn, bundle.params, bundle.codes, [c],
                                            rule=rule)
      assert pruned.index == full.index, (path, c)
      g = full.grid
      forgets = (g.forget_margin <= -rule.margin).reshape(shape)
      guard = rule.guard * float(g.before.remain_margin)
      keeps = ((g.remain_accuracy >= float(g.before.remain_accuracy) - 1e-6)
               & ((g.remain_margin >= guard) | (float(g.before.remain_margin) <= 0))
               & np.isfinite(g.remain_margin)).reshape(shape)
      stats["f"] += int(np.sum(forgets[:-1] & ~forgets[1:])
                        + np.sum(forgets[:, :-1] & ~forgets[:, 1:]))
      stats["k"] += int(np.sum(~keeps[:-1] & keeps[1:]) + np.sum(~keeps[:, :-1] & keeps[:, 1:]))
      stats["pairs"] += forgets[:-1].size + forgets[:, :-1].size
      fast = paper_search.select_lambdas(apply_fn, bundle.params, bundle.codes, [c],
                                          rule=rule, strategy="boundary")
      stats["same"] += fast.index == full.index
      stats["fast"].append(100 * np.isfinite(fast.grid.forget_margin).mean())
      stats["met"] += bool(full.met)
      stats["pct"].append(100 * np.mean(g.size < g.size[full.index]))
      stats["scored"].append(100 * np.isfinite(pruned.grid.forget_margin).mean())
      stats["remain"].append(100 * np.isfinite(pruned.grid.remain_margin).mean())
    lines.append(
        f"| {path} | {n} | {stats['met']}/{n} | {stats['f']} of {stats['pairs']} | "
        f"{stats['k']} of {stats['pairs']} | {stats['same']}/{n} | {np.mean(stats['pct']):.0f} | "
        f"{np.mean(stats['scored']):.0f}% / {np.mean(stats['remain']):.0f}% | "
        f"{np.mean(stats['fast']):.0f}% |")
    print(lines[-1], file=sys.stderr, flush=True)
  return lines


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="experiments.bench_search",
                                   description=__doc__.splitlines()[0],
                                   formatter_class=bc.HelpFormatter)
  parser.add_argument("--classes", default="10,100,1000",
                      help="class counts of the synthetic MLPs, comma-separated (each at "
                           "least 2)")
  parser.add_argument("--repeats", type=int, default=2, help="timed repeats of each search")
  parser.add_argument("--no-full", action="store_true",
                      help="skip the full grid (and the check that it chooses the same)")
  parser.add_argument("--chunk", type=int, default=None,
                      help="candidates the pruned search vectorises at once")
  parser.add_argument("--train-steps", type=int, default=0,
                      help="fit the MLP to its codes first (full-batch Adam steps)")
  parser.add_argument("--bundles", nargs="+", default=None,
                      help="measure monotonicity on these trained bundles instead")
  parser.add_argument("--out", type=bc.out_path, default=None)
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  command = bc.command_line("bench_search", argv)
  if args.bundles:
    bc.write("\n".join([f"Command: `{command}`.", ""] + monotone(args.bundles)), args.out)
    return
  parts = [c.strip() for c in args.classes.split(",") if c.strip()]
  if not parts or not all(c.isascii() and c.isdigit() and int(c) >= 2 for c in parts):
    bc.refuse("experiments.bench_search", f"--classes {args.classes!r}: give class counts "
              "of at least 2, comma-separated (e.g. 10,100)")
  full = not args.no_full
  rows = [bench(int(c), args.repeats, full, args.chunk, args.train_steps) for c in parts]
  lines = [
      f"Device: {jax.devices()[0].device_kind} ({platform.machine()}, {os.cpu_count()} cores), "
      f"jax {jax.__version__}. "
      f"Command: `{command}`.", "",
      "| classes | codes right | fixed (s) | search, full (s) | full / fixed | "
      "search, pruned (s) | "
      "pruned / fixed | candidates scored (pruned): forgotten codes / also remaining | met | "
      "search, boundary (s) | boundary / fixed | scored (boundary) | boundary = pruned "
      "| choice's size percentile |", "|" + "---|" * 14]
  for r in rows:
    full_cells = (f"{r['full']:.2f} | {r['full'] / r['fixed']:.0f}" if full else "- | -")
    lines.append(f"| {r['classes']} | {100 * r['right']:.0f}% | {r['fixed']:.3f} | "
                 f"{full_cells} | {r['pruned']:.2f} | "
                 f"{r['pruned'] / r['fixed']:.1f} | {100 * r['scored']:.0f}% / "
                 f"{100 * r['remain']:.0f}% | {r['met']}/{args.repeats + 1} | "
                 f"{r['boundary']:.2f} | {r['boundary'] / r['fixed']:.1f} | "
                 f"{100 * r['boundary_scored']:.0f}% | {r['boundary_same']}/{args.repeats + 1} | "
                 f"{100 * r['percentile']:.0f} |")
  bc.write("\n".join(lines), args.out)


if __name__ == "__main__":
  main()
