"""Benchmark: ``mj.forget`` beside the PyTorch transcription; first and later library calls.

Side by side (the paper's MNIST MLP 784-1000-10, sigmoid; Algorithm 2 with fixed lambdas
1e-3 and 10; the same weights on both sides: mnemonic-jax's initial parameters loaded into
the PyTorch MLP of :mod:`experiments.torch_reference`):

* the check: one class forgotten by both; the largest absolute difference between
  mnemonic-jax's forgotten parameters and the transcription's candidate of the same sign
  (float32 rounding expected), and whether both kept the same sign (on a tie of the
  paper's criterion mnemonic-jax looks at the forgotten codes' margin, the transcription
  keeps ``w - alpha eta`` as PAPER.md says the reference does);
* the first call, each side in a fresh process per round (after its imports and set-up;
  mnemonic-jax's includes compiling), interleaved rounds, medians;
* later calls in this process (another class and lambda1 each call, the same on both
  sides), interleaved, medians; PyTorch at 1 thread and at 2 (``--torch-threads``).

Then, mnemonic-jax alone (``--models``: the MLP and a width-4 ResNet-18), per public
entry point: the first call after ``jax.clear_caches()`` (compilation included, and the
part of it JAX spent compiling), the median of later calls (checked to compile nothing),
the compiled program's own median run time and their ratio (the Python-side overhead).

Usage:
  python -m experiments.bench_forget [--repeats 20] [--rounds 3] [--models mlp,resnet18_cifar]
      [--torch-threads 1,2] [--out FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from experiments import bench_common as bc
from experiments import torch_reference as tr

LAMBDAS = (1e-3, 10.0)
SHAPE = (28, 28, 1)


def _jax():
  """``(jax, mnemonic_jax)``, imported on first use (a PyTorch child needs neither)."""
  import jax  # pylint: disable=import-outside-toplevel

  import mnemonic_jax as mj  # pylint: disable=import-outside-toplevel

  return jax, mj


def save_weights(path: str, params: dict, codes) -> None:
  """The MLP's Flax parameters and the codes in one ``.npz`` (keys ``Dense_0/kernel``...)."""
  flat = {f"{layer}/{name}": np.asarray(v) for layer, d in params.items() for name, v in d.items()}
  np.savez(path, codes=np.asarray(codes), **flat)


def load_weights(path: str) -> tuple[dict, np.ndarray]:
  """``(params, codes)`` from :func:`save_weights`."""
  params: dict = {}
  with np.load(path) as f:
    for key in f.files:
      if key != "codes":
        layer, name = key.split("/")
        params.setdefault(layer, {})[name] = f[key]
    return params, f["codes"]


def jax_forget(apply_fn, params, codes, cls: int, lambda1: float):
  """``mj.forget`` with fixed lambdas, awaited; ``(new params, report)``."""
  jax, mj = _jax()
  new, report = mj.forget(apply_fn, params, codes, [cls], lambda1, LAMBDAS[1])
  return jax.block_until_ready(new), report


def mlp_setup():
  """``(apply_fn, params, codes)`` of the MLP: initial weights, codes from key 0."""
  jax, mj = _jax()
  model = mj.create_model("mlp", 10)
  codes = mj.generate_codes(jax.random.key(0), 10, SHAPE)
  params = model.init(jax.random.key(1), codes)["params"]
  return mj.inference_apply_fn(model, {}), params, codes


def torch_setup(params, codes, threads: int):
  """``(model, codes tensor, initial state)`` of the PyTorch MLP holding ``params``."""
  torch = tr.import_torch()
  torch.set_num_threads(threads)
  model = tr.mlp()
  tr.load_flax_params(model, params)
  state = {k: v.clone() for k, v in model.state_dict().items()}
  return model, torch.tensor(np.asarray(codes)), state


def check(apply_fn, params, codes, cls: int = 0) -> dict:
  """mnemonic-jax's forgotten parameters against the transcription's on the same weights."""
  new, report = jax_forget(apply_fn, params, codes, cls, LAMBDAS[0])
  model, codes_t, _ = torch_setup(params, codes, 1)
  info = tr.forget(model, codes_t, [cls], *LAMBDAS, keep_candidates=True)
  jax_sign = report.details.sign
  model.load_state_dict({**model.state_dict(), **info["plus" if jax_sign > 0 else "minus"]})
  same = tr.flax_params(model)
  diff = max(float(np.max(np.abs(np.asarray(new[layer][k]) - same[layer][k])))
             for layer in same for k in same[layer])
  moved = max(float(np.max(np.abs(np.asarray(new[layer][k]) - np.asarray(params[layer][k]))))
              for layer in same for k in same[layer])
  return {"class": cls, "max_abs_diff": diff, "largest_move": moved, "jax_sign": jax_sign,
          "torch_sign": info["sign"], "torch_criterion": info["criterion"],
          "jax_criterion": float(report.after.criterion)}


