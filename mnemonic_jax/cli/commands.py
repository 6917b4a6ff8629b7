"""The commands that read and write bundles: ``train``, ``forget``, ``evaluate``, ``import``
and ``attach-codes`` (``demo`` is in :mod:`mnemonic_jax.cli.demo`).

Each takes the parsed arguments (:func:`mnemonic_jax.cli.parser.build_parser`), checks its
paths before any work (:mod:`mnemonic_jax.cli.paths`), calls the library
(:mod:`mnemonic_jax.workflow`, :mod:`mnemonic_jax.checkpointing`, :mod:`mnemonic_jax.attach`)
and prints its report on stdout (:mod:`mnemonic_jax.cli.report`), warnings included. A
user error is raised (the project's exception types); :func:`mnemonic_jax.cli.main` turns
it into one line and exit status 2. This module is imported only once the arguments are
parsed, so ``--help`` does not load JAX.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax

from mnemonic_jax import (_files, attach, checkpointing, configs, environment, errors, fisher,
                          forgetting, run_metrics, workflow)
from mnemonic_jax.cli import outcome, paths, report
from mnemonic_jax.cli.demo import cmd_demo
from mnemonic_jax.cli.parser import (
  DEFAULT_LAMBDA1,
  DEFAULT_LAMBDA2,
  EXIT_TERMINATED,
  UsageError,
  print_error,
  show_progress,
)
from mnemonic_jax.data import DatasetError, load_dataset


def _print_lines(lines: Iterable[str]) -> None:
  for line in lines:
    print(line)


def _load_split(name: str, split: str, bundle, data_dir=None, download: bool = False):
  """One split of a dataset, checked to fit the bundle's classes.

  A dataset that declares its classes (digits, Fashion-MNIST, tfds) must have the
  model's; one whose classes are only inferred from its largest label (idx files without
  class names) may have fewer: classes it never shows are absent from its evaluation.

  Raises:
    DatasetError: the dataset cannot be read, or its classes do not fit the model's.
  """
  ds = load_dataset(name, split, data_dir=data_dir, download=download)
  have, want = ds.info.num_classes, bundle.num_classes
  if have > want or (have < want and not ds.info.classes_from_labels):
    raise DatasetError(
        f"dataset {name} has {have} classes but the model has {want}; name the dataset the "
        "model was trained on")
  return ds


def _data_source(args, bundle, dataset: str | None) -> tuple[Any, bool]:
  """``(data_dir, download)`` of a command that reads ``dataset``: ``--data-dir``, else the
  bundle's config's.

  Raises:
    UsageError: ``--data-dir`` or ``--download`` given where no ``tfds:`` dataset is read
      (they were ignored: a mistyped or unset path went unnoticed).
  """
  given = [flag for flag, name in (("--data-dir", "data_dir"), ("--download", "download"))
           if getattr(args, name, None)]
  if given and not str(dataset or "").startswith("tfds:"):
    what = f"the dataset {dataset} is not one" if dataset else "this command reads no dataset"
    raise UsageError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to tfds: "
                     f"datasets only, and {what}; leave {'them' if len(given) > 1 else 'it'} out")
  data_dir = getattr(args, "data_dir", None)
  if data_dir is None and bundle is not None:
    data_dir = (bundle.config or {}).get("data_dir")
  return data_dir, bool(getattr(args, "download", False))


def cmd_train(args: argparse.Namespace) -> int:
  """``mnemonic-jax train``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  # Loaded, overridden, validated and locked before the workdir is touched.
  config = configs.load_config(args.config, args.overrides)
  workdir = args.workdir.absolute()
  get = config.get if hasattr(config, "get") else (lambda key, default=None: default)
  paths.check_train_inputs(args.config, config, workdir)
  # The run's own bundle there: finished. Anything else there: refused, never replaced.
  bundle = workflow.finished_run(config, workdir)
  if bundle is not None:  # Nothing is written.
    print(f"{_files.shown(workdir)} is finished: its run of this config has completed; "
          "nothing to train (use another --workdir to train again)", flush=True)
  else:
    paths.check_train_paths(args.config, config, workdir)
    try:
      with _stop_on_sigterm() as stop:
        bundle = workflow.train(config, workdir, progress=show_progress(args), stop=stop)
    except workflow.RunStopped as e:
      print_error(f"stopped by SIGTERM: step {e.step} is saved in {e.directory}; run the same "
                  "command to resume")
      return EXIT_TERMINATED
    except Exception as e:  # pylint: disable=broad-except  # Raised again.
      if environment.is_environment_error(e):  # A full disk: its unfinished save goes now.
        _remove_unfinished_saves(workdir)
      raise
    outcome.wrote(workdir / "bundle")
  print(f"bundle: {_files.shown(workdir / 'bundle')}", flush=True)
  logs = [workdir / run_metrics.METRICS_FILE, workdir / run_metrics.TENSORBOARD_DIR]
  written = [_files.shown(path) for path in logs if path.exists()]
  if written:
    print(f"metrics: {' and '.join(written)}")
  test = _load_split(bundle.dataset, "test", bundle, data_dir=get("data_dir"),
                     download=bool(get("download", False)))
  ev = workflow.evaluate(bundle, test.images, test.labels, progress=show_progress(args))
  print(f"test accuracy: {ev.accuracy:.2f}% on {len(test)} {bundle.dataset} test images")
  return 0


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[Callable[[], bool] | None]:
  """A ``stop`` for :func:`workflow.train` that SIGTERM (a scheduler's preemption notice)
  sets, so that the run saves at its next check and ends; the previous handler is put
  back after. With several processes, None: JAX's preemption service saves on SIGTERM."""
  if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
    yield None
    return
  asked = threading.Event()
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: asked.set())
  try:
    yield asked.is_set
  finally:
    signal.signal(signal.SIGTERM, previous)


