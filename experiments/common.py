"""What the experiment runners share: configs, the cached model, evaluation, report cells.

The bottom layer of ``experiments`` but for :mod:`experiments.run_cache` (the run files'
keys) and :mod:`experiments.report_files` (a report's files replaced together; standard
library only): it imports the library and those, so every runner can import it. The
runners form layers above it, each importing only those below (``python -m
experiments.import_graph`` checks that there is no cycle)::

  run_cache  <-  common  <-  plots  <-  compare_depth  <-  compare_report  <-  compare  <-  table
                 common  <-  robust <-  alignment
                 common  <-  attach_codes, bench_forget, bench_search
  bench_fisher  <-  gpu_check

Here: the user-error exit (:func:`fail`), the runners' config loader, class arguments,
the cached bundle of one seed (:func:`trained_model`, :func:`seed_context`; keyed on the
config fields that change training), the key of a run file older than keys
(:func:`legacy_config`), a forgotten model's measurements (:func:`measure`), report cells
(:func:`mean_std`, :func:`set_label`, :func:`machine_line`) and benchmark timing.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import time
import warnings
from typing import Any, Callable, NoReturn, Sequence

import jax
import numpy as np

from experiments import report_files, run_cache, runner_args
# Defined in run_cache (never part of a key; part of a run's key, not of its model's).
from experiments.run_cache import FORGET_FIELDS, NEUTRAL_FIELDS, config_key  # noqa: F401
from mnemonic_jax import _files, checkpointing, configs, errors, fisher, metrics, mia, workflow
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule

#: Goal of a forgetting run: E_F = 100 and A_R at most this many points below before.
GOAL_A_R_DROP = 1.0

#: Where a runner writes without ``--out`` (relative to the working directory; git ignores
#: ``runs/``), so that trying a runner never overwrites the committed results.
SCRATCH = "runs/experiments"

#: ``--train-cap`` and ``--mia-cap`` of the table when not given (and of every run file
#: written before runs recorded their key: no committed command set them).
TRAIN_CAP, MIA_CAP = 10000, 2000


# ----------------------------------------------------------------------------------------
# User errors, configs and arguments.


def out_path(text: str) -> str:
  """``--out``'s type in every runner: an empty value (never the current directory) and a
  path bundles cannot be cached under (not UTF-8: ``_files.unstorable``) are refused."""
  if not text:
    raise argparse.ArgumentTypeError("is empty (an unset shell variable?); give a folder")
  if (why := _files.unstorable(os.path.abspath(text))) is not None:
    raise argparse.ArgumentTypeError(f"{_files.shown(text)}: {why}")
  if pathlib.Path(text).exists() and not pathlib.Path(text).is_dir():
    raise argparse.ArgumentTypeError(f"{text} exists and is not a folder; give a folder")
  nearest = next((p for p in pathlib.Path(text).parents if p.exists()), None)
  if nearest is not None and not nearest.is_dir():  # The nearest existing one.
    raise argparse.ArgumentTypeError(f"{nearest} is a file, so {text} cannot be a folder; "
                                     "give a folder")
  return text


def seed_list(text: str) -> list[int]:
  """An argparse type: comma-separated seeds, integers in ``[0, configs.MAX_SEED]``
  (``''``: none)."""
  seeds = []
  for part in (p.strip() for p in text.split(",")):
    if part:
      if not (part.isascii() and part.isdigit()) or int(part) > configs.MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"{part!r} is not a seed (an integer in [0, {configs.MAX_SEED}])")
      seeds.append(int(part))
  return seeds


def positive_int(minimum: int = 1, maximum: int | None = None):
  """An argparse type: an integer of at least ``minimum`` (and at most ``maximum``)."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
      raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
    return value
  return parse


def report_name(text: str) -> str:
  """``--report``'s type: a file name stem, written inside ``--out`` (no folder part)."""
  if not text or pathlib.PurePath(text).name != text or text in (".", ".."):
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a plain name; the report goes into --out (give e.g. my_table)")
  return text