def child(kind: str, weights: str, threads: int) -> None:
  """A fresh process's first forget call (``jax`` or ``torch``), as JSON."""
  params, codes = load_weights(weights)
  if kind == "jax":
    from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

    _, mj = _jax()
    apply_fn = mj.inference_apply_fn(mj.create_model("mlp", 10), {})
    start = time.perf_counter()
    with CompileClock() as clock:
      jax_forget(apply_fn, params, codes, 0, LAMBDAS[0])
    bc.child_result({"seconds": time.perf_counter() - start, "compile": clock.seconds})
  else:
    model, codes_t, _ = torch_setup(params, codes, threads)
    start = time.perf_counter()
    tr.forget(model, codes_t, [0], *LAMBDAS)
    bc.child_result({"seconds": time.perf_counter() - start})


def side_by_side(args, threads: list[int], ratios: bc.Ratios) -> list[str]:
  """The check, the first calls and the later calls; fills ``ratios``; report lines."""
  apply_fn, params, codes = mlp_setup()
  lines = []
  if threads:
    c = check(apply_fn, params, codes)
    agree = "the same" if c["jax_sign"] == c["torch_sign"] else (
        f"different signs (mnemonic-jax {c['jax_sign']:+d}, the transcription "
        f"{c['torch_sign']:+d}: a tie of the criterion, {c['torch_criterion']})")
    lines += [f"Check on the same weights (class {c['class']}, lambdas {LAMBDAS}): largest "
              f"absolute difference of the forgotten parameters {c['max_abs_diff']:.3g} "
              f"(largest move {c['largest_move']:.3g}); kept candidates: {agree}.", ""]
  with tempfile.TemporaryDirectory(prefix="bench-forget-") as scratch:
    weights = f"{scratch}/weights.npz"
    save_weights(weights, params, codes)
    compiles = []

    def first(kind, n=1):
      def call():
        result = bc.cold("bench_forget", kind, ["--weights", weights, "--threads", str(n)])
        compiles.extend([result["compile"]] if "compile" in result else [])
        return result["seconds"]
      return call

    calls = {"mnemonic-jax first": first("jax")}
    calls.update({f"PyTorch first, {bc.threads(n)}": first("torch", n) for n in threads})
    firsts = bc.interleaved(args.rounds, calls)

  jax_forget(apply_fn, params, codes, 0, LAMBDAS[0])  # Compiled before the later calls.
  counter = iter(range(1, 10 ** 9))
  torch = tr.import_torch() if threads else None
  model, codes_t, state = torch_setup(params, codes, 1) if threads else (None, None, None)

  def jax_call():
    i = next(counter)
    return bc.timed(lambda: jax_forget(apply_fn, params, codes, i % 10, LAMBDAS[0] * (1 + i % 3)))

  def torch_call(n):
    i = next(counter)
    torch.set_num_threads(n)
    model.load_state_dict(state)  # Not timed: every call starts from the same weights.
    return bc.timed(lambda: tr.forget(model, codes_t, [i % 10], LAMBDAS[0] * (1 + i % 3),
                                      LAMBDAS[1]))

  if threads:
    torch_call(threads[0])  # Warm-up.
  calls = {"mnemonic-jax later": jax_call}
  calls.update({f"PyTorch later, {bc.threads(n)}": functools.partial(torch_call, n)
                for n in threads})
  later = bc.interleaved(args.repeats, calls)
  for n in threads or [None]:
    ref = None if n is None else bc.median(firsts[f"PyTorch first, {bc.threads(n)}"])
    ratios.add(f"mj.forget, fixed lambdas, first call, fresh process"
               f"{bc.versus(n)}", ref, bc.median(firsts["mnemonic-jax first"]),
               f"{bc.median(compiles):.2f} s of it compiling")
  for n in threads or [None]:
    ref = None if n is None else bc.median(later[f"PyTorch later, {bc.threads(n)}"])
    ratios.add(f"mj.forget, fixed lambdas, later calls{bc.versus(n)}", ref,
               bc.median(later["mnemonic-jax later"]), "")
  return lines + [
      f"Medians: first calls over {args.rounds} round(s) of fresh processes, later calls "
      f"over {args.repeats} interleaved round(s).", "", *ratios.table(), "",
      "Every measurement (s): " + "; ".join(
          f"{k}: {bc.spread(v)}" for k, v in {**firsts, **later}.items()) + ".", ""]


