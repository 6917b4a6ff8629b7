"""Benchmark: training at the matmul roofline, the progress bar's cost, compiling once.

For the paper's MNIST MLP (784-1000-10, sigmoid; Fashion-MNIST's 60,000 training images,
or random uint8 images of that shape with ``--data random``) it measures, in one process:

* this CPU's float32 matmul rate (2048 x 2048 products, median of ``--repeats``);
* a steady training epoch (after a warm-up epoch), progress bar on and off, interleaved
  rounds, medians: the epoch's rate counting only the matmuls a step needs (forward
  ``2 B (784*1000 + 1000*10)``, weight gradients the same, the input gradient of the
  second layer only ``2 B 1000*10``: 3.196 MFLOP per example) divided by the matmul rate;
  and the bar's cost (on / off - 1);
* the first ``fit`` call's seconds JAX spends compiling (after ``jax.clear_caches()``),
  the train step's own compilation apart, and a second ``fit``'s (0 when nothing compiles).

Every ratio divides two figures measured in this run; nothing comes from another run.

Usage:
  python -m experiments.bench_train [--data fashion_mnist|random] [--rounds 3]
      [--out experiments/results/bench_train.md]
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import mnemonic_jax as mj
from experiments.common import emit, machine_line, out_path
from mnemonic_jax import training
from mnemonic_jax.timing import CompileClock

#: Matmul FLOP one example needs in a step of the 784-1000-10 MLP (see the docstring).
FLOP_PER_EXAMPLE = 2 * (784 * 1000 + 1000 * 10) * 2 + 2 * 1000 * 10


def matmul_rate(repeats: int, n: int = 2048) -> float:
  """Median float32 FLOP/s of an ``n x n`` matmul, jitted (compiled before timing)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / statistics.median(times)


def load(kind: str, seed: int = 0):
  if kind == "random":
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8),
            rng.integers(0, 10, 60000), (0.5,), (0.5,))
  train = mj.data.load_dataset("fashion_mnist", "train")
  return train.images, train.labels, train.info.mean, train.info.std


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="experiments.bench_train", description=__doc__.split(
      "\n\n")[0])
  parser.add_argument("--data", choices=("fashion_mnist", "random"), default="fashion_mnist")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (on, off)")
  parser.add_argument("--repeats", type=int, default=20, help="matmul repeats")
  parser.add_argument("--out", type=out_path, default=None, help="also write the table here")
  args = parser.parse_args(argv)
  images, labels, mean, std = load(args.data)
  codes = mj.generate_codes(jax.random.key(0), 10, images.shape[1:])
  config = mj.FitConfig(epochs=1, t_mix=0.1)
  model = mj.create_model("mlp", 10)

  def fit(progress: bool, state=None, epochs: int = 1):
    cfg = mj.FitConfig(epochs=epochs, t_mix=0.1)
    start = time.perf_counter()
    state, _ = mj.fit(model, (images, labels), codes, cfg, jax.random.key(1), mean=mean,
                      std=std, state=state, progress=progress)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start

  jax.clear_caches()
  with CompileClock() as first:
    state, _ = fit(False)
  with CompileClock() as second:
    fit(False)
  step_compile = _step_compile_seconds(model, codes, config, images, labels, mean, std)
  fit(False)  # Compiled again (the caches were cleared) before the timed rounds.
  rate = matmul_rate(args.repeats)
  on, off = [], []
  epochs = 1
  for _ in range(args.rounds):  # Each run trains one more epoch from the same state.
    epochs += 1
    for progress, times in ((True, on), (False, off)):
      state_copy = jax.tree.map(jnp.copy, state)
      _, seconds = fit(progress, state_copy, epochs)
      times.append(seconds)
  epoch_off, epoch_on = statistics.median(off), statistics.median(on)
  needed = FLOP_PER_EXAMPLE * (len(labels) // config.batch_size) * config.batch_size
  lines = [
      "# Training benchmark: roofline, progress bar, compilation",
      "",
      f"Command: `python -m experiments.bench_train --data {args.data} --rounds {args.rounds}`",
      f"Machine: {machine_line()}; load average before: "
      f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
      "",
      "| figure | value |",
      "|---|---:|",
      f"| float32 matmul rate, 2048^2 (GFLOP/s) | {rate / 1e9:.1f} |",
      f"| steady epoch, bar off (s) | {epoch_off:.2f} |",
      f"| steady epoch, bar on (s) | {epoch_on:.2f} |",
      f"| epoch rate / matmul rate (needed FLOP: {needed / 1e9:.1f} G) | "
      f"{needed / epoch_off / rate:.2f} |",
      f"| progress bar cost (on / off - 1) | {epoch_on / epoch_off - 1:+.1%} |",
      f"| first fit: seconds compiling | {first.seconds:.2f} |",
      f"| of which the train step (cold) | {step_compile:.2f} |",
      f"| second fit in the process: seconds compiling | {second.seconds:.2f} |",
  ]
  emit(lines, args.out)


def _step_compile_seconds(model, codes, config, images, labels, mean, std) -> float:
  """Seconds compiling the train step alone, after clearing JAX's caches."""
  optimizer = training.fit_optimizer(config, len(labels))
  state = training.create_train_state(jax.random.key(0), model, images.shape[1:], optimizer)
  step = training.make_train_step(model, optimizer, codes, config.t_mix, jax.random.key(1),
                                  mean=mean, std=std)
  batch = (images[:config.batch_size], labels[:config.batch_size])
  jax.clear_caches()
  with CompileClock() as clock:
    jax.block_until_ready(step(state, *batch))
  return clock.seconds


if __name__ == "__main__":
  main()
