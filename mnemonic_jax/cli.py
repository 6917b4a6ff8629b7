"""The ``mnemonic-jax`` console script: a thin command line over :mod:`mnemonic_jax.workflow`.

Subcommands::

  mnemonic-jax train    --config experiments/configs/digits_mlp.py[:variant]
                        [--config.FIELD=VALUE ...] --workdir DIR
  mnemonic-jax forget   --checkpoint IN --classes 3,7 --output OUT
                        [--lambda1 X] [--lambda2 Y] [--dataset NAME] [--force]
  mnemonic-jax evaluate --checkpoint CKPT [--dataset NAME] [--split test] [--json]
  mnemonic-jax import   --params FILE_OR_DIR --codes codes.npy --model mlp
                        --num-classes 10 --input-shape 28,28,1
                        (--mean M --std S | --dataset NAME) --output OUT
  mnemonic-jax attach-codes --checkpoint IN --output OUT [--dataset NAME] [--epochs K]
                        [--t-mix 0.1] [--seed 0] [--force]
  mnemonic-jax demo     [--output-dir DIR] [--class N] [--epochs E] [--force]

``--checkpoint`` takes a bundle or a ``train`` workdir (its ``bundle``). The commands
that take ``--dataset`` also take ``--data-dir DIR`` and ``--download`` (tfds). Every
command takes ``--compilation-cache DIR`` / ``--no-compilation-cache``: compiled programs
are kept in ``~/.cache/mnemonic-jax/compilation`` by default (see
:func:`compilation_cache_dir`), so a second run skips compiling. ``--help`` and
``--version`` are answered without importing JAX by this module.

Every command parses its arguments and calls the library; the work happens in
:mod:`mnemonic_jax.workflow`, :mod:`mnemonic_jax.checkpointing` and
:mod:`mnemonic_jax.plotting` (``attach-codes``: :mod:`mnemonic_jax.attach`). A user
error (unknown class, missing or foreign checkpoint, an unfinished train workdir, dataset
that does not fit the model, a ``tfds:`` dataset not prepared without ``--download``,
lambda <= 0 or beyond what float32 holds, existing output without ``--force``, an output
that is, contains or lies inside an input (symlinks resolved), an output in a directory
that cannot be written, non-finite codes, parameters or normalisation, ``import`` without
the normalisation, a bundle whose array files fail their checksums or whose metadata is
inconsistent, or whose user-registered model's source is gone, a file declaring sizes it
cannot hold, a config file that raises or a config field out of range, a workdir another
``train`` is using, ...) prints one line ``mnemonic-jax: error: ...`` on stderr, exits
with status 2 and writes nothing; Ctrl-C prints ``mnemonic-jax: error: interrupted`` and
exits with 130. A user error is an exception of the project's types
(:mod:`mnemonic_jax.errors`) or an ``OSError`` naming a path; any other exception is a bug
and shows as one (its traceback, exit status 1). Nothing else reaches stderr but progress
bars (``--quiet`` hides them): the libraries' logging is dropped here, not by the library.
Results go to stdout, warnings included (a forget whose data-free rule was missed, whose
forgotten codes are still classified right, or whose model did not know its codes, says
so and records it in the bundle's history).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import logging
import math
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from mnemonic_jax import distributed, errors
from mnemonic_jax.cli_parser import (DEFAULT_LAMBDA1, DEFAULT_LAMBDA2, DEMO_EPOCHS, DEMO_FILES,
                                     EXIT_USAGE, PROG, _print_error, _split_overrides,
                                     build_parser)
from mnemonic_jax.compilation_cache import compilation_cache_dir, configure_compilation_cache

class UsageError(errors.BadRequest):
  """A user error detected by the command line itself (reported as one line, exit 2)."""


# --------------------------------------------------------------------------------------
# Reports.


def _fmt(value: float, digits: int = 1) -> str:
  return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
      else f"{value:.{digits}f}"


def _class_names(bundle, num_classes: int, dataset=None) -> list[str]:
  names = list(bundle.class_names) or (list(dataset.info.class_names) if dataset else [])
  return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def format_table(names: Sequence[str], counts: Sequence[int], columns: Mapping[str, Any],
                 forgotten: Sequence[int]) -> str:
  """A per-class accuracy table; forgotten classes are marked with ``*``.

  A class with no example in the data is shown as ``absent`` (and named below the table).

  Args:
    names: class names.
    counts: examples per class.
    columns: column title -> per-class accuracy (%).
    forgotten: forgotten class ids.

  Returns:
    The table as text (no trailing newline).
  """
  forgotten = set(int(c) for c in forgotten)
  width = max([len("name")] + [len(n) for n in names])
  head = f"{'class':>5}  {'name':<{width}}  {'images':>6}" + "".join(
      f"  {title:>8}" for title in columns)
  lines = [head, "-" * len(head)]
  for c, name in enumerate(names):
    mark = "*" if c in forgotten else " "
    cells = (["absent"] * len(columns) if int(counts[c]) == 0
             else [_fmt(float(col[c])) for col in columns.values()])
    lines.append(f"{c:>4}{mark}  {name:<{width}}  {int(counts[c]):>6}" + "".join(
        f"  {cell:>8}" for cell in cells))
  if forgotten:
    lines.append("(* forgotten)")
  absent = [c for c in range(len(names)) if int(counts[c]) == 0]
  if absent:
    lines.append(f"(absent: the data hold no image of class{'es' if len(absent) > 1 else ''} "
                 f"{', '.join(map(str, absent))})")
  return "\n".join(lines)


def _json_number(value: Any) -> float | None:
  value = float(value)
  return None if math.isnan(value) else value


def _show_progress(args) -> bool:
  return not getattr(args, "quiet", False)


# --------------------------------------------------------------------------------------
# Commands.


def _load_split(name: str, split: str, bundle, data_dir=None, download: bool = False):
  """One split of a dataset, checked to fit the bundle's classes.

  A dataset that declares its classes (digits, Fashion-MNIST, tfds) must have the
  model's; one whose classes are only inferred from its largest label (idx files without
  class names) may have fewer: classes it never shows are absent from its evaluation.

  Raises:
    DatasetError: the dataset cannot be read, or its classes do not fit the model's.
  """
  # pylint: disable-next=import-outside-toplevel
  from mnemonic_jax.data import DatasetError, load_dataset

  ds = load_dataset(name, split, data_dir=data_dir, download=download)
  have, want = ds.info.num_classes, bundle.num_classes
  if have > want or (have < want and not ds.info.classes_from_labels):
    raise DatasetError(
        f"{name} has {have} classes but the model has {want}; evaluate on the dataset the "
        "model was trained on")
  return ds


def _data_source(args, bundle=None) -> tuple[Any, bool]:
  """``(data_dir, download)`` of a command: ``--data-dir``, else the bundle's config's."""
  data_dir = getattr(args, "data_dir", None)
  if data_dir is None and bundle is not None:
    data_dir = (bundle.config or {}).get("data_dir")
  return data_dir, bool(getattr(args, "download", False))


def _class_counts(labels, num_classes: int) -> list[int]:
  """Examples per class (0 for a class the labels never show)."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  return [int(n) for n in np.bincount(labels, minlength=num_classes)[:num_classes]]


