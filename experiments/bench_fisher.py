"""Benchmark: the per-example Fisher beside the PyTorch transcription, and against its floor.

Side by side (``--no-side-by-side`` skips it): ResNet-18 with the CIFAR stem (32x32x3,
width 64), the Fisher diagonal over 10 codes, ``mj.fisher_diagonal`` against the PyTorch
transcription's loop over the codes (:func:`experiments.torch_reference.fisher_diagonal`,
one backward pass per code, as Algorithm 2 describes), after a check that both give the
same Fisher on the same weights (mnemonic-jax's initial parameters and BatchNorm
statistics loaded into the PyTorch model). The first call runs in a fresh process per
round for both sides (after imports and set-up; mnemonic-jax's includes compiling), later
calls in this process; interleaved rounds, medians, the ratio mnemonic-jax / PyTorch, and
PyTorch at 1 thread and at 2 (``--torch-threads``).

Then, mnemonic-jax alone: the Fisher over 10 codes against one batched forward+backward.
For each model it prints the Fisher's seconds after compilation, its compile seconds, the
compiled program's peak memory (XLA memory analysis: arguments + outputs + temporaries),
and the ratio of Fisher time to one batched forward+backward pass of the mean loss over
the same inputs, the floor for this computation. Both Fisher paths are measured where
they apply: generic ``vmap`` (any apply_fn) and ``factorized`` (the layer taps of
:mod:`mnemonic_jax.layer_taps`: Dense, DenseGeneral, Conv, inference-mode BatchNorm,
LayerNorm and registered layers, which cover the MLP, ResNet-18 and the ViT).

Models (``--models`` picks some, by the names below):

* ``mlp``: the paper's MLP 784-1000-10, 28x28x1;
* ``resnet18_cifar``: ResNet-18 with the CIFAR stem, 32x32x3;
* ``vit_ti``: ViT-Ti (dim 192, depth 12, 3 heads, MLP 768) with 4x4 patches, 32x32x3
  (65 tokens);
* ``vit_fmnist``: the small ViT of ``mnemonic_jax/configs/fashion_mnist_vit.py`` (dim 64,
  depth 4, 4 heads, MLP 128, 7x7 patches), 28x28x1 (17 tokens).

Then, for ``resnet18`` at 224x224x3, it compiles the microbatched Fisher for a growing
number of codes and prints the temporaries XLA plans for each: flat beyond one microbatch.

Usage:
  python -m experiments.bench_fisher [--models mlp,vit_ti] [--skip-224] [--rounds 3] \\
      [--microbatches all,5,1] [--torch-threads 1,2] [--no-side-by-side] \\
      [--machine-note "shared with other jobs"] [--out FILE] [--json FILE]
"""

import argparse
import datetime
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from mnemonic_jax import codes as codes_lib
from mnemonic_jax import fisher, layer_taps
from mnemonic_jax.bundle import inference_apply_fn
from mnemonic_jax.models import create_model

from experiments import torch_reference as tr


MiB = 2**20
SIDE_SHAPE = (32, 32, 3)