def run_command(main: Callable[[], Any], prog: str, *, show: bool = False) -> None:
  """Runs a runner's ``main`` as its command (``if __name__ == "__main__"``), printing its
  result if ``show``. Ctrl-C ends it with one line on stderr and status 130 instead of a
  traceback: the runs finished before it are cached, and the same command reuses them.
  It leaves at once then (``os._exit``): JAX's shutdown after a compile cut short can
  crash the process."""
  # Each run records whether its move met its rule; a warning per run would bury the rest.
  warnings.simplefilter("ignore", errors.RuleNotMetWarning)
  try:
    result = main()
  except KeyboardInterrupt:
    sys.stdout.flush()
    print(f"{prog}: interrupted; the runs finished before it are cached, and running the "
          "same command again reuses them", file=sys.stderr, flush=True)
    os._exit(130)  # pylint: disable=protected-access
  if show:
    print(result)


#: The runner whose parser was made last (:class:`RunnerParser`): what :func:`fail` names.
_running = argparse.Namespace(prog="experiments")


def fail(message: str, prog: str | None = None) -> NoReturn:
  """A user error: one line ``<prog>: error: <message>`` on stderr, exit status 2.

  Args:
    message: what is wrong and how to fix it.
    prog: the runner named first; by default the one whose parser was made last.

  Raises:
    SystemExit: always, with code 2.
  """
  print(f"{prog or _running.prog}: error: {message}", file=sys.stderr)
  sys.exit(2)


def load_config(spec: str, overrides: Sequence[tuple[str, str]] = ()) -> tuple[Any, str]:
  """A runner's config, through the library's one loader.

  Args:
    spec: ``path/to/config.py[:variant]``.
    overrides: ``(FIELD, VALUE)`` pairs from ``--config.FIELD=VALUE`` arguments.

  Returns:
    ``(config, variant)``: the validated, locked ``ConfigDict`` of
    :func:`mnemonic_jax.configs.load_config`, and the variant (``""`` for none).

  Raises:
    SystemExit: a config error, reported in one line (exit status 2).
  """
  try:
    config = configs.load_config(spec, overrides)
  except configs.ConfigError as e:
    fail(str(e))
  return config, configs.split_spec(spec)[1] or ""


class RunnerParser(argparse.ArgumentParser):
  """The runners' argument parser: an option that takes a value may be given once
  (:func:`mnemonic_jax.cli.parser.refuse_repeated_options`, as on the command line), a
  refusal is one line (no usage dump), and ``--help`` shows every option's default
  (:class:`experiments.runner_args.HelpFormatter`).

  Without ``prog``, the usage and error lines name the runner as it is run and as the
  docs write it, ``experiments.<name>`` (:func:`runner_args.module_name` of the module that
  makes the parser), not argparse's file name ``<name>.py``.
  """

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", runner_args.HelpFormatter)
    if not args and kwargs.get("prog") is None:
      kwargs["prog"] = runner_args.module_name(sys._getframe(1).f_globals)  # pylint: disable=protected-access
    super().__init__(*args, **kwargs)
    _running.prog = self.prog.removeprefix("python -m ")

  def parse_known_args(self, args=None, namespace=None):  # pylint: disable=missing-function-docstring
    from mnemonic_jax.cli.parser import refuse_repeated_options  # pylint: disable=import-outside-toplevel

    refuse_repeated_options(self, sys.argv[1:] if args is None else args)
    return super().parse_known_args(args, namespace)

  def error(self, message: str):  # pylint: disable=missing-function-docstring
    self.exit(2, f"{self.prog}: error: {message}\n")  # One line, as every other refusal.


def run_name(config, variant: str, overrides: Sequence[tuple[str, str]] = ()) -> str:
  """``config.name``, then ``-<variant>`` (commas as dashes) for a variant, then
  ``+FIELD=VALUE`` for each ``--config.FIELD=VALUE`` (characters other than letters,
  digits, ``.``, ``_`` and ``-`` as ``_``): a run with overrides gets its own report and
  runs folder instead of writing over the plain config's."""
  name = config.name + (f"-{variant.replace(',', '-')}" if variant else "")
  safe = lambda text: re.sub(r"[^A-Za-z0-9._-]", "_", str(text))
  return name + "".join(f"+{safe(field)}={safe(value)}" for field, value in overrides)