# ----------------------------------------------------------------------------------------
# mnemonic-jax alone: first call, later calls, the compiled program.


def cold_call(fn: Callable[[], Any]) -> tuple[float, float]:
  """``(wall seconds, compile seconds)`` of ``fn()`` right after ``jax.clear_caches()``."""
  jax, _ = _jax()
  from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

  jax.clear_caches()
  start = time.perf_counter()
  with CompileClock() as clock:
    jax.block_until_ready(fn())
  return time.perf_counter() - start, clock.seconds


def warm(make_call: Callable[[int], Callable[[], Any]], repeats: int, what: str) -> float:
  """Median seconds of later calls, checked to compile nothing.

  Raises:
    AssertionError: a later call compiled.
  """
  from experiments.common import median_seconds  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

  with CompileClock() as clock:
    seconds = median_seconds(make_call, repeats)
  assert clock.seconds == 0, f"{what}: a later call compiled ({clock.seconds:.2f} s)"
  return seconds


def jax_alone(name: str, shape, repeats: int, **kwargs) -> list[dict]:
  """Rows of mnemonic-jax's entry points on one model (see the module docstring)."""
  # pylint: disable=protected-access  (the compiled programs, called directly)
  from experiments.common import median_seconds  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import fisher as fisher_lib  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import forgetting  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.forgetting.moves import algorithm2  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.pytrees import as_pytree  # pylint: disable=import-outside-toplevel

  jax, mj = _jax()
  model = mj.create_model(name, 10, **kwargs)
  codes = mj.generate_codes(jax.random.key(0), 10, shape)
  variables = model.init(jax.random.key(1), codes)
  apply_fn = mj.inference_apply_fn(model, variables.get("batch_stats", {}))
  params = variables["params"]
  rows = []

  def row(entry, first, later, run):
    rows.append({"model": name, "entry": entry, "first": first[0], "compile": first[1],
                 "later": later, "compiled": run, "ratio": later / run})
    print(rows[-1], file=sys.stderr, flush=True)

  fixed = lambda c, l1: mj.forget(apply_fn, params, codes, [c], l1, LAMBDAS[1])[0]
  first = cold_call(lambda: fixed(0, 1e-3))
  later = warm(lambda i: lambda: fixed(i % 10, 1e-3 * i), repeats, "forget (fixed)")
  request = forgetting.validate_request(apply_fn, params, codes, [0])
  scores = functools.partial(
      algorithm2._algorithm2, request.apply_fn, params, request.codes, request.fisher_weights,
      microbatch_size=None, method="auto", mesh=None)

  def algorithm2_programs(lambdas):  # The Fisher, the candidates and their codes' logits.
    return scores(lambdas)

  run = median_seconds(lambda i: lambda: algorithm2_programs(
      (np.float32(1e-3 * i), np.float32(LAMBDAS[1]))), repeats)
  row("forget (fixed lambdas)", first, later, run)

  for move, entry in ((forgetting.DEFAULT_MOVE, f"forget (default: {forgetting.DEFAULT_MOVE})"),
                      ("paper", "forget (paper: the search)")):
    reports = []

    def by_move(i, move=move, reports=reports):
      new_params, report = mj.forget(apply_fn, params, codes, [i % 10], move=move)
      reports.append(report)
      return new_params

    first = cold_call(lambda: by_move(0))
    reports.clear()
    later = warm(lambda i: lambda: by_move(i), repeats, entry)
    # "compiled": the seconds the report gives the move (compilation excluded).
    row(entry, first, later, statistics.median(r.seconds for r in reports))

  labels = np.arange(10)
  diagonal = lambda: mj.fisher_diagonal(apply_fn, params, codes, labels)
  first = cold_call(diagonal)
  later = warm(lambda i: diagonal, repeats, "fisher_diagonal")
  weights, offsets = np.full((1, 10), 0.1, np.float32), np.zeros(1, np.float32)
  program = functools.partial(
      fisher_lib._fisher_program, as_pytree(apply_fn), params, codes,
      labels, weights, offsets, loss_fn=fisher_lib.cross_entropy, microbatch_size=None,
      method="auto", mesh=None)
  row("fisher_diagonal", first, later, median_seconds(lambda i: program, repeats))
  return rows


