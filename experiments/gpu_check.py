"""What only an accelerator can show, in one short run: Fisher latency, ResNet-18
throughput, and the paper's CIFAR-10 recipe on real Fashion-MNIST (padded to 32x32).

Usage (on a GPU machine, from the repo root; Fashion-MNIST idx files in DATA):
  python -m experiments.gpu_check --data /usr/share/datasets/fashion-mnist --out OUT
Writes OUT/gpu_check.json and OUT/gpu_check.md at the end, together (an earlier run's pair
stays whole until then); what is measured so far is kept in OUT/gpu_check.partial.json,
removed with the pair's writing. ``--report A.json [B.json ...]`` renders saved JSON files
(a partial one too) to Markdown (stdout) without running anything.
"""

import argparse
import json
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_fisher, report_files, runner_args
from mnemonic_jax import codes as codes_lib
from mnemonic_jax import forgetting, metrics, training, workflow
from mnemonic_jax.bundle import inference_apply_fn
from mnemonic_jax.data import load_dataset
from mnemonic_jax.models import create_model


def train_throughput(batch_size=128, steps=50, width=64):
  """Images per second of the jitted ResNet-18 (CIFAR stem) train step with codes."""
  model = create_model("resnet18_cifar", 10, width=width)
  optimizer = training.make_optimizer(0.01)
  key = jax.random.key(0)
  codes = jax.random.uniform(key, (10, 32, 32, 3))
  state = training.create_train_state(key, model, (32, 32, 3), optimizer)
  step = training.make_train_step(model, optimizer, codes, 0.3, key, augment=True)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, 32, 32, 3), np.uint8))
  labels = jnp.arange(batch_size) % 10
  start = time.perf_counter()
  state, m = step(state, images, labels)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, images, labels)
  jax.block_until_ready(m)
  return {"images_per_s": steps * batch_size / (time.perf_counter() - start),
          "compile_s": compile_s, "batch_size": batch_size}


def fashion_resnet(data, epochs, width=64):
  """Trains resnet18_cifar with codes on Fashion-MNIST, then forgets each class in turn.

  The paper's CIFAR-10 recipe: t_mix 0.3, SGD lr 0.01 momentum 0.9 weight decay 5e-4,
  batch 128, cosine schedule, pad-4 crop + flip; lambda1 = 1e-5, lambda2 = 1e4.
  """
  train, test = (load_dataset(f"idx:{data}", split) for split in ("train", "test"))
  shape = (32, 32, 1)
  pad = lambda x: workflow.prepare_images(x, shape)
  key = jax.random.key(0)
  codes = codes_lib.generate_codes(jax.random.fold_in(key, 0), 10, shape)
  model = create_model("resnet18_cifar", 10, width=width)
  config = training.FitConfig(epochs=epochs, t_mix=0.3, schedule="cosine", augment=True)
  mean, std = train.info.mean, train.info.std
  start = time.perf_counter()
  state, _ = training.fit(model, (pad(train.images), train.labels), codes, config,
                          jax.random.fold_in(key, 1), mean=mean, std=std, progress=False)
  jax.block_until_ready(state)
  train_s = time.perf_counter() - start
  predict = training.make_predict_fn(model, mean=mean, std=std)
  test_x = pad(test.images)

  def test_logits(params):
    return metrics.predict_in_batches(lambda x: predict(params, state.batch_stats, x), test_x)

  before = test_logits(state.params)
  apply_fn = inference_apply_fn(model, state.batch_stats)
  rows = []
  for c in range(10):
    a_r_before = metrics.forgetting_metrics(before, test.labels, [c])["A_R"]
    # "paper": Algorithm 2 with the paper's CIFAR-10 lambdas; "auto": the paper's move with
    # the lambdas searched on the codes (the "paper" move).
    for lambdas, move in [("paper", forgetting.moves.Algorithm2(lambda1=1e-5, lambda2=1e4)),
                          ("auto", "paper")]:
      params, report = forgetting.forget(apply_fn, state.params, codes, [c], move=move)
      after = metrics.forgetting_metrics(test_logits(params), test.labels, [c])
      rows.append({"class": c, "lambdas": lambdas, "lambda1": report.details.lambda1,
                   "lambda2": report.details.lambda2, "A_R_before": a_r_before,
                   "A_R": after["A_R"], "E_F": after["E_F"], "seconds": report.seconds,
                   "compile_seconds": report.compile_seconds, "sign": report.details.sign})
      print(rows[-1], flush=True)
  return {"epochs": epochs, "train_seconds": train_s,
          "images_per_s": epochs * len(train.labels) / train_s,
          "test_accuracy": metrics.forgetting_metrics(before, test.labels, [])["accuracy"],
          "per_class_before": metrics.per_class_accuracy(before, test.labels, 10).tolist(),
          "forget": rows}