def _check_train_paths(spec: str, config, workdir: pathlib.Path) -> None:
  """Refuses a train run whose outputs overlap what it reads, before any work.

  ``train`` writes ``WORKDIR/train`` (checkpoints, old steps deleted) and replaces
  ``WORKDIR/bundle``; it reads the config file, ``config.pretrained`` and the dataset's
  directories. A config file elsewhere in WORKDIR is fine.

  Raises:
    UsageError: an output and an input overlap.
    CheckpointError: ``WORKDIR/bundle`` exists and is not a bundle that may be replaced.
  """
  from mnemonic_jax import checkpointing, configs  # pylint: disable=import-outside-toplevel

  get = config.get if hasattr(config, "get") else (lambda key, default=None: default)
  inputs = [("config file", configs.split_spec(spec)[0])]
  if get("pretrained"):
    inputs.append(("config.pretrained",
                   pathlib.Path(os.fspath(get("pretrained"))).expanduser().absolute()))
  dataset = get("dataset")
  inputs += _dataset_inputs(dataset if isinstance(dataset, str) else None, get("data_dir"))
  _check_no_overlap([("train's bundle", workdir / "bundle"),
                     ("train's checkpoints", workdir / "train")], inputs)
  checkpointing.check_output(workdir / "bundle", force=True)


def cmd_train(args) -> int:
  """``mnemonic-jax train``."""
  # pylint: disable-next=import-outside-toplevel
  from mnemonic_jax import configs, run_metrics, workflow

  # Loaded, overridden, validated and locked before the workdir is touched.
  config = configs.load_config(args.config, args.overrides)
  workdir = args.workdir.absolute()
  get = config.get if hasattr(config, "get") else (lambda key, default=None: default)
  bundle = workflow.finished_run(config, workdir)
  if bundle is not None:  # Nothing is written.
    print(f"{workdir} is finished: its run of this config has completed; nothing to train "
          "(use another --workdir to train again)", flush=True)
  else:
    _check_train_paths(args.config, config, workdir)
    bundle = workflow.train(config, workdir, progress=_show_progress(args))
  print(f"bundle: {workdir / 'bundle'}", flush=True)
  logs = [workdir / run_metrics.METRICS_FILE, workdir / run_metrics.TENSORBOARD_DIR]
  shown = [str(path) for path in logs if path.exists()]
  if shown:
    print(f"metrics: {' and '.join(shown)}")
  test = _load_split(bundle.dataset, "test", bundle, data_dir=get("data_dir"),
                     download=bool(get("download", False)))
  ev = workflow.evaluate(bundle, test.images, test.labels, progress=_show_progress(args))
  print(f"test accuracy: {ev.accuracy:.2f}% on {len(test)} {bundle.dataset} test images")
  return 0