def kernel_cost_lines() -> list[str]:
  """What a fused kernel costs XLA to compile here, and how many the fixed-lambda program
  has: programs of 1, 8 and 32 independent small elementwise kernels, compiled after
  ``jax.clear_caches()``, beside Algorithm 2's program on the paper's MLP."""
  # pylint: disable=protected-access  (the compiled program, inspected)
  from mnemonic_jax import forgetting  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.forgetting.moves import algorithm2  # pylint: disable=import-outside-toplevel

  jax, mj = _jax()

  def compile_seconds(lowered) -> tuple[float, int]:
    start = time.perf_counter()
    compiled = lowered.compile()
    return time.perf_counter() - start, compiled.as_text().count(" fusion(")

  costs = []
  for count in (1, 8, 32):
    jax.clear_caches()
    xs = [np.ones(1000 + i, np.float32) for i in range(count)]
    costs.append((count, *compile_seconds(jax.jit(lambda xs: [x * 2 + 1 for x in xs]).lower(xs))))
  model = mj.create_model("mlp", 10)
  codes = mj.generate_codes(jax.random.key(0), 10, SHAPE)
  params = model.init(jax.random.key(1), codes)["params"]
  request = forgetting.validate_request(mj.inference_apply_fn(model, {}), params, codes, [0])
  jax.clear_caches()
  seconds, kernels = compile_seconds(algorithm2._algorithm2.lower(
      request.apply_fn, params, request.codes, request.fisher_weights,
      (np.float32(LAMBDAS[0]), np.float32(LAMBDAS[1])), microbatch_size=None, method="auto",
      mesh=None))
  return ["## What a kernel costs to compile", "",
          "Programs of independent elementwise kernels (`x * 2 + 1` on ~1000 floats each), "
          "compiled after `jax.clear_caches()`: " + "; ".join(
              f"{n} kernel(s) {s:.3f} s" for n, s, _ in costs) + ". Algorithm 2's program on "
          f"the paper's MLP (fixed lambdas): {kernels} fused kernels, {seconds:.3f} s "
          f"({1e3 * seconds / kernels:.1f} ms a kernel).", ""]


MODELS = {"mlp": (SHAPE, {}), "resnet18_cifar": ((32, 32, 3), {"width": 4})}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="experiments.bench_forget",
                                   formatter_class=bc.HelpFormatter,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=20, help="later calls (interleaved)")
  parser.add_argument("--rounds", type=int, default=3, help="rounds of fresh processes")
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"mnemonic-jax alone on these, from {', '.join(MODELS)} "
                           "(empty: none)")
  parser.add_argument("--torch-threads", default="1,2", help="PyTorch thread counts")
  parser.add_argument("--out", type=bc.out_path, default=None, help="also write the report")
  parser.add_argument("--json", default=None, help="write the ratio rows here (bench_all)")
  parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--weights", help=argparse.SUPPRESS)
  parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.child, args.weights, args.threads)
    return 0
  argv = sys.argv[1:] if argv is None else list(argv)
  unknown = [m for m in args.models.split(",") if m and m not in MODELS]
  if unknown:
    parser.error(f"unknown models {unknown}; use some of {', '.join(MODELS)}")
  lines = bc.header("mj.forget beside the PyTorch transcription",
                    bc.command_line("bench_forget", argv))
  threads = ([int(t) for t in args.torch_threads.split(",") if t]
             if bc.torch_available() else [])
  ratios = bc.Ratios()
  lines += side_by_side(args, threads, ratios)
  rows = []
  for name in filter(None, args.models.split(",")):
    shape, kwargs = MODELS[name]
    rows += jax_alone(name, shape, args.repeats if name == "mlp" else max(3, args.repeats // 4),
                      **kwargs)
  if rows:
    lines += ["## mnemonic-jax alone", "",
              "First call: after `jax.clear_caches()`, in this process. ResNet-18: width 4.", "",
              "| model | entry point | first call (s) | of which compiling (s) | later calls, "
              "median (s) | compiled program alone (s) | later / compiled |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['entry']} | {r['first']:.3f} | {r['compile']:.3f} | "
              f"{r['later']:.4f} | {r['compiled']:.4f} | {r['ratio']:.2f} |" for r in rows]
  if "mlp" in args.models.split(","):
    lines += ["", *kernel_cost_lines()]
  lines += ["", f"Load average at the end: {bc.load_average()}."]
  with bc.staged():  # The table and the ratio rows replaced together, or neither.
    bc.write("\n".join(lines), args.out)
    ratios.write_json(args.json, {"benchmark": "bench_forget"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
