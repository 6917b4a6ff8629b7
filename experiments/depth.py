"""Depth of forgetting against the retrain oracle (issue #19): every method, several models.

Usage::

  python -m experiments.depth [--models digits_sigmoid,digits_tanh,...] [--classes 0,6,0+1+2]
      [--seed 0] [--oracle-seeds 1,2] [--methods all]
      [--relearn-steps 200] [--out experiments/results]

For each model of :data:`experiments.depth_models.MODELS` (by default all of them: the
digits sigmoid MLP, the tanh, GELU and ViT models of ``robust_models.py``, a small
BatchNorm CNN on a Fashion-MNIST subset and the LayerNorm-ReLU MLP):
trains it with codes, retrains the oracle of each class set (``baselines`` ``retrain``:
same config, initialisation and seed), forgets each set with each method (every move of
:data:`mnemonic_jax.forgetting.MOVES` under its ``mnemonic-*`` name and the baselines;
the settings of :func:`experiments.compare.method_config`) and runs
:func:`mnemonic_jax.evaluation.depth_report` on (method, oracle, original) and
:func:`~mnemonic_jax.evaluation.depth_goals` on it. Oracles of the ``--oracle-seeds``
(``RetrainConfig(seed=s)``, same codes) give each figure the oracle's seed-to-seed spread.

Everything is cached under ``<out>/cache/depth/``: the trained model and the oracles as
bundles, each run as a JSON file named by the digest of what changes its result (the
training config, the method and its settings, the classes, the seed, the attacks'
settings and the library version), so an interrupted run resumes where it stopped.
After each model the report is rewritten from every cached run of the models done so far
(:mod:`experiments.depth_write`: ``depth.md``, ``depth.csv``, ``depth.json`` and one plot
per model). Within one class set, the oracle's and the original's measurements are made
once and shared by every method's report (:func:`shared_references`).

A class set is written ``3`` or ``0+1+2``; sets are separated by commas.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from unittest import mock

import jax

import mnemonic_jax
from experiments import common, compare, depth_args, depth_models, depth_write, fewshot
from experiments import run_cache, runner_args
from experiments.depth_args import (  # noqa: F401  # Their home before depth_args.
    check_sets, parse_sets, parse_skip, set_name, split_variant)
from mnemonic_jax import baselines, checkpointing, configs, errors, forgetting, workflow
from mnemonic_jax.baselines import UnlearnData
from mnemonic_jax.baselines.retrain import RetrainConfig
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.data import load_dataset
from mnemonic_jax.evaluation import DepthConfig, DepthData, depth_goals, depth_report
from mnemonic_jax.evaluation import depth as depth_lib
from mnemonic_jax.relearning import RelearnConfig

#: The baselines run by default (every registered one but the oracle itself).
BASELINES = ("finetune", "neggrad", "neggrad+", "random-labels", "ssd", "ssd-exact", "fisher",
             "unsir", "scrub", "salun", "l1-sparse", "bad-teacher", "boundary-shrink", "lfssd",
             "jit-lipschitz", "svd-projection")


#: The seeds of the oracles retrained for the spread when ``--oracle-seeds`` is not given.
ORACLE_SEEDS = "1,2"

#: The model whose ``--skip`` of the committed command :data:`LEFT_OUT` explains.
VIT = "digits_vit"

#: Why a method is left out (``--skip``) on :data:`VIT` in the committed command.
LEFT_OUT: dict[str, str] = {
    **{m: ("40 epochs on digits (the digits settings), two fifths of training the ViT's "
           "oracle, once per class set; left out on the ViT to keep the run within the "
           "shared CPU budget") for m in ("finetune", "neggrad+", "random-labels")},
    **{m: ("the slowest baselines on the CNN (fisher 56 s, salun 48 s, l1-sparse 41 s of CPU "
           "a run); left out on the ViT to keep the run within the shared CPU budget")
       for m in ("fisher", "salun", "l1-sparse")},
    **{m: ("about 20 s of CPU a run on the CNN, the next slowest; left out on the ViT to keep "
           "the run within the shared CPU budget") for m in ("scrub", "unsir")}}


def all_methods() -> list[str]:
  """Every forgetting move (its ``mnemonic-*`` name), then :data:`BASELINES`."""
  return [m.baseline for m in forgetting.MOVES.values()] + list(BASELINES)


def skip_reasons(model: str, skipped: Sequence[str]) -> dict[str, str]:
  """Why each method ``--skip`` left out on ``model``: :data:`LEFT_OUT`'s reason on
  :data:`VIT` (the committed command's), ``--skip`` otherwise."""
  return {m: LEFT_OUT[m] if model == VIT and m in LEFT_OUT else "--skip" for m in skipped}


def digest(value: Any) -> str:
  """A short stable digest of a JSON-able value (``repr`` for the rest, e.g. configs)."""
  text = json.dumps(value, sort_keys=True, default=repr)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_seconds() -> float:
  """User + system CPU seconds of this process so far (every thread)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _write_json(path: pathlib.Path, value: Any) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=1) + "\n")
  tmp.replace(path)


# ----------------------------------------------------------------------------------------
# The oracle's and the original's measurements, made once per class set.


@contextlib.contextmanager
def shared_references(*references: Any) -> Iterator[None]:
  """Within the block, :func:`depth_report` measures each of ``references`` only once.

  The report measures every model it is given (``_measure``) and relearns each
  (``_relearn``); the oracle and the original are the same for every method forgetting
  one class set with one key, so their values are kept (by identity of the bundle) and
  handed back. The figures are those of an unshared call (checked once by hand: equal).
  """
  keep = {id(b): b for b in references}
  measured: dict[int, tuple[dict[str, float], Any]] = {}
  relearned: dict[int, dict[str, float]] = {}
  measure, relearn = depth_lib._measure, depth_lib._relearn  # pylint: disable=protected-access

  def shared_measure(bundle, *args, **kwargs):
    if id(bundle) not in keep:
      return measure(bundle, *args, **kwargs)
    if id(bundle) not in measured:
      measured[id(bundle)] = measure(bundle, *args, **kwargs)
    values, features = measured[id(bundle)]
    return dict(values), features

  def shared_relearn(models, values, *args, **kwargs):
    todo = {}
    for name, bundle in models.items():
      if id(bundle) in relearned:
        values[name].update(relearned[id(bundle)])
      else:
        todo[name] = bundle
    if todo:
      relearn(todo, values, *args, **kwargs)
    for name, bundle in todo.items():
      if id(bundle) in keep:
        relearned[id(bundle)] = {k: v for k, v in values[name].items()
                                 if k.startswith("relearn_")}

  with mock.patch.object(depth_lib, "_measure", shared_measure), \
      mock.patch.object(depth_lib, "_relearn", shared_relearn):
    yield


# ----------------------------------------------------------------------------------------
# One model.


@dataclasses.dataclass
class Model:
  """One model of the experiment: its config, trained bundle, data and cache folder."""

  name: str
  config: Any
  train_config: Any
  bundle: Any
  train: Any
  test: Any
  cache: pathlib.Path
  info: dict[str, Any]


def _timed(path: pathlib.Path, make: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
  """``make()`` (a cached value or ``None``) and, for a value, the seconds recorded beside
  ``path`` when it was made; for ``None``, the clock started now and where to record it."""
  record = path.parent / f"{path.name}.seconds.json"
  t0, c0 = time.perf_counter(), cpu_seconds()
  value = make()
  if value is not None:
    return value, (json.loads(record.read_text()) if record.exists() else None)
  return None, {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "record": record}


def load_model(name: str, root: pathlib.Path, seed: int, epochs: int | None) -> Model:
  """Trains (or reads from the cache) one model of :data:`depth_models.MODELS`."""
  config = depth_models.model_config(name, root, epochs)
  train_config = config.copy_and_resolve_references()
  with train_config.unlocked():
    train_config.seed = seed
    del train_config["baselines"]  # How the baselines run is not how the model trains.
  plain = workflow.to_plain(train_config)
  cache = root / f"{name.replace('/', '_').replace(':', '-')}-{digest(plain)}"
  workdir = cache / "original"
  bundle, seconds = _timed(workdir, lambda: workflow.finished_run(train_config, workdir))
  if bundle is None:
    t0, c0 = time.perf_counter(), cpu_seconds()
    bundle = workflow.train(train_config, workdir, progress=False)
    seconds = _record(seconds["record"], t0, c0)
  train, test = (load_dataset(train_config.dataset, s) for s in ("train", "test"))
  logits = workflow.predict(bundle, test.images)
  info = {"model": f"{bundle.model_name} {json.dumps(bundle.model_kwargs)}",
          "data": depth_models.describe(name, train_config), "epochs": train_config.epochs,
          "train_size": len(train), "test_size": len(test),
          "test_accuracy": float(100 * (logits.argmax(-1) == test.labels).mean()),
          "train_cpu_seconds": seconds and seconds["cpu"],
          "baselines": workflow.to_plain(config.baselines)}
  return Model(name, config, train_config, bundle, train, test, cache, info)


def _record(path: pathlib.Path, t0: float, c0: float) -> dict[str, float]:
  seconds = {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}
  _write_json(path, seconds)
  return seconds


def oracle(model: Model, classes: tuple[int, ...], seed: int | None = None
           ) -> tuple[Bundle, dict[str, float] | None]:
  """The retrain oracle of ``classes`` (``seed``: another seed's), cached as a bundle, and
  the seconds its training took (``None``: not recorded)."""
  seed = model.train_config.seed if seed is None else seed
  path = model.cache / f"oracle-{set_name(classes)}" / f"seed{seed}"

  def cached():
    try:
      return checkpointing.load_bundle(path) if path.exists() else None
    except Exception:  # pylint: disable=broad-except  # A stale or damaged cache: retrain.
      return None

  bundle, seconds = _timed(path, cached)
  if bundle is not None:
    return bundle, seconds
  data = UnlearnData.from_training(model.train.images, model.train.labels, classes,
                                   forget=False)
  t0, c0 = time.perf_counter(), cpu_seconds()
  bundle, _ = baselines.unlearn("retrain", model.bundle, classes, data, RetrainConfig(seed=seed))
  checkpointing.save_bundle(path, bundle, force=True)
  return bundle, _record(seconds["record"], t0, c0)


def run_key(model: Model, classes: Sequence[int], method: str, method_config: Any, seed: int,
            depth_config: DepthConfig) -> str:
  """The digest of everything that changes a run's result."""
  return digest({"train": workflow.to_plain(model.train_config), "method": method,
                 "settings": repr(method_config), "classes": list(classes), "seed": seed,
                 "depth": repr(depth_config), "version": mnemonic_jax.__version__})


def cached_record(path: pathlib.Path, code: Mapping[str, str]) -> dict[str, Any] | None:
  """The run recorded at ``path`` if it was made by ``code``
  (:func:`experiments.run_cache.method_code`), else None. A record written before records
  named their code is pinned to ``code`` (the code present when it is first read again) and
  reused until that code changes."""
  if not path.exists():
    return None
  record = json.loads(path.read_text())
  if "code" not in record:
    record["code"] = dict(code)
    _write_json(path, record)
  return record if record["code"] == dict(code) else None


def method_settings(model: Model, method: str) -> Any:
  """The config ``method`` (a name, or a variant of :func:`split_variant`) runs with on
  ``model``: the model's settings for the method, then the variant's overrides."""
  name, overrides = split_variant(method)
  settings = compare.method_config(name, model.config, model.bundle)
  if not overrides:
    return settings
  spec = baselines.get_method(name)
  base = settings if settings is not None else (
      spec.defaults(model.bundle) if spec.defaults is not None else spec.config_cls())
  return dataclasses.replace(base, **overrides)


def run_method(model: Model, classes: Sequence[int], method: str, oracle_bundle: Bundle, seed: int,
               depth_config: DepthConfig) -> dict[str, Any]:
  """One method (or a variant, :func:`split_variant`) on one class set: its depth report and
  goals (cached by :func:`run_key`).

  A method that refuses or fails its own result (a library error: e.g. it diverged) gives
  a record with ``error`` and no report, cached too: it fails the same way each time.
  """
  settings = method_settings(model, method)
  key = run_key(model, classes, method, settings, seed, depth_config)
  path = model.cache / "runs" / f"{key}.json"
  code = run_cache.method_code(split_variant(method)[0])
  record = cached_record(path, code)
  if record is not None:
    return {**record, "cached": True}
  name, overrides = split_variant(method)
  spec = baselines.get_method(name)
  reads = spec.data + "".join(f", {k}={v}" for k, v in overrides.items())
  data = UnlearnData.from_training(model.train.images, model.train.labels, classes,
                                   retain=spec.data in ("retain", "all"),
                                   forget=spec.data in ("forget", "all"))
  t0, c0 = time.perf_counter(), cpu_seconds()
  try:
    forgotten, report = baselines.unlearn(spec.name, model.bundle, classes, data, settings,
                                          key=jax.random.fold_in(jax.random.key(seed), 7))
  except errors.MnemonicJaxError as e:
    line = (str(e).strip().splitlines() or [""])[0]
    record = {"model": model.name, "method": method, "classes": list(classes), "seed": seed,
              "data": reads, "settings": repr(settings),
              "error": f"{type(e).__name__}: {line}", "method_cpu_seconds": cpu_seconds() - c0,
              "depth_cpu_seconds": 0.0, "version": mnemonic_jax.__version__, "code": code}
    _write_json(path, record)
    return {**record, "cached": False}
  method_wall, method_cpu = time.perf_counter() - t0, cpu_seconds() - c0
  t0, c0 = time.perf_counter(), cpu_seconds()
  depth = depth_report(forgotten, oracle_bundle, model.bundle,
                       DepthData.of(model.train, model.test), classes, config=depth_config,
                       key=jax.random.key(seed))
  record = {"model": model.name, "method": method, "classes": list(classes), "seed": seed,
            "data": report.details.get("data_read", reads), "examples": report.examples,
            **({"read": report.details["read"]} if "read" in report.details else {}),
            "settings": repr(settings), "report": depth.to_dict(),
            "goals": [g._asdict() for g in depth_goals(depth)],
            "method_seconds": report.seconds, "method_compile_seconds": report.compile_seconds,
            "method_wall_seconds": method_wall, "method_cpu_seconds": method_cpu,
            "depth_wall_seconds": time.perf_counter() - t0, "depth_cpu_seconds": cpu_seconds() - c0,
            "version": mnemonic_jax.__version__, "code": code}
  _write_json(path, record)
  return {**record, "cached": False}


def run_spread(model: Model, classes: Sequence[int], oracle_bundle: Bundle,
               extra: Sequence[Bundle], seed: int,
               seeds: Sequence[int], depth_config: DepthConfig) -> dict[str, Any] | None:
  """The oracle's seed-to-seed spread of every figure (cached): ``{figure: std}``."""
  if not extra:
    return None
  key = digest({"train": workflow.to_plain(model.train_config), "classes": list(classes),
                "seed": seed, "seeds": list(seeds), "depth": repr(depth_config),
                "version": mnemonic_jax.__version__})
  path = model.cache / "spread" / f"{key}.json"
  if path.exists():
    return json.loads(path.read_text())
  c0 = cpu_seconds()
  # The oracle is measured as itself (the spread is the oracles' own), which depth_report's
  # own check refuses as an unlearned model: the references are checked here instead.
  depth_lib.check_references(
      model.test, classes, batch_size=depth_config.batch_size, original=("original", model.bundle),
      oracles=[("oracle", oracle_bundle), *((f"oracle seed {s}", b) for s, b in zip(seeds, extra))])
  report = depth_report(oracle_bundle, oracle_bundle, model.bundle,
                        DepthData.of(model.train, model.test), classes, config=depth_config,
                        key=jax.random.key(seed), oracle_seeds=list(extra),
                        check_references_first=False)
  record = {"classes": list(classes), "seeds": [seed, *seeds],
            "spread": {f.name: f.spread for f in report.figures},
            "cpu_seconds": cpu_seconds() - c0}
  _write_json(path, record)
  return record


def run_model(name: str, args: argparse.Namespace, root: pathlib.Path,
              depth_config: DepthConfig) -> dict[str, Any]:
  """Every class set and method on one model; prints one line per run."""
  t0, c0 = time.perf_counter(), cpu_seconds()
  model = load_model(name, root, args.seed, args.epochs)
  print(f"[{name}] {model.info['model']}: test accuracy {model.info['test_accuracy']:.1f}%",
        flush=True)
  runs, spreads, oracle_seconds, failures = [], [], [], []
  skipped = args.skip.get(name, [])
  seeds = [s for s in args.oracle_seeds if s != args.seed
           and (args.spread_models is None or name in args.spread_models.split(","))]
  sets = parse_sets(args.classes)
  check_sets(sets, model.bundle.num_classes, name)
  for classes in sets:
    main_oracle, seconds = oracle(model, classes)
    oracle_seconds.append(seconds)
    extra = []
    for s in seeds:
      bundle, seconds = oracle(model, classes, s)
      extra.append(bundle)
      oracle_seconds.append(seconds)
    with shared_references(main_oracle, model.bundle, *extra):
      spread = run_spread(model, classes, main_oracle, extra, args.seed, seeds, depth_config)
      if spread is not None:
        spreads.append(spread)
      for method in (m for m in args.methods if m not in skipped):
        try:
          record = run_method(model, classes, method, main_oracle, args.seed, depth_config)
        except Exception as e:  # pylint: disable=broad-except  # Reported, not cached.
          line = str(e).strip().splitlines()
          record = {"method": method, "classes": list(classes), "cached": False,
                    "error": f"{type(e).__name__}: {line[0] if line else ''}"}
          traceback.print_exc()
        if "error" in record:
          failures.append({k: record[k] for k in ("method", "classes", "error",
                                                  "method_cpu_seconds") if k in record})
          print(f"[{name}] {method} {set_name(classes)}: FAILED {record['error']}"
                + (" (cached)" if record["cached"] else ""), flush=True)
          continue
        runs.append(record)
        passed = [g["passed"] for g in record["goals"] if g["passed"] is not None]
        print(f"[{name}] {method} {set_name(classes)}: goals {sum(passed)}/{len(passed)}"
              + (" (cached)" if record["cached"] else
                 f" (method {record['method_cpu_seconds']:.1f} s, depth "
                 f"{record['depth_cpu_seconds']:.1f} s CPU)"), flush=True)
  oracle_cpu = [s["cpu"] for s in oracle_seconds if s is not None]
  total = ((model.info["train_cpu_seconds"] or 0) + sum(oracle_cpu)
           + sum(r["method_cpu_seconds"] + r["depth_cpu_seconds"] for r in runs)
           + sum(f.get("method_cpu_seconds") or 0 for f in failures)
           + sum(s.get("cpu_seconds", 0) for s in spreads))
  return {"name": name, **model.info, "oracle_seeds": seeds,
          "skipped": skip_reasons(name, skipped),
          "runs": runs, "spreads": spreads,
          "failures": failures,
          "oracle_cpu_seconds": oracle_cpu, "total_cpu_seconds": total,
          "wall_seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0}


def description() -> str:
  """The ``--help`` description: what a run without options runs, counted from the code."""
  return (f"{__doc__.splitlines()[0]} Without options: {len(all_methods())} methods on the "
          f"{len(depth_models.MODELS)} models of experiments.depth_models "
          f"({', '.join(depth_models.MODELS)}), each against its retrain oracle and "
          f"{len(common.seed_list(ORACLE_SEEDS))} more oracles (--oracle-seeds) per class set.")


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  """Runs the experiment (see the module docstring); returns the path of ``depth.md``."""
  parser = common.RunnerParser(prog="experiments.depth", description=description())
  parser.add_argument("--models", "--config", default=",".join(depth_models.MODELS),
                      help=f"comma-separated: of the {len(depth_models.MODELS)} models "
                      "experiments.depth_models defines, or config specs as 'mnemonic-jax "
                      "train' takes them (digits_mlp, FILE:VARIANT)")
  parser.add_argument("--classes", default="0,6,0+1+2",
                      help="class sets: '3' or '0+1+2', comma-separated")
  parser.add_argument("--seed", type=common.positive_int(0, configs.MAX_SEED), default=0,
                      help="the model's and oracle's seed")
  parser.add_argument("--oracle-seeds", type=common.seed_list, default=ORACLE_SEEDS,
                      help="seeds of extra oracles for the spread, each retrained once per "
                      "class set and model ('' for none)")
  parser.add_argument("--spread-models", default=None,
                      help="the models that get the extra oracles (default: every model)")
  parser.add_argument("--skip", action="append", default=[], metavar="MODEL=METHOD,...",
                      help="methods left out on one model (repeatable)")
  parser.add_argument("--methods", default="all",
                      help=f"'all' (the {len(all_methods())} of experiments.depth: every move "
                      "and baseline) or comma-separated methods of mnemonic_jax.baselines (or "
                      "experiments.fewshot's fewshot-reassign); "
                      "METHOD@FIELD=VALUE[@...] runs a variant of its config, e.g. "
                      "svd-projection@samples=10")
  parser.add_argument("--epochs", type=common.positive_int(1, configs.MAX_STEPS), default=None,
                      help="override every model's epochs")
  parser.add_argument("--relearn-steps", type=common.positive_int(0, configs.MAX_STEPS),
                      default=200,
                      help="the most relearning steps per model (0: no relearning attack)")
  parser.add_argument("--out", type=common.out_path, default="runs/experiments",
                      help="where the report and the cache go (default: the scratch folder)")
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  models = [m for m in args.models.split(",") if m]
  args.methods = all_methods() if args.methods == "all" else args.methods.split(",")
  fewshot.register_if_named(args.methods)  # An experiment's method, only when named.
  depth_args.check_methods(args.methods, all_methods())
  depth_args.check_models(models)
  args.skip = parse_skip(args.skip, models, args.methods)
  spread = [m for m in (args.spread_models or "").split(",") if m]
  if args.spread_models is not None and (not spread or set(spread) - set(models)):
    common.fail(f"--spread-models {args.spread_models!r}: name models of --models "
                f"({','.join(models)})", "experiments.depth")
  out = pathlib.Path(args.out)
  root = out / "cache" / "depth"
  depth_args.check_classes(parse_sets(args.classes), models, root)  # Before any training.
  depth_config = DepthConfig(relearn=RelearnConfig(max_steps=args.relearn_steps))
  result = {"command": runner_args.command_line("experiments.depth", argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": common.machine_line(), "load_start": os.getloadavg(),
            "sets": parse_sets(args.classes), "seed": args.seed, "oracle_seeds": args.oracle_seeds,
            "methods": args.methods,
            "left_out": {m: "not in --methods" for m in all_methods()
                         if m not in args.methods}, "version": mnemonic_jax.__version__,
            "depth_config": {k: v for k, v in vars(depth_config).items() if k != "relearn"}
            | {"relearn_max_steps": args.relearn_steps}, "models": []}
  t0, c0 = time.perf_counter(), cpu_seconds()
  for name in models:
    result["models"].append(run_model(name, args, root, depth_config))
    result.update(load_end=os.getloadavg(), wall_seconds=time.perf_counter() - t0,
                  cpu_seconds=cpu_seconds() - c0)
    depth_write.write_all(result, out)
    print(f"[{name}] done; wrote {out / 'depth.md'}", flush=True)
  return out / "depth.md"


if __name__ == "__main__":
  common.run_command(main, "experiments.depth")