def timed(fn, *args, repeats):
  """Median seconds of ``fn(*args)`` after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def compile_stats(fn, *args):
  """(compiled function, compile seconds, peak bytes from XLA's memory analysis)."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  peak = None
  if mem is not None:
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes
            + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
  return compiled, seconds, peak


def setup(model_name, shape, num_codes, **model_kwargs):
  model = create_model(model_name, num_codes, **model_kwargs)
  key = jax.random.key(0)
  codes = codes_lib.generate_codes(key, num_codes, shape)
  variables = model.init(key, codes[:1])
  apply_fn = inference_apply_fn(model, variables.get("batch_stats", {}))
  return apply_fn, variables["params"], codes, jnp.arange(num_codes)


#: Benchmark name -> (registry name, input shape, model attributes).
MODELS = {
    "mlp": ("mlp", (28, 28, 1), {}),
    "resnet18_cifar": ("resnet18_cifar", (32, 32, 3), {}),
    "vit_ti": ("vit_tiny", (32, 32, 3), {"patch_size": 4}),
    "vit_fmnist": ("vit_tiny", (28, 28, 1), {"patch_size": 7, "dim": 64, "depth": 4,
                                              "num_heads": 4, "mlp_dim": 128}),
}


def bench_model(model_name, shape, num_codes, repeats, microbatch_sizes, **model_kwargs):
  """Rows ``(what, microbatch, seconds, compile s, peak bytes, ratio to fwd+bwd)``.

  Args:
    model_name: registry name.
    shape: input shape of one code.
    num_codes: number of codes (= classes).
    repeats: timed calls per row (the median is reported).
    microbatch_sizes: Fisher microbatch sizes to time (None: all codes at once).
    **model_kwargs: the model's attributes.

  Returns:
    The floor's row, then one per Fisher path and microbatch size.
  """
  apply_fn, params, x, y = setup(model_name, shape, num_codes, **model_kwargs)

  def forward_backward(p, x, y):
    return jax.grad(lambda p: jnp.mean(fisher.cross_entropy(apply_fn(p, x), y)))(p)

  base, base_compile, base_peak = compile_stats(forward_backward, params, x, y)
  base_s = timed(base, params, x, y, repeats=repeats)
  rows = [("batched fwd+bwd (floor)", "-", base_s, base_compile, base_peak, 1.0)]
  methods = ["vmap"]
  if layer_taps.covers(apply_fn, params, x):
    methods.insert(0, "factorized")
  for method in methods:
    for mb in microbatch_sizes:
      fn = functools.partial(
          fisher.fisher_diagonal, apply_fn, microbatch_size=mb, method=method)
      compiled, comp_s, peak = compile_stats(lambda p, x, y: fn(p, x, y), params, x, y)
      s = timed(compiled, params, x, y, repeats=repeats)
      rows.append((f"fisher {method}", mb or num_codes, s, comp_s, peak, s / base_s))
  return rows


def bench_memory_growth(num_codes_list, microbatch_size, shape=(224, 224, 3)):
  model = create_model("resnet18", max(num_codes_list))
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))
  stats = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params.get("batch_stats", {}))
  apply_fn = inference_apply_fn(model, stats)  # Params stay abstract: nothing is allocated.
  rows = []
  for method in ("factorized", "vmap"):
    for n in num_codes_list:
      x = jax.ShapeDtypeStruct((n, *shape), jnp.float32)
      y = jax.ShapeDtypeStruct((n,), jnp.int32)
      fn = functools.partial(
          fisher.fisher_diagonal, apply_fn, microbatch_size=microbatch_size, method=method)
      compiled = jax.jit(fn).lower(params["params"], x, y).compile()
      mem = compiled.memory_analysis()
      rows.append((method, n, microbatch_size, mem.temp_size_in_bytes / MiB,
                   mem.argument_size_in_bytes / MiB))
  return rows


def resnet_setup():
  """``(apply_fn, variables, codes, labels)``: ResNet-18 (CIFAR stem), 10 codes, key 0."""
  model = create_model("resnet18_cifar", 10)
  key = jax.random.key(0)
  codes = codes_lib.generate_codes(key, 10, SIDE_SHAPE)
  variables = model.init(key, codes[:1])
  return (inference_apply_fn(model, variables["batch_stats"]), variables, codes,
          jnp.arange(10))


def torch_resnet(variables, threads: int):
  """The PyTorch ResNet-18 holding ``variables`` (params and BatchNorm statistics)."""
  torch = tr.import_torch()
  torch.set_num_threads(threads)
  model = tr.resnet18_cifar(10)
  tr.load_flax_params(model, variables["params"], variables["batch_stats"])
  return model