def _resolve_lambdas(lambda1, lambda2, config) -> tuple[Any, Any, str]:
  """Given numbers win; none given (or 'auto') means the data-free search."""
  given = [v for v in (lambda1, lambda2) if v is not None]
  if not given or "auto" in given:
    if any(isinstance(v, float) for v in given):
      raise UsageError("--lambda1 and --lambda2 are either both numbers or both auto")
    return "auto", "auto", "chosen from the codes by the data-free search"
  if lambda1 is not None and lambda2 is not None:
    return lambda1, lambda2, "given"
  key, default = ("lambda2", DEFAULT_LAMBDA2) if lambda2 is None else ("lambda1", DEFAULT_LAMBDA1)
  fill = config.get(key)
  fill = fill if isinstance(fill, (int, float)) and fill > 0 else default
  note = f"{key} from the bundle's config" if fill is config.get(key) else f"{key} default"
  return (lambda1, fill, f"given; {note}") if lambda2 is None else (fill, lambda2, f"given; {note}")


def _forget_summary(report, lambda_source: str) -> list[str]:
  r = report.to_dict()
  pct = lambda v: f"{100.0 * v:5.1f}%"
  if "rule" in r:  # A move of mnemonic_jax.robust: its own step, no lambdas, no sign.
    head = [f"move = {r['rule']}, step t = {r['steps'][-1]['t']:g} (chosen from the codes)"]
  else:
    head = [f"move = paper, lambda1 = {r['lambda1']:g}, lambda2 = {r['lambda2']:g} "
            f"({lambda_source})"]
  lines = head + [
      "accuracy on the mnemonic codes:  before    after",
      f"  forgotten classes              {pct(r['before']['forget_accuracy'])}   "
      f"{pct(r['after']['forget_accuracy'])}",
      f"  remaining classes              {pct(r['before']['remain_accuracy'])}   "
      f"{pct(r['after']['remain_accuracy'])}"]
  if "sign" in r:
    lines.append(f"sign kept: {'+' if r['sign'] > 0 else '-'} "
                 f"(params {'+' if r['sign'] > 0 else '-'} alpha * eta)")
  return lines + [
      f"forgetting took {r['seconds']:.3f} s (+ {r['compile_seconds']:.2f} s compiling)"]


def _inside(inner: str, outer: str) -> bool:
  """Whether ``inner`` is ``outer`` or lies under it, both resolved (symlinks followed).

  Compares the resolved paths, then, for ancestors that exist, their device and inode
  numbers (which also catches one directory reached through a bind mount or a
  case-insensitive file system).
  """
  inner, outer = os.path.realpath(inner), os.path.realpath(outer)
  if os.path.commonpath([inner, outer]) == outer:
    return True
  try:
    target = os.stat(outer)
  except OSError:
    return False
  path = inner
  while True:
    try:
      st = os.stat(path)
      if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
        return True
    except OSError:
      pass
    parent = os.path.dirname(path)
    if parent == path:
      return False
    path = parent


def _print_warnings(request: Mapping[str, Any]) -> None:
  """Prints a forgetting request's warnings (recorded in the bundle's history) on stdout."""
  for warning in request.get("warnings") or ():
    print(f"warning: {warning}")


def _check_no_overlap(outputs: Sequence[tuple[str, pathlib.Path]],
                      inputs: Sequence[tuple[str, pathlib.Path]]) -> None:
  """Refuses any output that is, contains or lies inside an input (symlinks resolved).

  Args:
    outputs: ``(what, path)`` of everything the command writes or replaces.
    inputs: ``(what, path)`` of everything it reads, which is never modified.

  Raises:
    UsageError: an output and an input overlap, either way round.
  """
  def shown(path):
    real = os.path.realpath(path)
    return f"{path}" + (f" (resolved: {real})" if real != os.fspath(path) else "")

  for out_what, out in outputs:
    for in_what, src in inputs:
      if _inside(os.fspath(src), os.fspath(out)) and _inside(os.fspath(out), os.fspath(src)):
        raise UsageError(
            f"{out_what} {shown(out)} is the input {in_what}, which is never modified; "
            "choose an output outside every input")
      if _inside(os.fspath(src), os.fspath(out)):
        raise UsageError(
            f"{out_what} {shown(out)} contains the input {in_what} {shown(src)}, which is "
            "never modified (replacing the output would delete it); choose an output "
            "outside every input")
      if _inside(os.fspath(out), os.fspath(src)):
        raise UsageError(
            f"{out_what} {shown(out)} would write into the input {in_what} {shown(src)}, "
            "which is never modified; choose an output outside every input")