def _remove_unfinished_saves(workdir) -> None:
  """Removes the train run's unfinished checkpoint saves, under its lock (one process).

  A resume would remove them too; a run that another process took over in the meantime,
  or several processes, are left to it.
  """
  if jax.process_count() > 1:
    return
  try:
    with checkpointing.workdir_lock(workdir):
      checkpointing.remove_orbax_temporaries(workdir / "train")
  except (errors.MnemonicJaxError, OSError):
    pass


def _save(output, bundle, force: bool):
  """``checkpointing.save_bundle``, stopped by an earlier Ctrl-C and recorded once written
  (:func:`mnemonic_jax.cli.outcome.saving`)."""
  with outcome.saving(output):
    return checkpointing.save_bundle(output, bundle, force=force)


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


def _resolve_move(args: argparse.Namespace, config: Any) -> tuple[forgetting.Move, str]:
  """The move ``forget`` makes, with its options, and where its lambdas came from.

  Raises:
    UsageError: lambdas with a move that chooses its own step; ``--microbatch-size`` with
      a move that takes none (it computes no Fisher, or the codes' in one batch).
  """
  lambda1, lambda2, lambda_source = _resolve_lambdas(args.lambda1, args.lambda2, config)
  given = args.lambda1 is not None or args.lambda2 is not None  # Numbers or 'auto'.
  name = args.move
  if given and name not in (None, "paper", "algorithm2"):
    raise UsageError(f"--move {name} chooses its own step on the codes; drop "
                     "--lambda1 and --lambda2 (they bound the paper's move)")
  if lambda1 == "auto" and name == "algorithm2":
    raise UsageError("--move algorithm2 takes numbers for --lambda1 and --lambda2; --move "
                     "paper (or --lambda1 auto) searches them on the codes")
  # 'auto' given by name asks for the paper's move and its search (resolve_move).
  move = forgetting.resolve_move(name, *((lambda1, lambda2) if given else (None, None)))
  if args.microbatch_size is not None:
    if "microbatch_size" not in {field.name for field in dataclasses.fields(move)}:
      takes = sorted(name for name, kind in forgetting.MOVES.items()
                     if "microbatch_size" in {f.name for f in dataclasses.fields(kind)})
      raise UsageError(f"--move {move.name} takes no --microbatch-size (it computes no Fisher, "
                       f"or the codes' in one batch); only {', '.join(takes)} do; drop it")
    move = dataclasses.replace(move, microbatch_size=args.microbatch_size)
  return move, lambda_source