def parse_classes(text: str, num_classes: int) -> list[int]:
  """``"all"`` or comma-separated class ids, each an integer in ``[0, num_classes)``.

  A bad id is a user error (one line, exit 2), found before anything is written.
  """
  if text == "all":
    return list(range(num_classes))
  items = [c.strip() for c in text.split(",") if c.strip() != ""]
  bad = [c for c in items if not (c.isascii() and c.isdigit()) or int(c) >= num_classes]
  if bad:
    fail(f"class ids {', '.join(bad)} are not classes of this dataset (0..{num_classes - 1}); "
         "write e.g. --classes 0,3 or --classes all")
  ids = [int(c) for c in items]
  if len(set(ids)) != len(ids):  # Each would be run, and averaged, twice.
    fail(f"class ids repeated in {text!r}; give each once")
  return ids


def forget_sets_of(args, num_classes: int) -> list[tuple[int, ...]]:
  """The single classes of ``args.classes`` and the ``args.multi`` set (if not empty).

  Raises:
    SystemExit: a bad class id, a multi-class set the library refuses, or a ``--multi`` set
      that is one of the ``--classes`` (exit status 2).
  """
  sets = [(c,) for c in parse_classes(args.classes, num_classes)]
  multi = tuple(sorted(parse_classes(args.multi, num_classes))) if args.multi else ()
  if multi:
    try:
      fisher.validate_classes(multi, num_classes)
    except ValueError as e:
      fail(f"--multi {args.multi}: {e}")
  if multi and multi in sets:  # The same runs would be counted twice, once per table.
    fail(f"--multi {args.multi} is one class, already forgotten by --classes; give a set of "
         "several classes, or --multi '' for none")
  if not sets and not multi:  # The report would be empty tables.
    fail("no class to forget: give --classes (e.g. 0,3 or all) or a --multi set")
  return sets + ([multi] if multi else [])


def rule_from_config(config) -> Rule:
  """The step rule of the runners' searched moves (``auto``, ``mnemonic-auto``).

  Args:
    config: a runner's config; its optional ``config.auto`` section may set ``margin``,
      ``guard``, ``order`` and ``fallback`` (the fields of
      :class:`mnemonic_jax.forgetting.criterion.Rule`).

  Returns:
    That :class:`~mnemonic_jax.forgetting.criterion.Rule`, or
    :data:`~mnemonic_jax.forgetting.criterion.DEFAULT_RULE` without the section.
  """
  if "auto" not in config:
    return DEFAULT_RULE
  fields = {k: config.auto[k] for k in ("margin", "guard", "order", "fallback")
            if k in config.auto}
  return Rule(**fields)


def same_rule(recorded: dict[str, Any] | None, rule: Rule) -> bool:
  """Whether a cached run's ``rule`` dict is ``rule``.

  Tolerant of records written before a field of :class:`Rule` existed: a missing field
  is read as its default (``fallback`` was added with the value ``"guard"`` that every
  earlier search used).
  """
  if not isinstance(recorded, dict):
    return False
  default = dataclasses.asdict(Rule())
  return {**default, **recorded} == dataclasses.asdict(rule)


def run_key(seed: int, classes: Sequence[int], mode: str) -> str:
  """A run's cache file stem: ``seed<seed>-c<c1>_<c2>-<mode>`` (the file adds the digest of
  the run's key: :class:`experiments.run_cache.RunCache`)."""
  return f"seed{seed}-c{'_'.join(str(c) for c in classes)}-{mode}"


# ----------------------------------------------------------------------------------------
# One seed: the trained model and what every run of it shares.


@dataclasses.dataclass
class SeedContext:
  """A trained bundle and its evaluation before forgetting."""

  seed: int
  bundle: Any
  train_seconds: float | None
  test_logits: np.ndarray
  train_logits: np.ndarray
  apply_fn: Any


def training_diff(config, trained: dict[str, Any]) -> list[str]:
  """The fields that change training in which ``config`` and a bundle's config differ.

  :data:`NEUTRAL_FIELDS` and :data:`FORGET_FIELDS` aside: a bundle trained with other
  forgetting lambdas is the same trained model.
  """
  want = config_key(config, training_only=True)
  have = config_key(trained, training_only=True)
  return sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))