def _check_output(output: pathlib.Path, inputs: Sequence[tuple[str, pathlib.Path]],
                  force: bool) -> None:
  """Refuses an output that overlaps an input, exists (without force) or may not be replaced.

  Args:
    output: the bundle to write.
    inputs: ``(flag, path)`` of every input the command reads.
    force: whether an existing bundle at ``output`` may be replaced.

  Raises:
    UsageError: ``output`` and an input overlap (see :func:`_check_no_overlap`).
    CheckpointError: ``output`` exists without ``force``, or is not a bundle that may be
      replaced.
  """
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel

  _check_no_overlap([("--output", output)], inputs)
  checkpointing.check_output(output, force=force)


def _dataset_inputs(name: str | None, data_dir: Any = None) -> list[tuple[str, pathlib.Path]]:
  """The user's directories a dataset is read from (``idx:DIR``, a tfds data_dir)."""
  found = []
  if name and name.startswith("idx:") and name[len("idx:"):]:
    found.append((f"dataset {name}", pathlib.Path(name[len("idx:"):]).absolute()))
  if data_dir:
    found.append(("data_dir", pathlib.Path(os.fspath(data_dir)).expanduser().absolute()))
  return found


def cmd_forget(args) -> int:
  """``mnemonic-jax forget``."""
  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import checkpointing, fisher, workflow

  output = args.output.absolute()
  source = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  inputs = [("--checkpoint", source), *_dataset_inputs(args.dataset, args.data_dir)]
  _check_output(output, inputs, args.force)
  bundle = checkpointing.load_bundle(source)
  classes = fisher.validate_classes(args.classes, bundle.num_classes)
  config = bundle.config or {}
  data_dir, download = _data_source(args, bundle)
  if args.dataset and data_dir:
    _check_no_overlap([("--output", output)], _dataset_inputs(None, data_dir))
  lambda1, lambda2, lambda_source = _resolve_lambdas(args.lambda1, args.lambda2, config)
  if lambda1 != "auto":
    if args.move not in (None, "paper"):
      raise UsageError(f"--move {args.move} chooses its own step on the codes; drop "
                       "--lambda1 and --lambda2 (they bound the paper's move)")
    workflow.check_lambdas(bundle.params, lambda1, lambda2)

  evaluations = None
  if args.dataset:
    test = _load_split(args.dataset, "test", bundle, data_dir=data_dir, download=download)
    before = workflow.evaluate(bundle, test.images, test.labels,
                               forgotten=bundle.forgotten_classes + classes,
                               progress=_show_progress(args))
  new_bundle, report = workflow.forget(bundle, classes, lambda1, lambda2,
                                       microbatch_size=args.microbatch_size, move=args.move)
  if args.dataset:
    after = workflow.evaluate(new_bundle, test.images, test.labels,
                              progress=_show_progress(args))
    evaluations = (test, before, after)
  written = checkpointing.save_bundle(output, new_bundle, force=args.force)

  print(f"forgot class{'es' if len(classes) > 1 else ''} "
        f"{', '.join(map(str, classes))} from {source}")
  print("\n".join(_forget_summary(report, lambda_source)))
  _print_warnings(new_bundle.history[-1])
  if evaluations is not None:
    test, before, after = evaluations
    names = _class_names(new_bundle, new_bundle.num_classes, test)
    counts = _class_counts(test.labels, new_bundle.num_classes)
    print(f"\ntest accuracy (%) on {args.dataset} ({len(test)} images):")
    print(format_table(names, counts, {"before": before.per_class, "after": after.per_class},
                       new_bundle.forgotten_classes))
    print(f"A_R (accuracy on remaining classes): {_fmt(before.A_R, 2)} -> {_fmt(after.A_R, 2)}")
    print(f"E_F (error on forgotten classes):    {_fmt(before.E_F, 2)} -> {_fmt(after.E_F, 2)}")
  print(f"wrote {written}")
  return 0