def fisher_check(apply_fn, variables, codes, labels) -> tuple[float, float]:
  """``(largest |difference|, largest value)`` of the two Fishers on the same weights."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  torch = tr.import_torch()
  ours = fisher.fisher_diagonal(apply_fn, variables["params"], codes, labels)
  model = torch_resnet(variables, 1)
  theirs = tr.fisher_diagonal(model, torch.tensor(np.asarray(codes)), np.asarray(labels))
  model.load_state_dict({**model.state_dict(), **theirs})  # Fisher as a parameter tree.
  theirs = tr.flax_params(model)
  diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), ours, theirs)
  tops = jax.tree.map(lambda a: float(np.max(np.abs(np.asarray(a)))), ours)
  return max(jax.tree.leaves(diffs)), max(jax.tree.leaves(tops))


def child(kind: str, threads: int) -> None:
  """A fresh process's first Fisher call (``jax`` or ``torch``), as JSON on stdout."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from experiments import bench_common as bc  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

  if kind == "jax":
    apply_fn, variables, codes, labels = resnet_setup()
    start = time.perf_counter()
    with CompileClock() as clock:
      jax.block_until_ready(fisher.fisher_diagonal(apply_fn, variables["params"], codes, labels))
    bc.child_result({"seconds": time.perf_counter() - start, "compile": clock.seconds})
  else:  # Weights and codes of its own: no JAX work in this process.
    torch = tr.import_torch()
    torch.set_num_threads(threads)
    model = tr.resnet18_cifar(10)
    x = torch.rand((10, *SIDE_SHAPE), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    tr.fisher_diagonal(model, x, np.arange(10))
    bc.child_result({"seconds": time.perf_counter() - start})


def side_by_side(rounds: int, repeats: int, threads: list[int], ratios) -> list[str]:
  """The check, first calls and later calls against the transcription; report lines."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from experiments import bench_common as bc  # pylint: disable=import-outside-toplevel

  apply_fn, variables, codes, labels = resnet_setup()
  lines = ["## ResNet-18 (CIFAR stem), Fisher over 10 codes, beside the PyTorch "
           "transcription", ""]
  if threads:
    diff, top = fisher_check(apply_fn, variables, codes, labels)
    lines += [f"Check on the same weights: largest absolute difference of the Fisher "
              f"diagonals {diff:.3g}, largest Fisher value {top:.3g} (ratio {diff / top:.2g}).",
              ""]
  compiles = []

  def first(kind, n=1):
    def call():
      result = bc.cold("bench_fisher", kind, ["--threads", str(n)])
      compiles.extend([result["compile"]] if "compile" in result else [])
      return result["seconds"]
    return call

  calls = {"mnemonic-jax first": first("jax")}
  calls.update({f"PyTorch first, {bc.threads(n)}": first("torch", n) for n in threads})
  firsts = bc.interleaved(rounds, calls)
  params = variables["params"]
  jax_call = lambda: bc.timed(lambda: fisher.fisher_diagonal(apply_fn, params, codes, labels),
                              jax.block_until_ready)
  jax_call()  # Compiles.
  calls = {"mnemonic-jax later": jax_call}
  if threads:
    torch = tr.import_torch()
    model, x, y = torch_resnet(variables, 1), torch.tensor(np.asarray(codes)), np.asarray(labels)

    def torch_call(n):
      torch.set_num_threads(n)
      return bc.timed(lambda: tr.fisher_diagonal(model, x, y))

    torch_call(threads[0])  # Warm-up.
    calls.update({f"PyTorch later, {bc.threads(n)}": functools.partial(torch_call, n)
                  for n in threads})
  later = bc.interleaved(repeats, calls)
  for n in threads or [None]:
    ref = None if n is None else bc.median(firsts[f"PyTorch first, {bc.threads(n)}"])
    ratios.add(f"per-example Fisher, ResNet-18 (CIFAR stem), 10 codes, first call, fresh "
               f"process{bc.versus(n)}", ref, bc.median(firsts["mnemonic-jax first"]),
               f"{bc.median(compiles):.2f} s of it compiling")
  for n in threads or [None]:
    ref = None if n is None else bc.median(later[f"PyTorch later, {bc.threads(n)}"])
    ratios.add(f"per-example Fisher, ResNet-18 (CIFAR stem), 10 codes, later calls"
               f"{bc.versus(n)}", ref, bc.median(later["mnemonic-jax later"]), "")
  return lines + [
      f"Medians: first calls over {rounds} round(s) of fresh processes, later calls over "
      f"{repeats} interleaved round(s).", "", *ratios.table(), "",
      "Every measurement (s): " + "; ".join(
          f"{k}: {bc.spread(v)}" for k, v in {**firsts, **later}.items()) + ".", ""]


def main(argv=None) -> int:
  from experiments import bench_common as bc  # pylint: disable=import-outside-toplevel

  parser = argparse.ArgumentParser(prog="experiments.bench_fisher",
                                   formatter_class=bc.HelpFormatter,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=bc.out_path, default=None,
                      help="also write the tables to this Markdown file")
  parser.add_argument("--json", default=None, help="write the ratio rows here (bench_all)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3,
                      help="rounds of fresh processes for the side-by-side first call")
  parser.add_argument("--skip-224", action="store_true", help="skip the 224x224 memory table")
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"comma-separated, from {', '.join(MODELS)} (default: all; "
                           "empty: none)")
  parser.add_argument("--microbatches", default="all,5,1",
                      help="Fisher microbatch sizes of the mnemonic-jax table (all: every code)")
  parser.add_argument("--torch-threads", default="1,2", help="PyTorch thread counts")
  parser.add_argument("--no-side-by-side", action="store_true",
                      help="skip the comparison with the PyTorch transcription")
  parser.add_argument("--machine-note", default="",
                      help="appended to the machine line (e.g. 'shared with other jobs')")
  parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.child, args.threads)
    return 0
  argv = sys.argv[1:] if argv is None else list(argv)
  names = [m for m in args.models.split(",") if m]
  unknown = [m for m in names if m not in MODELS]
  if unknown:
    parser.error(f"unknown models {unknown}; use some of {', '.join(MODELS)}")
  microbatches = [None if m == "all" else int(m) for m in args.microbatches.split(",") if m]
  if not names and args.skip_224 and args.no_side_by_side:  # A report of a header alone.
    bc.refuse("experiments.bench_fisher", "nothing to measure: --models is empty, and "
              "--skip-224 and --no-side-by-side skip the other tables; drop one of them")

  device = jax.devices()[0]
  lines = bc.header("Fisher benchmark", bc.command_line("bench_fisher", argv))
  lines += [f"Devices: {device.device_kind} ({device.platform}), {jax.device_count()} "
            f"device(s); {datetime.date.today()}"
            + (f"; {args.machine_note}" if args.machine_note else "") + ".", ""]
  ratios = bc.Ratios()
  if not args.no_side_by_side:
    threads = ([int(t) for t in args.torch_threads.split(",") if t]
               if bc.torch_available() else [])
    lines += side_by_side(args.rounds, args.repeats, threads, ratios)
  if names:
    lines += ["## mnemonic-jax: Fisher over 10 codes vs one batched forward+backward (median of "
              f"{args.repeats})\n",
              "| model | computation | microbatch | seconds | compile s | peak MiB "
              "| ratio to fwd+bwd |",
              "|---|---|---|---|---|---|---|"]
  for name in names:
    model_name, shape, kwargs = MODELS[name]
    for row in bench_model(model_name, shape, 10, args.repeats, microbatches, **kwargs):
      what, mb, s, comp, peak, ratio = row
      peak_txt = "-" if peak is None else f"{peak / MiB:.1f}"
      lines.append(f"| {name} | {what} | {mb} | {s:.5f} | {comp:.2f} | {peak_txt} | {ratio:.2f} |")
      print(lines[-1], file=sys.stderr, flush=True)
  if not args.skip_224:
    lines += ["", "## resnet18 at 224x224x3: XLA-planned memory vs number of codes\n",
              "| method | codes | microbatch | temporaries MiB | arguments MiB |",
              "|---|---|---|---|---|"]
    for method, n, mb, temp, arg in bench_memory_growth([10, 100, 1000], 10):
      lines.append(f"| {method} | {n} | {mb} | {temp:.1f} | {arg:.1f} |")
      print(lines[-1], file=sys.stderr, flush=True)
  lines += ["", f"Load average at the end: {bc.load_average()}."]
  with bc.staged():  # The table and the ratio rows replaced together, or neither.
    bc.write("\n".join(lines), args.out)
    ratios.write_json(args.json, {"benchmark": "bench_fisher"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