def _adopt(bundle, config):
  """``bundle`` with the forgetting fields of ``config`` in its config (in memory only).

  A method that reads its settings from the bundle's config (``mnemonic``: the lambdas)
  then reads this run's, not those of the run that trained the model.
  """
  plain = json.loads(json.dumps(workflow.to_plain(config), default=str))
  merged = {k: v for k, v in bundle.config.items() if k not in FORGET_FIELDS}
  merged.update({k: v for k, v in plain.items() if k in FORGET_FIELDS})
  return bundle.replace(config=merged)


def _recorded_seconds(workdir: pathlib.Path) -> float | None:
  record = workdir / "train_seconds.json"
  try:
    return json.loads(record.read_text())["train_seconds"] if record.exists() else None
  except (OSError, ValueError, KeyError, TypeError):
    return None


def train_or_load(config, workdir: pathlib.Path, progress: bool) -> tuple[Any, float | None]:
  """The cached bundle of ``config`` in ``workdir``, trained (or resumed) if missing.

  Returns:
    ``(bundle, seconds)``: ``seconds`` is the training time, ``None`` when it is not known
    (a resumed run, or a cache without its record). A cached bundle comes back with this
    config's forgetting fields (:func:`_adopt`).

  Raises:
    SystemExit: the cached bundle was trained with another config, apart from
      :data:`NEUTRAL_FIELDS` and :data:`FORGET_FIELDS`, or the workdir holds an unfinished
      run of another config (exit status 2).
  """
  record = workdir / "train_seconds.json"
  if (workdir / "bundle").exists():
    bundle = checkpointing.load_bundle(workdir / "bundle")
    diff = training_diff(config, bundle.config)
    if diff:
      fail(
          f"{workdir / 'bundle'} was trained with another config (differs in {diff}); "
          "delete that directory or pass another --out")
    return _adopt(bundle, config), _recorded_seconds(workdir)
  resumed = (workdir / "train").exists()
  start = time.perf_counter()
  try:
    bundle = workflow.train(config, workdir, progress=progress)
  except errors.BadRequest as e:  # E.g. an unfinished run of another config in workdir.
    fail(str(e))
  seconds = time.perf_counter() - start
  # A resumed run's time covers only its last part: not reported as training time.
  record.write_text(json.dumps({"train_seconds": None if resumed else seconds,
                                "call_seconds": seconds, "resumed": resumed,
                                "epochs": config.epochs}))
  return bundle, None if resumed else seconds


def model_dirs(base: pathlib.Path, name: str, config) -> tuple[pathlib.Path, pathlib.Path]:
  """``(base/name, base/name-<digest>)``: where a trained model of ``config`` may live.

  The first is the directory of the first model trained under that name (and of every
  model cached before models were keyed); a model of another training config goes to the
  second, named by the digest of its training fields.
  """
  key = config_key(config, training_only=True)
  return base / name, base / f"{name}-{run_cache.digest(key)}"


def trained_model(config, base: pathlib.Path, name: str, progress: bool, train: bool = True
                  ) -> tuple[Any, float | None]:
  """The bundle of ``config`` cached under ``base`` (:func:`model_dirs`), trained if missing.

  Args:
    config: the model's config (its seed set).
    base: the cache folder of the runner's config name, e.g. ``<out>/cache/<name>``.
    name: the model's directory name, e.g. ``seed0``.
    progress: show the training progress bar.
    train: train a missing model (else return ``(None, None)``).

  Returns:
    ``(bundle, seconds)`` as :func:`train_or_load`.
  """
  first, keyed = model_dirs(base, name, config)
  for workdir in (first, keyed):
    if (workdir / "bundle").exists():
      bundle = checkpointing.load_bundle(workdir / "bundle")
      if not training_diff(config, bundle.config):
        return _adopt(bundle, config), _recorded_seconds(workdir)
  if not train:
    return None, None
  workdir = keyed if (first / "bundle").exists() else first
  return train_or_load(config, workdir, progress)


_LEGACY_CONFIGS: dict[tuple[Any, ...], dict[str, Any]] = {}