def cmd_evaluate(args) -> int:
  """``mnemonic-jax evaluate``."""
  from mnemonic_jax import checkpointing, workflow  # pylint: disable=import-outside-toplevel

  path = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  bundle = checkpointing.load_bundle(path)
  dataset = args.dataset or bundle.dataset
  if not dataset:
    raise UsageError(f"{path} does not name its training dataset; pass --dataset NAME")
  data_dir, download = _data_source(args, bundle)
  ds = _load_split(dataset, args.split, bundle, data_dir=data_dir, download=download)
  ev = workflow.evaluate(bundle, ds.images, ds.labels, progress=_show_progress(args))
  forgotten = bundle.forgotten_classes
  names = _class_names(bundle, bundle.num_classes, ds)
  counts = _class_counts(ds.labels, bundle.num_classes)
  absent = [c for c in range(bundle.num_classes) if counts[c] == 0]
  if args.json:
    print(json.dumps({
        "checkpoint": str(path),
        "dataset": dataset,
        "split": args.split,
        "num_examples": len(ds),
        "accuracy": _json_number(ev.accuracy),
        "per_class": [{"class": c, "name": names[c], "examples": counts[c],
                       "accuracy": _json_number(ev.per_class[c]),
                       "forgotten": c in forgotten, "absent": counts[c] == 0}
                      for c in range(bundle.num_classes)],
        "forgotten": list(forgotten),
        "absent": absent,
        "A_R": _json_number(ev.A_R) if forgotten else None,
        "E_F": _json_number(ev.E_F) if forgotten else None,
    }))
    return 0
  print(f"{path} on {dataset} {args.split} ({len(ds)} images)")
  print(format_table(names, counts, {"accuracy": ev.per_class}, forgotten))
  print(f"accuracy: {ev.accuracy:.2f}%")
  if forgotten:
    print(f"forgotten classes: {', '.join(map(str, forgotten))}")
    print(f"A_R (accuracy on remaining classes, higher is better): {_fmt(ev.A_R, 2)}")
    print(f"E_F (error on forgotten classes, higher is better):    {_fmt(ev.E_F, 2)}")
  return 0


def _import_normalisation(args) -> tuple[tuple[float, ...], tuple[float, ...], str]:
  """``(mean, std, where they come from)`` for ``import``: given, or --dataset's statistics.

  Raises:
    UsageError: only one of ``--mean`` and ``--std`` is given, or neither and no
      ``--dataset`` to take them from.
  """
  # pylint: disable-next=import-outside-toplevel
  from mnemonic_jax.data import load_dataset

  if (args.mean is None) != (args.std is None):
    given, missing = ("--mean", "--std") if args.std is None else ("--std", "--mean")
    raise UsageError(f"{given} needs {missing} too: give the per-channel mean and std the "
                     "model was trained with")
  if args.mean is not None:
    return tuple(args.mean), tuple(args.std), "given"
  if not args.dataset:
    raise UsageError(
        "import needs the normalisation the model was trained with, which it cannot know: "
        "pass --mean and --std (e.g. --mean 0.1307 --std 0.3081 for MNIST; --mean 0 --std 1 "
        "for images only scaled to [0, 1]), or --dataset NAME to take that dataset's "
        "training statistics")
  info = load_dataset(args.dataset, "train", data_dir=args.data_dir,
                      download=args.download).info
  return (tuple(info.mean), tuple(info.std),
          f"the training statistics of {args.dataset}; pass --mean and --std if the model "
          "was trained with others")


def cmd_import(args) -> int:
  """``mnemonic-jax import``."""
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel

  output = args.output.absolute()
  _check_output(output, [("--params", args.params.absolute()),
                         ("--codes", args.codes.absolute()),
                         *_dataset_inputs(args.dataset or None, args.data_dir)], args.force)
  class_names = ([n.strip() for n in args.class_names.split(",")]
                 if args.class_names is not None else [])
  if class_names and len(class_names) != args.num_classes:
    raise UsageError(f"--class-names has {len(class_names)} names for {args.num_classes} "
                     "classes; give one name per class")
  mean, std, where = _import_normalisation(args)
  config = {"data_dir": os.fspath(args.data_dir.absolute())} if args.data_dir else None
  written = checkpointing.import_params(
      args.params, str(args.codes), model_name=args.model, num_classes=args.num_classes,
      input_shape=args.input_shape, output=output, model_kwargs=args.model_kwargs,
      mean=mean, std=std, class_names=class_names, dataset=args.dataset, config=config,
      force=args.force)
  shown = lambda values: ", ".join(f"{v:g}" for v in values)
  print(f"normalisation: mean {shown(mean)}, std {shown(std)} ({where})")
  print(f"wrote {written} (model {args.model!r} {args.model_kwargs}, {args.num_classes} "
        f"classes, inputs {tuple(args.input_shape)})")
  return 0


