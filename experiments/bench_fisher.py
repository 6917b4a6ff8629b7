"""Benchmark: Fisher diagonal over 10 mnemonic codes against one batched forward+backward.

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
  python -m experiments.bench_fisher [--models mlp,vit_ti] [--skip-224] \\
      [--machine-note "shared with other jobs"] [--out experiments/results/bench_fisher.md]
"""

import argparse
import datetime
import functools
import os
import platform
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from mnemonic_jax import codes as codes_lib
from mnemonic_jax import fisher, layer_taps
from mnemonic_jax.bundle import inference_apply_fn
from mnemonic_jax.models import create_model

from experiments.common import out_path

MiB = 2**20


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


def without_out(argv: list[str]) -> list[str]:
  """The command-line arguments less ``--out FILE`` / ``--out=FILE`` (for the results' header)."""
  kept, skip = [], False
  for arg in argv:
    if skip:
      skip = False
    elif arg == "--out":
      skip = True
    elif not arg.startswith("--out="):
      kept.append(arg)
  return kept


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=out_path, default=None,
                      help="also write the tables to this Markdown file")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip-224", action="store_true", help="skip the 224x224 memory table")
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"comma-separated, from {', '.join(MODELS)} (default: all)")
  parser.add_argument("--machine-note", default="",
                      help="appended to the machine line (e.g. 'shared with other jobs')")
  args = parser.parse_args()
  names = [m for m in args.models.split(",") if m]
  unknown = [m for m in names if m not in MODELS]
  if unknown:
    parser.error(f"unknown models {unknown}; use some of {', '.join(MODELS)}")

  device = jax.devices()[0]
  machine = (f"{device.device_kind} ({device.platform}), {jax.device_count()} device(s); "
             f"host {platform.machine()} with {os.cpu_count()} cores"
             + (f" ({args.machine_note})" if args.machine_note else ""))
  command = " ".join(["python -m experiments.bench_fisher",
                      *map(shlex.quote, without_out(sys.argv[1:]))])
  lines = ["# Fisher benchmark\n",
           f"Machine: {machine}; jax {jax.__version__}; {datetime.date.today()}.",
           f"Command: `{command.strip()}`\n",
           "## Fisher over 10 codes vs one batched forward+backward (median of "
           f"{args.repeats})\n",
           "| model | computation | microbatch | seconds | compile s | peak MiB "
           "| ratio to fwd+bwd |",
           "|---|---|---|---|---|---|---|"]
  for name in names:
    model_name, shape, kwargs = MODELS[name]
    for row in bench_model(model_name, shape, 10, args.repeats, [None, 5, 1], **kwargs):
      what, mb, s, comp, peak, ratio = row
      peak_txt = "-" if peak is None else f"{peak / MiB:.1f}"
      lines.append(f"| {name} | {what} | {mb} | {s:.5f} | {comp:.2f} | {peak_txt} | {ratio:.2f} |")
      print(lines[-1], flush=True)
  if not args.skip_224:
    lines += ["", "## resnet18 at 224x224x3: XLA-planned memory vs number of codes\n",
              "| method | codes | microbatch | temporaries MiB | arguments MiB |",
              "|---|---|---|---|---|"]
    for method, n, mb, temp, arg in bench_memory_growth([10, 100, 1000], 10):
      lines.append(f"| {method} | {n} | {mb} | {temp:.1f} | {arg:.1f} |")
      print(lines[-1], flush=True)
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