def legacy_config(spec: str, base: pathlib.Path, name: str, seed: int,
                  edit: Callable[[Any], None] | None = None) -> dict[str, Any]:
  """The config a run file written before keys was computed with, as key.

  Such files were written by runners that trained the model of ``base/name`` (the first
  directory of :func:`model_dirs`) and refused to run with any config but that model's
  (the :data:`NEUTRAL_FIELDS` aside; ``baselines`` was not compared): where that bundle
  is cached, its config is the evidence; the fields it lacks, and every field where no
  bundle is cached (the committed results keep no bundles), are those of the runner's
  spec with no override, which every committed report's command used.

  Args:
    spec: the runner's ``--config`` (its overrides are not applied).
    base: the cache folder of the runner's config name.
    name: the model's directory name, e.g. ``seed0``.
    seed: the run's seed.
    edit: changes the runner makes to a loaded config (``attach_codes``: ``t_mix = 0``).

  Returns:
    :func:`~experiments.run_cache.config_key` of that config, ``seed`` set (a copy).
  """
  path = base / name / "bundle"
  memo = (spec, str(path.absolute()), seed, edit)
  if memo not in _LEGACY_CONFIGS:
    config, _ = load_config(spec)
    if edit is not None:
      edit(config)
    plain = config_key(config, seed)
    if path.exists():
      try:
        trained = checkpointing.load_bundle(path).config
      except checkpointing.CheckpointError:
        trained = None
      if trained is not None:
        plain.update({k: v for k, v in config_key(trained, seed).items() if k != "baselines"})
    _LEGACY_CONFIGS[memo] = plain
  return json.loads(json.dumps(_LEGACY_CONFIGS[memo]))


def train_subset(num: int, cap: int | None, seed: int = 0) -> np.ndarray:
  """Indices of the training examples evaluated (all of them, or ``cap`` at random)."""
  if cap is None or num <= cap:
    return np.arange(num)
  return np.sort(np.random.default_rng(seed).choice(num, cap, replace=False))


def seed_context(config, seed: int, out: pathlib.Path, name: str, test, train_images,
                 progress: bool) -> SeedContext:
  """The trained (cached) bundle of ``seed`` and its predictions before forgetting.

  The bundle lives in ``<out>/cache/<name>/seed<seed>`` (or ``seed<seed>-<digest>`` for
  another training config: :func:`trained_model`);
  ``config.baselines`` (how the baselines run) is not part of the trained model's config.
  """
  seed_config = config.copy_and_resolve_references()
  seed_config.seed = seed
  if "baselines" in seed_config:  # How the baselines run is not how the model trains.
    with seed_config.unlocked():
      del seed_config["baselines"]
  bundle, seconds = trained_model(seed_config, out / "cache" / name, f"seed{seed}", progress)
  return SeedContext(
      seed=seed, bundle=bundle, train_seconds=seconds,
      test_logits=workflow.predict(bundle, test.images),
      train_logits=workflow.predict(bundle, train_images), apply_fn=bundle.apply_fn())


# ----------------------------------------------------------------------------------------
# Measurements of a forgotten model.