def cmd_attach_codes(args) -> int:
  """``mnemonic-jax attach-codes``."""
  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import attach, checkpointing
  from mnemonic_jax.data import load_dataset

  output = args.output.absolute()
  source = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  _check_output(output, [("--checkpoint", source),
                         *_dataset_inputs(args.dataset, args.data_dir)], args.force)
  bundle = checkpointing.load_bundle(source)
  dataset = args.dataset or bundle.dataset
  if not dataset:
    raise UsageError(f"{source} does not name its training dataset; pass --dataset NAME")
  data_dir, download = _data_source(args, bundle)
  _check_no_overlap([("--output", output)], _dataset_inputs(dataset, data_dir))
  t_mix = attach.DEFAULT_T_MIX if args.t_mix is None else args.t_mix
  attach.check_attachable(bundle)  # Before the data are read.
  attach.attach_fit_config(bundle, args.epochs, t_mix, learning_rate=args.learning_rate,
                           batch_size=args.batch_size)
  train = load_dataset(dataset, "train", data_dir=data_dir, download=download)
  attach.check_dataset(bundle, train.info, dataset)
  test = load_dataset(dataset, "test", data_dir=data_dir, download=download)
  attach.check_dataset(bundle, test.info, dataset)
  new_bundle, report = attach.attach_codes(
      bundle, train.images, train.labels, epochs=args.epochs, t_mix=t_mix, seed=args.seed,
      code_distribution=args.code_distribution, learning_rate=args.learning_rate,
      batch_size=args.batch_size, test=(test.images, test.labels), dataset=dataset,
      progress=_show_progress(args))
  written = checkpointing.save_bundle(output, new_bundle, force=args.force)

  fit = report.fit
  n = new_bundle.num_classes
  print(f"attached new mnemonic codes to {source}: {report.epochs} epoch(s) on {dataset} "
        f"({report.train_examples} images, {report.steps} steps of {fit['batch_size']}, "
        f"t_mix {report.t_mix:g}, learning rate {fit['learning_rate']:g}, seed {report.seed})")
  print(f"fine-tuning took {report.seconds:.2f} s (+ {report.compile_seconds:.2f} s "
        "compiling)")
  print(f"codes classified as their class: {round(report.codes_accuracy_before * n)} of {n} "
        f"before, {round(report.codes_accuracy_after * n)} of {n} after")
  before, after = report.test_before, report.test_after
  names = _class_names(new_bundle, n, test)
  counts = [int((test.labels == c).sum()) for c in range(n)]
  print(f"\ntest accuracy (%) on {dataset} ({len(test)} images):")
  print(format_table(names, counts, {"before": before.per_class, "after": after.per_class},
                     ()))
  print(f"accuracy: {before.accuracy:.2f} -> {after.accuracy:.2f}")
  _print_warnings(new_bundle.history[-1])
  print(f"wrote {written}")
  return 0


def demo_config(epochs: int = DEMO_EPOCHS):
  """The demo's training config: the paper's MNIST settings on digits, fewer epochs.

  Built from :func:`mnemonic_jax.configs.paper_mlp_config`, as
  ``experiments/configs/digits_mlp.py`` is, so the installed console script needs no
  source checkout; a test keeps the two in step.
  """
  from mnemonic_jax.configs import paper_mlp_config  # pylint: disable=import-outside-toplevel

  config = paper_mlp_config("digits_mlp_demo", "digits", epochs=epochs)
  config.forget_classes = (3,)
  return config


def _check_demo_outputs(out: pathlib.Path, force: bool) -> None:
  """Refuses a demo whose outputs exist (without ``force``) or are not its own.

  ``demo`` writes ``OUTPUT_DIR/trained`` and ``OUTPUT_DIR/forgotten`` and the chart
  ``OUTPUT_DIR/per_class_accuracy.png``. Without ``force`` none of them may exist; with
  it they are replaced (a bundle path only if it is empty or a bundle holding nothing
  else; the chart if it is a file, or a symlink, which is replaced itself and never
  written through). Nothing else in OUTPUT_DIR is touched.

  Raises:
    CheckpointError: a bundle path holds something that is not a replaceable bundle.
    UsageError: an output exists without ``force``, or the chart's path is a directory.
  """
  from mnemonic_jax import checkpointing  # pylint: disable=import-outside-toplevel

  existing = [name for name in DEMO_FILES if os.path.lexists(out / name)]
  if existing and not force:
    raise UsageError(
        f"{out} already holds {', '.join(existing)} of an earlier demo; pass --force to "
        "replace them, or choose another --output-dir")
  for name in DEMO_FILES[:2]:
    checkpointing.check_output(out / name, force=True)
  chart = out / DEMO_FILES[2]
  if chart.is_dir() and not chart.is_symlink():
    raise UsageError(f"{chart} is a directory; the demo writes its chart there; move it "
                     "away or choose another --output-dir")


