"""Benchmark: a training epoch beside the PyTorch transcription; roofline, bar, compiling once.

For the paper's MNIST MLP (784-1000-10, sigmoid; batch 128, t_mix 0.1, SGD lr 0.01,
momentum 0.9, weight decay 5e-4) on Fashion-MNIST's 60,000 training images (random uint8
images of that shape with ``--data random``, or when the Debian package
``dataset-fashion-mnist`` is absent), it measures in one command:

* a steady training epoch of ``mj.fit`` (progress bar off and on) and of the PyTorch
  transcription's :func:`experiments.torch_reference.train_epoch` at 1 thread and at 2
  (``--torch-threads``), after a warm-up epoch each, in interleaved rounds; medians and the
  ratios mnemonic-jax / PyTorch;
* the first ``fit`` including compilation against PyTorch's first epoch, each in a fresh
  process per round (after its imports and data loading; interleaved; medians), and the
  seconds of the first fit JAX spent compiling;
* this CPU's float32 matmul rate (2048 x 2048 products) and the steady epoch's rate
  counting only the matmuls a step needs (forward ``2 B (784*1000 + 1000*10)``, weight
  gradients the same, the input gradient of the second layer only ``2 B 1000*10``: 3.196
  MFLOP per example) divided by it;
* the same rate for the step's matmuls alone (their shapes at batch 128, an epoch of them
  in one program): what an epoch could reach here if everything else were free;
* the steady epoch with a device call per step (a no-op ``on_step`` after every step)
  against ``fit``'s default, a data group's steps in one call;
* the progress bar's cost (on / off - 1, and its own host code timed directly), the train
  step's own compilation (after ``jax.clear_caches()``) and a second ``fit``'s compilation
  in the same process (0 when nothing compiles).

Every ratio divides two figures measured in this run. PyTorch missing: one line says so
and only the JAX side runs.

Usage:
  python -m experiments.bench_train [--data auto|fashion_mnist|random] [--examples N]
      [--rounds 3] [--first-rounds 2] [--torch-threads 1,2] [--out FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from experiments import bench_common as bc
from experiments import torch_reference as tr

#: Matmul FLOP one example needs in a step of the 784-1000-10 MLP (see the docstring).
FLOP_PER_EXAMPLE = 2 * (784 * 1000 + 1000 * 10) * 2 + 2 * 1000 * 10
BATCH, T_MIX = 128, 0.1


def matmul_rate(repeats: int, n: int = 2048) -> float:
  """Median float32 FLOP/s of an ``n x n`` matmul, jitted (compiled before timing)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  times = [bc.timed(lambda: f(a, a), lambda x: x.block_until_ready()) for _ in range(repeats)]
  return 2 * n ** 3 / bc.median(times)


def matmuls_seconds(steps: int, repeats: int = 3) -> float:
  """Median seconds of the matmuls alone of ``steps`` MLP steps (their shapes at batch 128:
  both layers' forward and weight-gradient products, the second layer's input gradient),
  in one program (a ``lax.scan``; each step's weights depend on the last one's products):
  the most an epoch could reach on this CPU with everything else free."""
  import jax  # pylint: disable=import-outside-toplevel

  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (BATCH, 784))
  g = jax.random.normal(keys[1], (BATCH, 10))
  weights = (jax.random.normal(keys[2], (784, 1000)), jax.random.normal(keys[3], (1000, 10)))

  def step(weights, _):
    w1, w2 = weights
    h = x @ w1
    logits = h @ w2
    dw2 = h.T @ (g + logits)
    dh = (g + logits) @ w2.T
    return (w1 - 1e-9 * (x.T @ dh), w2 - 1e-9 * dw2), None

  run = jax.jit(lambda w: jax.lax.scan(step, w, None, length=steps)[0])
  jax.block_until_ready(run(weights))
  return bc.median([bc.timed(lambda: run(weights), jax.block_until_ready)
                    for _ in range(repeats)])


def load(kind: str, examples: int, seed: int = 0):
  """``(images uint8 (N, 28, 28, 1), labels int64, mean, std, what)``."""
  if kind == "auto":
    kind = ("fashion_mnist" if os.path.exists("/usr/share/datasets/fashion-mnist")
            else "random")
  if kind == "random":
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8)
    labels, mean, std = rng.integers(0, 10, 60000), (0.5,), (0.5,)
  else:
    import mnemonic_jax as mj  # pylint: disable=import-outside-toplevel

    train = mj.data.load_dataset("fashion_mnist", "train")
    images, labels, mean, std = train.images, train.labels, train.info.mean, train.info.std
  n = examples or len(labels)
  return (np.ascontiguousarray(images[:n]), np.asarray(labels[:n], np.int64),
          tuple(float(m) for m in mean), tuple(float(s) for s in std), kind)