def cmd_forget(args: argparse.Namespace) -> int:
  """``mnemonic-jax forget``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  output = args.output.absolute()
  source = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  inputs = [("--checkpoint", source), *paths.dataset_inputs(args.dataset, args.data_dir)]
  paths.check_output(output, inputs, args.force)
  bundle = checkpointing.load_bundle(source)
  classes = fisher.validate_classes(args.classes, bundle.num_classes)
  config = bundle.config or {}
  data_dir, download = _data_source(args, bundle, args.dataset)
  if args.dataset and data_dir:
    paths.check_no_overlap([("--output", output)], paths.dataset_inputs(None, data_dir))
  move, lambda_source = _resolve_move(args, config)
  if isinstance(move, forgetting.moves.Algorithm2):
    workflow.check_lambdas(bundle.params, move.lambda1, move.lambda2)

  evaluations = None
  if args.dataset:
    test = _load_split(args.dataset, "test", bundle, data_dir=data_dir, download=download)
    before = workflow.evaluate(bundle, test.images, test.labels,
                               forgotten=sorted({*bundle.forgotten_classes, *classes}),
                               progress=show_progress(args))
  new_bundle, forget_report = workflow.forget_bundle(bundle, classes, move=move)
  if args.dataset:
    after = workflow.evaluate(new_bundle, test.images, test.labels,
                              progress=show_progress(args))
    evaluations = (test, before, after)
    # Images settle what codes the model never learned cannot tell (recorded as well).
    new_bundle = workflow.warnings_from_images(bundle, new_bundle, after.per_class,
                                               f"{args.dataset} test")
  written = _save(output, new_bundle, args.force)

  print(f"forgot class{'es' if len(classes) > 1 else ''} "
        f"{', '.join(map(str, classes))} from {_files.shown(source)}")
  _print_lines(report.forget_summary(forget_report, lambda_source))
  _print_lines(report.warning_lines(new_bundle.history[-1]))
  if evaluations is not None:
    test, before, after = evaluations
    names = report.class_names(new_bundle, new_bundle.num_classes, test)
    counts = report.class_counts(test.labels, new_bundle.num_classes)
    print(f"\ntest accuracy (%) on {args.dataset} ({len(test)} images):")
    print(report.format_table(names, counts,
                              {"before": before.per_class, "after": after.per_class},
                              new_bundle.forgotten_classes))
    print(f"A_R (accuracy on remaining classes): {report.fmt(before.A_R, 2)} -> "
          f"{report.fmt(after.A_R, 2)}")
    print(f"E_F (error on forgotten classes):    {report.fmt(before.E_F, 2)} -> "
          f"{report.fmt(after.E_F, 2)}")
  print(f"wrote {_files.shown(written)}")
  return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
  """``mnemonic-jax evaluate``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  # Imported here: the depth attacks load optax and the baselines (0.1-0.2 s) that the
  # other commands never use.
  from mnemonic_jax.cli import depth  # pylint: disable=import-outside-toplevel

  depth.check_options(args)
  path = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  bundle = checkpointing.load_bundle(path)
  request = depth.request(args, path, bundle) if args.depth else None  # Before any data.
  dataset = args.dataset or bundle.dataset
  if not dataset:
    raise UsageError(f"{path} does not name its training dataset; pass --dataset NAME")
  data_dir, download = _data_source(args, bundle, dataset)
  ds = _load_split(dataset, args.split, bundle, data_dir=data_dir, download=download)
  if request:  # Before the train split is read and the attacks run.
    depth.check_references(request, ds)
  train = (_load_split(dataset, "train", bundle, data_dir=data_dir, download=download)
           if request else None)
  ev = workflow.evaluate(bundle, ds.images, ds.labels, progress=show_progress(args))
  depth_result = depth.run(request, bundle, train, ds, args) if request else None
  forgotten = bundle.forgotten_classes
  names = report.class_names(bundle, bundle.num_classes, ds)
  counts = report.class_counts(ds.labels, bundle.num_classes)
  if args.json:
    result = report.evaluation_json(str(path), dataset, args.split, len(ds), ev, names,
                                    counts, forgotten)
    if depth_result is not None:
      result["depth"] = depth_result
    result["warnings"] = list(outcome.current().warnings)  # Held for the object (--json).
    print(json.dumps(result))
    return 0
  print(f"{_files.shown(path)} on {dataset} {args.split} ({len(ds)} images)")
  print(report.format_table(names, counts, {"accuracy": ev.per_class}, forgotten))
  print(f"accuracy: {ev.accuracy:.2f}%")
  if forgotten:
    print(f"forgotten classes: {', '.join(map(str, forgotten))}")
    print(f"A_R (accuracy on remaining classes, higher is better): {report.fmt(ev.A_R, 2)}")
    print(f"E_F (error on forgotten classes, higher is better):    {report.fmt(ev.E_F, 2)}")
  if depth_result is not None:
    print()
    _print_lines(report.depth_lines(depth_result, dataset, args.split, len(train)))
  return 0