def cmd_demo(args) -> int:
  """``mnemonic-jax demo``."""
  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import checkpointing, fisher, plotting, workflow
  from mnemonic_jax.data import load_dataset

  start = time.perf_counter()
  if args.epochs < 1:
    raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
  config = demo_config(args.epochs)
  config.forget_classes = (args.forget_class,)
  classes = fisher.validate_classes([args.forget_class], 10)
  out = args.output_dir.absolute()
  if out.exists() and not out.is_dir():
    raise UsageError(f"--output-dir {out} is a file; pass a directory")
  _check_demo_outputs(out, args.force)
  progress = _show_progress(args)
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
  forgotten, report = workflow.forget(bundle, classes, move="paper")
  after = workflow.evaluate(forgotten, test.images, test.labels, progress=progress)

  _check_demo_outputs(out, args.force)  # Again: it may have changed while training.
  trained_path = checkpointing.save_bundle(out / DEMO_FILES[0], bundle, force=True)
  forgotten_path = checkpointing.save_bundle(out / DEMO_FILES[1], forgotten, force=True)
  names = _class_names(bundle, bundle.num_classes, test)
  chart = out / DEMO_FILES[2]
  drawing = out / f".{DEMO_FILES[2]}.saving-{os.getpid()}.png"
  try:  # Drawn beside it, then renamed: a symlink there is replaced, never written through.
    plotting.per_class_bars(
        before.per_class, after.per_class, names, classes, drawing,
        title=f"Digits MLP: forgetting class {args.forget_class} from the codes alone\n"
              f"A_R {before.A_R:.1f}% \u2192 {after.A_R:.1f}%,  "
              f"E_F {before.E_F:.1f}% \u2192 {after.E_F:.1f}%")
    os.replace(drawing, chart)
  finally:
    if os.path.lexists(drawing):
      os.unlink(drawing)

  counts = [int((test.labels == c).sum()) for c in range(bundle.num_classes)]
  print(f"\ntrained in {train_seconds:.1f} s; test accuracy (%) on {len(test)} digits:")
  print(format_table(names, counts, {"before": before.per_class, "after": after.per_class},
                     classes))
  print(f"accuracy: {before.accuracy:.2f} -> {after.accuracy:.2f}")
  print(f"A_R (accuracy on remaining classes, higher is better): "
        f"{before.A_R:.2f} -> {after.A_R:.2f}")
  print(f"E_F (error on forgotten classes, higher is better):    "
        f"{before.E_F:.2f} -> {after.E_F:.2f}")
  print("\n".join(_forget_summary(report, "chosen from the codes by the data-free search")))
  _print_warnings(forgotten.history[-1])
  print(f"\nwrote {trained_path}\n      {forgotten_path}\n      {chart}")
  print(f"demo took {time.perf_counter() - start:.1f} s")
  return 0


#: The function of each subcommand (``args.command``, see :func:`build_parser`).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "forget": cmd_forget, "evaluate": cmd_evaluate, "import": cmd_import,
    "attach-codes": cmd_attach_codes, "demo": cmd_demo}


# --------------------------------------------------------------------------------------
# Entry point.


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the ``mnemonic-jax`` command line.

  Args:
    argv: the arguments (``sys.argv[1:]`` when None).

  Returns:
    The exit status: 0 on success, 2 on a user error (reported as one line on stderr),
    130 when interrupted.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    argv, overrides = _split_overrides(argv)
  except errors.MnemonicJaxError as e:  # An override without a value or field.
    _print_error(e)
    return EXIT_USAGE
  parser = build_parser()
  args = parser.parse_args(argv)
  if overrides and args.command != "train":
    _print_error(f"--config.{overrides[0][0]} only applies to 'train' "
                 f"(see '{PROG} {args.command} --help')")
    return EXIT_USAGE
  args.overrides = overrides
  command: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
  _quiet_libraries()
  try:  # Before anything touches JAX's devices.
    several = distributed.initialize_from_args(args)
  except errors.BadRequest as e:  # A bad --coordinator, --num-processes or --process-id.
    _print_error(e)
    return EXIT_USAGE
  if several and not distributed.is_main_process():
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # Process 0 prints the report.
  configure_compilation_cache(compilation_cache_dir(args.compilation_cache,
                                                    args.no_compilation_cache))
  try:
    return command(args) or 0
  except (errors.MnemonicJaxError, OSError, ValueError, TypeError) as e:
    if not _is_user_error(e):
      raise  # A bug: its traceback, exit status 1.
    _print_error(_describe(_with_cli_fix(e, args)))
    _silence_the_rest()
    return EXIT_USAGE
  except KeyboardInterrupt:
    _print_error("interrupted")
    _silence_the_rest()
    # Exit now: background checkpoint threads would otherwise wait (Orbax's barrier, up to
    # 300 s) for the save that the interrupt cut off, and print warnings at shutdown. The
    # workdir lock goes with the process; a resume removes the unfinished save.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)  # pylint: disable=protected-access