def measure(ctx: SeedContext, new, classes: Sequence[int], test, train_images, train_labels,
            mia_cap: int, logits: tuple[np.ndarray, np.ndarray] | None = None
            ) -> dict[str, Any]:
  """A_R, E_F, per-class and train accuracies and the three MIAs of a forgotten model.

  ``logits`` (test, train) skips the prediction (for the model before forgetting).
  """
  record: dict[str, Any] = {}
  if logits is None:
    start = time.perf_counter()
    test_logits = workflow.predict(new, test.images)
    train_logits = workflow.predict(new, train_images)
    record["eval_seconds"] = time.perf_counter() - start
  else:
    test_logits, train_logits = logits
  before = metrics.forgetting_metrics(ctx.test_logits, test.labels, classes)
  after = metrics.forgetting_metrics(test_logits, test.labels, classes)
  in_forget_train = np.isin(train_labels, classes)
  train_correct = np.argmax(train_logits, -1) == train_labels
  record.update(
      A_R=after["A_R"], E_F=after["E_F"], accuracy=after["accuracy"],
      A_R_before=before["A_R"], E_F_before=before["E_F"], accuracy_before=before["accuracy"],
      per_class=metrics.per_class_accuracy(test_logits, test.labels, new.num_classes).tolist(),
      retain_train_accuracy=float(100 * train_correct[~in_forget_train].mean()),
      forget_train_accuracy=float(100 * train_correct[in_forget_train].mean()),
      train_examples_evaluated=int(len(train_labels)))
  if classes:
    record["shift_recovered"] = metrics.shift_recovery(test_logits, test.labels, classes)

  # Membership inference: members = retained training samples (capped), non-members = test
  # samples (capped), targets = every evaluated forgotten training sample.
  retain_idx = np.flatnonzero(~in_forget_train)
  retain_idx = retain_idx[train_subset(len(retain_idx), mia_cap, ctx.seed)]
  test_idx = train_subset(len(test.labels), mia_cap, ctx.seed + 1)
  start = time.perf_counter()
  scores = mia.all_attacks(
      train_logits[retain_idx], train_labels[retain_idx], test_logits[test_idx],
      test.labels[test_idx], train_logits[in_forget_train], train_labels[in_forget_train],
      classes, seed=ctx.seed)
  # mia gives every score in %; records keep the entropy attack as a fraction, the unit of
  # the committed tables and cached runs (compare_report.mia_points converts it back).
  record["mia"] = {**scores, "entropy_mia": scores["entropy_mia"] / 100.0}
  record["mia_seconds"] = time.perf_counter() - start
  record["mia_sizes"] = {"members": int(len(retain_idx)), "non_members": int(len(test_idx)),
                         "forgotten": int(in_forget_train.sum())}
  return record


def relearn_steps_of(record: dict[str, Any], target: str) -> float:
  """Steps to relearn to ``target``% of the original; inf when never reached."""
  rl = record.get("relearn")
  if not rl:
    return float("nan")
  steps = rl[f"steps_to_{target}"]
  return float("inf") if steps is None else float(steps)


def relearn_median(rs, target) -> tuple[float, int]:
  """Median relearning steps over runs (a run that never relearned counts as infinite,
  so the median is right while fewer than half never relearn), and that number of runs."""
  steps = [relearn_steps_of(r, target) for r in rs]
  steps = [s for s in steps if not np.isnan(s)]
  if not steps:
    return float("nan"), 0
  return float(np.median(steps)), int(sum(np.isinf(s) for s in steps))


# ----------------------------------------------------------------------------------------
# Report cells.


def mean_std(values: Sequence[float], digits: int = 1) -> str:
  """``"mean ± std"`` (population std) of the values that are not ``None``; ``"-"`` if none."""
  values = np.asarray([v for v in values if v is not None], dtype=float)
  if values.size == 0:
    return "-"
  if values.size == 1:
    return f"{values[0]:.{digits}f}"
  return f"{values.mean():.{digits}f} ± {values.std(ddof=0):.{digits}f}"


def class_label(c: int, class_names: Sequence[str]) -> str:
  """``"3 Dress"``, or ``"3"`` where the name is the id."""
  name = class_names[c] if c < len(class_names) else str(c)
  return str(c) if name == str(c) else f"{c} {name}"


def set_label(classes: Sequence[int], class_names: Sequence[str]) -> str:
  """``"3 Dress"`` for one class, ``"{0,1,2}"`` for a set."""
  if len(classes) == 1:
    return class_label(classes[0], class_names)
  return "{" + ",".join(map(str, classes)) + "}"


def machine_line() -> str:
  """One line naming the platform, Python, jax, the CPUs visible and the devices."""
  devices = jax.devices()
  return (f"{platform.platform()}, Python {platform.python_version()}, jax {jax.__version__}, "
          f"{os.cpu_count()} CPUs visible, devices: {devices[0].platform} x{len(devices)} "
          f"({devices[0].device_kind})")


# ----------------------------------------------------------------------------------------
# Benchmarks: timing after compilation and writing their table.


def median_seconds(make_call: Callable[[int], Callable[[], Any]], repeats: int) -> float:
  """Median wall seconds of ``make_call(i)()`` for ``i = 1..repeats``, results awaited."""
  times = []
  for i in range(1, repeats + 1):
    call = make_call(i)
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def emit(lines: Sequence[str], out: str | None) -> None:
  """Prints a markdown table and, with ``out``, writes it there too (whole or not at all)."""
  text = "\n".join(lines)
  print(text)
  if out:
    report_files.write_text(out, text + "\n")