def _import_normalisation(args) -> tuple[tuple[float, ...], tuple[float, ...], str]:
  """``(mean, std, where they come from)`` for ``import``: given, or --dataset's statistics.

  Raises:
    UsageError: only one of ``--mean`` and ``--std`` is given, or neither and no
      ``--dataset`` to take them from; a ``--dataset`` whose images or classes do not fit
      ``--input-shape`` and ``--num-classes``.
    CheckpointError: a ``--mean`` outside [0, 1] or a ``--std`` above 0.5 other than 1
      (0-255 statistics; :func:`mnemonic_jax.checkpointing.check_normalisation_range`).
  """
  if (args.mean is None) != (args.std is None):
    given, missing = ("--mean", "--std") if args.std is None else ("--std", "--mean")
    raise UsageError(f"{given} needs {missing} too: give the per-channel mean and std the "
                     "model was trained with")
  info = None
  data_dir, download = _data_source(args, None, args.dataset)
  if args.dataset:  # Recorded as the model's dataset: it must fit the model.
    info = load_dataset(args.dataset, "train", data_dir=data_dir, download=download).info
    if tuple(info.shape) != tuple(args.input_shape) or info.num_classes > args.num_classes:
      raise UsageError(
          f"--dataset {args.dataset} has {info.num_classes} classes of images "
          f"{tuple(info.shape)}, which do not fit the model's --num-classes "
          f"{args.num_classes} and --input-shape {','.join(map(str, args.input_shape))}; "
          "name the dataset the model was trained on, or none (with --mean and --std)")
  if args.mean is not None:
    checkpointing.check_normalisation_range(args.mean, args.std, names=("--mean", "--std"))
    return tuple(args.mean), tuple(args.std), "given"
  if info is None:
    raise UsageError(
        "import needs the normalisation the model was trained with, which it cannot know: "
        "pass --mean and --std (e.g. --mean 0.1307 --std 0.3081 for MNIST; --mean 0 --std 1 "
        "for images only scaled to [0, 1]), or --dataset NAME to take that dataset's "
        "training statistics")
  where = (f"the training statistics of {args.dataset}; pass --mean and --std if the model "
           "was trained with others")
  return tuple(info.mean), tuple(info.std), where


