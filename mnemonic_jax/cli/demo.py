"""``mnemonic-jax demo``: the whole method on the bundled digits, in about half a minute.

Trains the paper's MLP with mnemonic codes (:func:`demo_config`), forgets one class with
the paper's move from the codes alone, and writes the two bundles and a per-class bar
chart into ``--output-dir`` (its path rules: :func:`mnemonic_jax.cli.paths.check_demo_outputs`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from ml_collections import config_dict

from mnemonic_jax import _files, checkpointing, configs, fisher, workflow
from mnemonic_jax.cli import outcome, paths, report
from mnemonic_jax.cli.parser import DEMO_EPOCHS, DEMO_FILES, UsageError, show_progress
from mnemonic_jax.data import load_dataset


def demo_config(epochs: int = DEMO_EPOCHS) -> config_dict.ConfigDict:
  """The demo's training config: the paper's MNIST settings on digits, fewer epochs.

  Built from :func:`mnemonic_jax.configs.paper_mlp_config`, as the ``digits_mlp`` config
  is, so the installed console script needs no source checkout; a test keeps the two in
  step.

  Args:
    epochs: training epochs.

  Returns:
    The config, forgetting class 3.
  """
  config = configs.paper_mlp_config("digits_mlp_demo", "digits", epochs=epochs)
  config.forget_classes = (3,)
  return config


def cmd_demo(args: argparse.Namespace) -> int:
  """``mnemonic-jax demo``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  # Matplotlib only here: the other commands start without it.
  from mnemonic_jax import plotting  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  if args.epochs < 1:
    raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
  config = demo_config(args.epochs)
  config.forget_classes = (args.forget_class,)
  classes = fisher.validate_classes([args.forget_class], 10)
  out = args.output_dir.absolute()
  if out.exists() and not out.is_dir():
    raise UsageError(f"--output-dir {out} is a file; pass a directory")
  paths.check_demo_outputs(out, args.force)
  progress = show_progress(args)
  print(f"demo: MLP 64-1000-10 (sigmoid) trained with mnemonic codes on the bundled 8x8 "
        f"digits, {args.epochs} epochs; then forgetting class {args.forget_class}", flush=True)

  with tempfile.TemporaryDirectory(prefix="mnemonic-demo-train-") as workdir:
    train_start = time.perf_counter()
    bundle = workflow.train(config, workdir, progress=progress)
    train_seconds = time.perf_counter() - train_start
  test = load_dataset("digits", "test")
  before = workflow.evaluate(bundle, test.images, test.labels, forgotten=classes,
                             progress=progress)
  # The paper's move (its lambdas from the codes): the demo shows the paper's method.
  forgotten, forget_report = workflow.forget_bundle(bundle, classes, move="paper")
  after = workflow.evaluate(forgotten, test.images, test.labels, progress=progress)

  paths.check_demo_outputs(out, args.force)  # Again: it may have changed while training.
  with outcome.saving(out / DEMO_FILES[0]):
    trained_path = checkpointing.save_bundle(out / DEMO_FILES[0], bundle, force=True)
  with outcome.saving(out / DEMO_FILES[1]):
    forgotten_path = checkpointing.save_bundle(out / DEMO_FILES[1], forgotten, force=True)
  names = report.class_names(bundle, bundle.num_classes, test)
  chart = out / DEMO_FILES[2]
  drawing = out / f".{DEMO_FILES[2]}.saving-{os.getpid()}.png"
  try:  # Drawn beside it, then renamed: a symlink there is replaced, never written through.
    plotting.per_class_bars(
        before.per_class, after.per_class, names, classes, drawing,
        title=f"Digits MLP: forgetting class {args.forget_class} from the codes alone\n"
              f"A_R {before.A_R:.1f}% \u2192 {after.A_R:.1f}%,  "
              f"E_F {before.E_F:.1f}% \u2192 {after.E_F:.1f}%")
    os.replace(drawing, chart)
    outcome.wrote(chart)
  finally:
    if os.path.lexists(drawing):
      os.unlink(drawing)

  counts = report.class_counts(test.labels, bundle.num_classes)
  print(f"\ntrained in {train_seconds:.1f} s; test accuracy (%) on {len(test)} digits:")
  print(report.format_table(names, counts,
                            {"before": before.per_class, "after": after.per_class}, classes))
  print(f"accuracy: {before.accuracy:.2f} -> {after.accuracy:.2f}")
  print(f"A_R (accuracy on remaining classes, higher is better): "
        f"{before.A_R:.2f} -> {after.A_R:.2f}")
  print(f"E_F (error on forgotten classes, higher is better):    "
        f"{before.E_F:.2f} -> {after.E_F:.2f}")
  summary = report.forget_summary(forget_report,
                                  "chosen from the codes by the data-free search")
  print("\n".join(summary + report.warning_lines(forgotten.history[-1])))
  print("\nwrote " + "\n      ".join(map(_files.shown, (trained_path, forgotten_path, chart))))
  print(f"demo took {time.perf_counter() - start:.1f} s")
  return 0