def to_markdown(result, source=""):
  """Markdown tables of one run's JSON."""
  lines = [f"### {result['device']}, jax {result['jax']}"
           + (f" (`{source}`)" if source else ""), ""]
  if result.get("fisher"):
    lines += ["Fisher over 10 codes vs one batched forward+backward (median of 20):", "",
              "| model | computation | microbatch | seconds | compile s | peak MiB | ratio |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['computation']} | {r['microbatch']} | {r['seconds']:.6f} | "
              f"{r['compile_s']:.2f} | {r['peak_bytes'] / 2**20:.1f} | {r['ratio']:.2f} |"
              for r in result["fisher"]]
    lines.append("")
  if result.get("throughput"):
    t = result["throughput"]
    lines += [f"resnet18_cifar train step with codes (batch {t['batch_size']}, crop+flip): "
              f"{t['images_per_s']:.0f} images/s (compile {t['compile_s']:.1f} s).", ""]
  f = result.get("fashion_resnet18")
  if f:
    lines += [f"Fashion-MNIST (padded to 32x32), resnet18_cifar, {f['epochs']} epochs in "
              f"{f['train_seconds']:.1f} s ({f['images_per_s']:.0f} images/s incl. the host "
              f"input pipeline); test accuracy {f['test_accuracy']:.2f}%.", "",
              "| class | lambdas | lambda1 | lambda2 | A_R before | A_R | E_F | seconds "
              "| compile s |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r.get('lambdas', 'paper')} | {r.get('lambda1', 1e-5):.2g} | "
              f"{r.get('lambda2', 1e4):.3g} | {r['A_R_before']:.2f} | {r['A_R']:.2f} | "
              f"{r['E_F']:.1f} | {r['seconds']:.3f} | {r['compile_seconds']:.2f} |"
              for r in f["forget"]]
    lines.append("")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=runner_args.HelpFormatter)
  parser.add_argument("--data")
  parser.add_argument("--out")
  parser.add_argument("--report", nargs="+", help="render saved JSON files and exit")
  parser.add_argument("--epochs", type=int, default=15)
  parser.add_argument("--width", type=int, default=64, help="ResNet width (64 is standard)")
  parser.add_argument("--throughput-steps", type=int, default=50)
  parser.add_argument("--skip-bench", action="store_true")
  args = parser.parse_args()
  if args.report:
    print("\n".join(to_markdown(json.loads(pathlib.Path(p).read_text()), p) for p in args.report))
    return
  if not (args.data and args.out):
    parser.error("--data and --out are required to run the checks")
  out = pathlib.Path(args.out)
  # Forgetting and evaluation compile the same programs for every class: cache them.
  jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp())
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  device = jax.devices()[0]
  result = {"device": f"{device.device_kind} ({device.platform})", "jax": jax.__version__}
  print(result, flush=True)
  result["fisher"] = []
  bench_models = [("mlp", (28, 28, 1)), ("resnet18_cifar", (32, 32, 3))]
  for name, shape in [] if args.skip_bench else bench_models:
    for row in bench_fisher.bench_model(name, shape, 10, 20, [None, 5, 1]):
      result["fisher"].append(dict(zip(
          ["model", "computation", "microbatch", "seconds", "compile_s", "peak_bytes",
           "ratio"], row)))
      print(result["fisher"][-1], flush=True)
  # What is measured so far, kept apart from the report (a run cut short keeps it there).
  partial = out / "gpu_check.partial.json"
  report_files.write_text(partial, json.dumps(result, indent=1))
  result["throughput"] = train_throughput(steps=args.throughput_steps, width=args.width)
  print(result["throughput"], flush=True)
  report_files.write_text(partial, json.dumps(result, indent=1))
  result["fashion_resnet18"] = fashion_resnet(args.data, args.epochs, args.width)
  with report_files.staged_report(out) as stage:  # Both files replaced together, or none.
    (stage / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (stage / "gpu_check.md").write_text(to_markdown(result))
    report_files.remove(partial)
  print(to_markdown(result))


if __name__ == "__main__":
  main()