def cmd_import(args: argparse.Namespace) -> int:
  """``mnemonic-jax import``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  output = args.output.absolute()
  paths.check_output(output, [("--params", args.params.absolute()),
                              ("--codes", args.codes.absolute()),
                              *paths.dataset_inputs(args.dataset or None, args.data_dir)],
                     args.force)
  class_names = ([n.strip() for n in args.class_names.split(",")]
                 if args.class_names is not None else [])
  if class_names and len(class_names) != args.num_classes:
    empty = (", one of them empty (a trailing or doubled comma?)" if "" in class_names
             else "")
    raise UsageError(f"--class-names has {len(class_names)} names for {args.num_classes} "
                     f"classes{empty}; give one name per class")
  mean, std, where = _import_normalisation(args)
  config = {"data_dir": os.fspath(args.data_dir.absolute())} if args.data_dir else None
  with outcome.saving(output), warnings.catch_warnings():
    # Printed below from the bundle's history entry instead.
    warnings.simplefilter("ignore", checkpointing.CodesNotLearnedWarning)
    written = checkpointing.import_params(
        args.params, str(args.codes), model_name=args.model, num_classes=args.num_classes,
        input_shape=args.input_shape, output=output, model_kwargs=args.model_kwargs,
        mean=mean, std=std, class_names=class_names, dataset=args.dataset or "", config=config,
        force=args.force)
  shown = lambda values: ", ".join(f"{v:g}" for v in values)
  print(f"normalisation: mean {shown(mean)}, std {shown(std)} ({where})")
  imported = checkpointing.load_bundle(written).history[-1]
  print(f"codes classified as their class: {imported['codes_right']} of {args.num_classes}")
  _print_lines(report.warning_lines(imported))
  print(f"wrote {_files.shown(written)} (model {args.model!r} {args.model_kwargs}, "
        f"{args.num_classes} classes, inputs {tuple(args.input_shape)})")
  return 0


def cmd_attach_codes(args: argparse.Namespace) -> int:
  """``mnemonic-jax attach-codes``: see its ``--help``.

  Args:
    args: the parsed arguments.

  Returns:
    The exit status, 0.

  Raises:
    mnemonic_jax.errors.MnemonicJaxError: a user error (one line and exit status 2).
  """
  output = args.output.absolute()
  source = checkpointing.resolve_bundle_path(args.checkpoint)  # A train workdir: its bundle.
  paths.check_output(output, [("--checkpoint", source),
                              *paths.dataset_inputs(args.dataset, args.data_dir)], args.force)
  bundle = checkpointing.load_bundle(source)
  dataset = args.dataset or bundle.dataset
  if not dataset:
    raise UsageError(f"{source} does not name its training dataset; pass --dataset NAME")
  data_dir, download = _data_source(args, bundle, dataset)
  paths.check_no_overlap([("--output", output)], paths.dataset_inputs(dataset, data_dir))
  t_mix = attach.DEFAULT_T_MIX if args.t_mix is None else args.t_mix
  attach.check_attachable(bundle)  # Before the data are read.
  attach.attach_fit_config(bundle, args.epochs, t_mix, learning_rate=args.learning_rate,
                           batch_size=args.batch_size)
  train = load_dataset(dataset, "train", data_dir=data_dir, download=download)
  attach.check_dataset(bundle, train.info, dataset)
  test = load_dataset(dataset, "test", data_dir=data_dir, download=download)
  attach.check_dataset(bundle, test.info, dataset)
  new_bundle, attached = attach.attach_codes(
      bundle, train.images, train.labels, epochs=args.epochs, t_mix=t_mix, seed=args.seed,
      code_distribution=args.code_distribution, learning_rate=args.learning_rate,
      batch_size=args.batch_size, test=(test.images, test.labels), dataset=dataset,
      progress=show_progress(args))
  written = _save(output, new_bundle, args.force)

  fit = attached.fit
  n = new_bundle.num_classes
  print(f"made a new bundle from {_files.shown(source)} (left unchanged) with new mnemonic "
        f"codes: {attached.epochs} epoch(s) on {dataset} "
        f"({attached.train_examples} images, {attached.steps} steps of {fit['batch_size']}, "
        f"t_mix {attached.t_mix:g}, learning rate {fit['learning_rate']:g}, "
        f"seed {attached.seed})")
  print(f"fine-tuning took {attached.seconds:.2f} s (+ {attached.compile_seconds:.2f} s "
        "compiling)")
  print(f"new codes classified as their class: {round(attached.codes_accuracy_before * n)} of "
        f"{n} before, {round(attached.codes_accuracy_after * n)} of {n} after (the codes they "
        f"replace: {round(attached.replaced_codes_accuracy * n)} of {n})")
  before, after = attached.test_before, attached.test_after
  names = report.class_names(new_bundle, n, test)
  counts = report.class_counts(test.labels, n)
  print(f"\ntest accuracy (%) on {dataset} ({len(test)} images):")
  print(report.format_table(names, counts,
                            {"before": before.per_class, "after": after.per_class}, ()))
  print(f"accuracy: {before.accuracy:.2f} -> {after.accuracy:.2f}")
  _print_lines(report.warning_lines(new_bundle.history[-1]))
  print(f"wrote {_files.shown(written)}")
  return 0


#: The function of each subcommand (``args.command``, see
#: :func:`mnemonic_jax.cli.parser.build_parser`).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "forget": cmd_forget, "evaluate": cmd_evaluate, "import": cmd_import,
    "attach-codes": cmd_attach_codes, "demo": cmd_demo}