# ----------------------------------------------------------------------------------------
# The two sides.


class JaxSide:
  """``mj.fit`` on the MLP; each call trains one more epoch from a copy of one state."""

  def __init__(self, images, labels, mean, std):
    import jax  # pylint: disable=import-outside-toplevel

    import mnemonic_jax as mj  # pylint: disable=import-outside-toplevel

    self.jax, self.mj = jax, mj
    self.data, self.mean, self.std = (images, labels), mean, std
    self.codes = mj.generate_codes(jax.random.key(0), 10, images.shape[1:])
    self.model = mj.create_model("mlp", 10)
    self.state = None

  def fit(self, progress: bool = False, epochs: int = 1, state=None,
          each_step: bool = False) -> float:
    """Seconds of one ``mj.fit`` call (awaited); ``each_step``: a no-op ``on_step`` after
    every step, so that every step is a device call of its own."""
    config = self.mj.FitConfig(epochs=epochs, t_mix=T_MIX, batch_size=BATCH)
    on_step = (lambda *_: None) if each_step else None
    start = time.perf_counter()
    state, _ = self.mj.fit(self.model, self.data, self.codes, config, self.jax.random.key(1),
                           mean=self.mean, std=self.std, state=state, progress=progress,
                           on_step=on_step)
    self.jax.block_until_ready(state)
    self.last = state
    return time.perf_counter() - start

  def epoch(self, progress: bool, each_step: bool = False) -> float:
    """One steady epoch: resumes a copy of the state after one epoch, one epoch more
    (``fit`` trains until ``epochs`` in all: 2 from a state that has done 1)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    seconds = self.fit(progress, 2, self.jax.tree.map(jnp.copy, self.state), each_step)
    done = int(self.last.step) - int(self.state.step)
    if done != int(self.state.step):  # The first fit was one epoch: this must be one too.
      raise RuntimeError(f"a steady round trained {done} steps, not one epoch")
    return seconds

  def bar_host_seconds(self) -> tuple[float, float]:
    """``(seconds in the bar's own host code, seconds of the epoch)`` of one steady epoch
    with the bar on, the bar's code timed directly: tqdm's ``update`` and ``set_postfix``
    and the metrics window's ``add``, ``add_sums`` and ``ready_mean`` (its ``mean`` after
    the last step is left out: it waits for the device, which the caller waits for
    anyway; the window's small sums run on the device, counted as they are dispatched).
    The difference of two epochs, on and off, is within the machine's noise."""
    import tqdm.auto  # pylint: disable=import-outside-toplevel
    from mnemonic_jax import run_metrics  # pylint: disable=import-outside-toplevel

    spent = [0.0]

    def timed(method):
      def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
          return method(*args, **kwargs)
        finally:
          spent[0] += time.perf_counter() - start
      return wrapper

    patched = [(tqdm.auto.tqdm, "update"), (tqdm.auto.tqdm, "set_postfix"),
               (run_metrics.MetricsWindow, "add"), (run_metrics.MetricsWindow, "add_sums"),
               (run_metrics.MetricsWindow, "ready_mean")]
    originals = [getattr(owner, name) for owner, name in patched]
    for (owner, name), method in zip(patched, originals):
      setattr(owner, name, timed(method))
    try:
      seconds = self.epoch(True)
    finally:
      for (owner, name), method in zip(patched, originals):
        setattr(owner, name, method)
    return spent[0], seconds

  def step_compile_seconds(self) -> float:
    """Seconds compiling the train step alone (the program :func:`mj.fit` runs: a group's
    steps), after clearing JAX's caches."""
    from mnemonic_jax import training  # pylint: disable=import-outside-toplevel
    from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

    images, labels = self.data
    config = self.mj.FitConfig(epochs=1, t_mix=T_MIX, batch_size=BATCH)
    optimizer = training.fit_optimizer(config, len(labels))
    state = training.create_train_state(self.jax.random.key(0), self.model, images.shape[1:],
                                        optimizer)
    step = training.make_train_step(self.model, optimizer, self.codes, T_MIX,
                                    self.jax.random.key(1), mean=self.mean, std=self.std)
    k = training.GROUP_STEPS  # fit's program: a group of K batches on the device.
    # Fewer than K batches of images (``--examples`` small, as ``bench_all --tiny``): the
    # group wraps around them (a reshape of too few images would fail).
    take = np.arange(k * BATCH) % len(labels)
    group = self.jax.device_put((images[take].reshape(k, BATCH, *images.shape[1:]),
                                 labels[take].reshape(k, BATCH), np.int32(0),
                                 np.int32(1)))
    self.jax.clear_caches()
    with CompileClock() as clock:
      self.jax.block_until_ready(step.steps(state, *group))
    return clock.seconds


class TorchSide:
  """The transcription's ``train_epoch`` on one model; threads set before each epoch."""

  def __init__(self, images, labels, mean, std):
    torch = tr.import_torch()
    self.torch = torch
    self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
    self.mean, self.std = mean, std
    self.generator = torch.Generator().manual_seed(0)
    self.codes = tr.generate_codes(10, images.shape[1:], self.generator)
    self.model = tr.mlp(int(np.prod(images.shape[1:])))
    self.optimizer = tr.make_optimizer(self.model)

  def epoch(self, threads: int) -> float:
    """Seconds of one epoch at ``threads`` threads."""
    self.torch.set_num_threads(threads)
    start = time.perf_counter()
    tr.train_epoch(self.model, self.optimizer, self.images, self.labels, self.codes,
                   t_mix=T_MIX, mean=self.mean, std=self.std, batch_size=BATCH,
                   generator=self.generator)
    return time.perf_counter() - start


def child(kind: str, data_file: str, threads: int) -> None:
  """A fresh process's first fit (``jax``) or first epoch (``torch``), as JSON."""
  with np.load(data_file) as f:
    images, labels = f["images"], f["labels"]
    mean, std = tuple(f["mean"]), tuple(f["std"])
  if kind == "jax":
    from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

    side = JaxSide(images, labels, mean, std)
    with CompileClock() as clock:
      seconds = side.fit()
    bc.child_result({"seconds": seconds, "compile": clock.seconds})
  else:
    tr.import_torch().set_num_threads(threads)
    start = time.perf_counter()
    side = TorchSide(images, labels, mean, std)  # Model and optimiser built in the time.
    side.epoch(threads)
    bc.child_result({"seconds": time.perf_counter() - start})


# ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="experiments.bench_train",
                                   formatter_class=bc.HelpFormatter,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", choices=("auto", "fashion_mnist", "random"), default="auto")
  parser.add_argument("--examples", type=int, default=0, help="first N images (0: all)")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved steady rounds")
  parser.add_argument("--first-rounds", type=int, default=2,
                      help="interleaved rounds of fresh processes (first fit / first epoch)")
  parser.add_argument("--repeats", type=int, default=20, help="matmul repeats")
  parser.add_argument("--torch-threads", default="1,2", help="PyTorch thread counts")
  parser.add_argument("--out", type=bc.out_path, default=None, help="also write the report")
  parser.add_argument("--json", default=None, help="write the ratio rows here (bench_all)")
  parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--data-file", help=argparse.SUPPRESS)
  parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.child, args.data_file, args.threads)
    return 0
  argv = sys.argv[1:] if argv is None else list(argv)
  lines = bc.header("Training: an epoch beside the PyTorch transcription",
                    bc.command_line("bench_train", argv))
  use_torch = bc.torch_available()
  threads = [int(t) for t in args.torch_threads.split(",") if t] if use_torch else []
  images, labels, mean, std, data = load(args.data, args.examples)
  steps = len(labels) // BATCH

  # First fit / first epoch, each in a fresh process, interleaved rounds.
  with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
    data_file = os.path.join(scratch, "data.npz")
    np.savez(data_file, images=images, labels=labels, mean=np.float32(mean),
             std=np.float32(std))
    results: dict[str, list[dict]] = {}

    def first(kind, n=1):
      def call():
        result = bc.cold("bench_train", kind, ["--data-file", data_file, "--threads", str(n)])
        results.setdefault(f"{kind}{n}", []).append(result)
        return result["seconds"]
      return call

    calls = {"mnemonic-jax first fit": first("jax")}
    calls.update({f"PyTorch first epoch, {bc.threads(n)}": first("torch", n) for n in threads})
    firsts = bc.interleaved(args.first_rounds, calls)

  # Steady state, in this process.
  from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

  jax_side = JaxSide(images, labels, mean, std)
  jax_side.fit()  # Compiles.
  jax_side.state = jax_side.last
  with CompileClock() as second:
    jax_side.fit()
  step_compile = jax_side.step_compile_seconds()
  jax_side.fit()  # Compiled again (the caches were cleared) before the timed rounds.
  calls = {"mnemonic-jax epoch, bar off": lambda: jax_side.epoch(False),
           "mnemonic-jax epoch, bar on": lambda: jax_side.epoch(True),
           "mnemonic-jax epoch, a call per step": lambda: jax_side.epoch(False, True)}
  if threads:
    torch_side = TorchSide(images, labels, mean, std)
    torch_side.epoch(threads[0])  # Warm-up.
    calls.update({f"PyTorch epoch, {bc.threads(n)}": (lambda n=n: torch_side.epoch(n))
                  for n in threads})
  steady = bc.interleaved(args.rounds, calls)
  bar_host = [jax_side.bar_host_seconds() for _ in range(args.rounds)]
  rate = matmul_rate(args.repeats)
  matmuls = matmuls_seconds(steps)

  off, on = bc.median(steady["mnemonic-jax epoch, bar off"]), bc.median(
      steady["mnemonic-jax epoch, bar on"])
  each = bc.median(steady["mnemonic-jax epoch, a call per step"])
  jax_first = bc.median(firsts["mnemonic-jax first fit"])
  jax_compile = bc.median([r["compile"] for r in results["jax1"]])
  ratios = bc.Ratios()
  for n in threads or [None]:
    torch_steady = None if n is None else bc.median(steady[f"PyTorch epoch, {bc.threads(n)}"])
    ratios.add(f"training epoch, {len(labels)} images, steady state{bc.versus(n)}",
               torch_steady, off, "progress bar off")
  for n in threads or [None]:
    torch_first = None if n is None else bc.median(firsts[f"PyTorch first epoch, {bc.threads(n)}"])
    ratios.add(f"first fit including compilation, fresh process{bc.versus(n)}",
               torch_first, jax_first, f"{jax_compile:.2f} s of it compiling")
  needed = FLOP_PER_EXAMPLE * steps * BATCH
  lines += [
      f"Data: {data}, {len(labels)} images ({steps} steps of {BATCH}). Medians of "
      f"{args.rounds} interleaved round(s) (steady) and {args.first_rounds} round(s) of "
      "fresh processes (first fit: timed from just before the call, after imports and loading).",
      "", *ratios.table(), "",
      "| mnemonic-jax figure | value |", "|---|---:|",
      f"| float32 matmul rate, 2048^2 (GFLOP/s) | {rate / 1e9:.1f} |",
      f"| steady epoch, bar off (s) | {off:.2f} |",
      f"| steady epoch, bar on (s) | {on:.2f} |",
      f"| steady epoch, bar off, a device call per step (an `on_step` every step) (s) | "
      f"{each:.2f} |",
      f"| epoch rate / matmul rate (needed FLOP: {needed / 1e9:.1f} G) | "
      f"{needed / off / rate:.2f} |",
      f"| the step's matmuls alone, an epoch in one program (s) | {matmuls:.2f} |",
      f"| their rate / matmul rate: the ceiling of the line above | "
      f"{needed / matmuls / rate:.2f} |",
      f"| progress bar cost (on / off - 1) | {on / off - 1:+.1%} |",
      f"| the bar's own host code in an epoch, timed directly (s; share of the epoch) | "
      f"{bc.median([h for h, _ in bar_host]):.4f}; "
      f"{bc.median([h / e for h, e in bar_host]):.2%} |",
      f"| first fit: seconds compiling (fresh process, median) | {jax_compile:.2f} |",
      f"| the train step alone, compiling after clear_caches (s) | {step_compile:.2f} |",
      f"| second fit in the process: seconds compiling | {second.seconds:.2f} |",
      "",
      "Every measurement (s): " + "; ".join(
          f"{k}: {bc.spread(v)}" for k, v in {**firsts, **steady}.items()) + ".",
      f"Load average at the end: {bc.load_average()}."]
  with bc.staged():  # The table and the ratio rows replaced together, or neither.
    bc.write("\n".join(lines), args.out)
    ratios.write_json(args.json, {"benchmark": "bench_train"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