def _is_user_error(error: BaseException) -> bool:
  """Whether the command line reports ``error`` as one line and exit status 2.

  The project's own errors (:class:`mnemonic_jax.errors.MnemonicJaxError`) are; so is an
  ``OSError`` naming a path (a missing file, a permission denied, a full disk): the
  user's environment, not a bug. Anything else is a bug and keeps its traceback.
  """
  if isinstance(error, errors.MnemonicJaxError):
    return True
  return isinstance(error, OSError) and error.filename is not None


def _quiet_libraries() -> None:
  """Keeps Orbax's, tensorstore's and tfds' logging and warnings off the command's stderr.

  stderr carries progress bars and, on failure, one error line: the libraries' absl
  records (at any level), Python warnings from their modules and the stray tensorstore
  callbacks of a failed read are dropped. Their failures still reach the user as
  exceptions, which become that one line. The library itself changes none of this.
  """
  import warnings  # pylint: disable=import-outside-toplevel

  try:  # absl's own logger class first: its records name the library that logs.
    importlib.import_module("absl.logging")
  except ImportError:
    pass
  logging.getLogger("absl").addFilter(_drop_library_records)
  for module in (r"orbax(\..*)?$", r"tensorstore(\..*)?$",
                 r"jax\._src\.(compiler|compilation_cache|lru_cache)$"):  # Cache misses.
    warnings.filterwarnings("ignore", module=module)
  _drop_stray_tensorstore_callbacks()


#: Libraries whose absl records the command drops (Orbax logs dozens of INFO lines per
#: save; tfds warns "Variant folder ... has no ..." before failing with an error).
_QUIET_LIBRARIES = ("orbax", "tensorstore", "tensorflow_datasets")


def _drop_library_records(record: logging.LogRecord) -> bool:
  """False for absl records emitted from the sources of :data:`_QUIET_LIBRARIES`."""
  path = record.pathname or ""
  return not any(f"{os.sep}{lib}{os.sep}" in path for lib in _QUIET_LIBRARIES)


def _drop_stray_tensorstore_callbacks() -> None:
  """Hides the 'Event loop is closed' tracebacks a failed Orbax read prints later.

  When a tensorstore read fails (a truncated or deleted array file), Orbax's restore
  raises and closes its event loop while the other reads are still completing; their
  callbacks then report ``RuntimeError: Event loop is closed`` through
  ``sys.unraisablehook``, before or after the one error line. This chains a filter in
  front of the current hook that drops exactly those reports; everything else goes
  through to the previous hook.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    error = unraisable.exc_value
    tb, frames = unraisable.exc_traceback, []
    while tb is not None:
      frames.append(tb.tb_frame.f_code.co_name)
      tb = tb.tb_next
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
            and "call_soon_threadsafe" in frames):
      previous(unraisable)

  sys.unraisablehook = hook


def _silence_the_rest() -> None:
  """After the one error line, nothing else reaches stderr.

  An interrupted or refused command may leave Orbax's background threads (an asynchronous
  save being finalised, tensorstore callbacks) to fail while the interpreter shuts down;
  their tracebacks ("Exception in thread", "Exception ignored in") would follow the error
  line. The command has already failed and said why, so they are dropped.
  """
  import threading  # pylint: disable=import-outside-toplevel

  sys.stderr.flush()
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda unraisable: None
  logging.getLogger("absl").addFilter(lambda record: False)


def _with_cli_fix(error: BaseException, args: argparse.Namespace) -> BaseException:
  """A tfds dataset that is not prepared, its fix named in this command's own options."""
  not_prepared = getattr(sys.modules.get("mnemonic_jax.data.sources"), "DatasetNotPrepared",
                         None)
  if not_prepared is None or not isinstance(error, not_prepared):
    return error
  if args.command == "train":
    return error.with_fix(
        "set --config.download=True to let tfds download it (needs internet and "
        "TensorFlow), or --config.data_dir=DIR to read a prepared copy")
  return error.with_fix("pass --download to let tfds download it (needs internet and "
                        "TensorFlow), or --data-dir DIR to read a prepared copy")


def _describe(error: BaseException) -> str:
  """One line for an exception (OSError gets its path and reason, others their message)."""
  if isinstance(error, OSError) and error.filename is not None and error.strerror:
    return f"{error.filename}: {error.strerror}"
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def entry_point() -> int:
  """The ``mnemonic-jax`` program: :func:`main`, then a quick way out.

  At exit Python frees what the imports built (JAX, Flax, Orbax), running the garbage
  collector over it again and again: about 0.4 s of a second ``forget`` on 2 CPU cores
  (``experiments/results/bench_cli.md``). Moving every object to the collector's permanent
  generation first (:func:`gc.freeze`) skips that work; only the program does it, never a
  caller of :func:`main` that keeps running.
  """
  status = main()
  gc.freeze()
  return status


if __name__ == "__main__":
  sys.exit(entry_point())
