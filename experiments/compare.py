"""Unlearning methods side by side, read against the retrain oracle (``table --methods``).

Usage::

  python -m experiments.table --config digits_mlp --classes all \\
      --seeds 3 --methods retrain,finetune,neggrad,ssd,fisher,unsir,mnemonic,mnemonic-auto \\
      [--inputs trained-codes,fresh-codes,zeros,one-image] [--data all] [--out DIR]

For each seed, the model is trained once (cached, as in :mod:`experiments.table`); then each
class (and the ``--multi`` set) is forgotten from it by every method of ``--methods``
through :func:`mnemonic_jax.baselines.unlearn`, with the data the method needs (the full
training split, divided into retain and forget sets). Each result is evaluated (A_R, E_F,
train accuracies, the three MIAs) and its **relearning time** measured
(:mod:`mnemonic_jax.relearning`: fine-tune on 1% of the forgotten classes' training
images mixed with retained ones; steps until their test accuracy is back to 50% and 90%
of the original). ``retrain`` is the oracle: every other method is reported as its
distance to the oracle of the same seed and classes.

``--depth`` also attacks every method's forgetting with the depth suite of
:mod:`mnemonic_jax.evaluation` against the oracle (:mod:`experiments.compare_depth`): the
report gains a depth section (each attack's value and gap to the oracle per method, the
depth goals met and which methods meet them, a figure of the gaps and one of the gaps
against seconds) and the CSV the depth columns. It is slow (the
suite fits a probe and relearns on every model), so it is off by default.

``--inputs`` adds the codes ablation: the ``mnemonic`` methods again, their Fishers and
code scores computed from other inputs (:func:`mnemonic_jax.baselines.mnemonic.fisher_inputs`).

``--sweep`` adds, for every method of ``--methods`` that registers a ladder of settings
(its published defaults first; :func:`mnemonic_jax.baselines.base.sweep`), the variant
``<method>:sweep``: the strongest rung whose accuracy on retained training examples
(up to :data:`SWEEP_HELD_OUT` of them, drawn at random; the digits' retained examples
are fewer, so all are read: the run records the count) stays within one point of the trained
model's; chosen on retained data only, never on a forgotten or a test image. Its seconds are
those of every rung (compilation apart); its data adds the retained examples the choice read.

Every run is one JSON file in ``<out>/runs/<name>/methods/``, keyed on everything that
changes its result (:func:`method_key`: the config but its bookkeeping fields, the seed,
the classes, the method, its settings with their defaults, ``--inputs``, ``--data``,
whether and how relearning is measured, the caps, the library version); a rerun reuses a
run only on an equal key and says how many it reused and computed (a file written before
runs recorded their key only with ``--reuse-keyless``). The report is
``<out>/<name>_baselines.{md,csv,json}`` (``--report`` names another) with plots
``<name>_baselines_*.png``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import pathlib
import sys
import types
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from experiments import common, compare_depth, report_files, run_cache
from experiments.compare_report import (  # noqa: F401
    DATA_FREE, GOAL, MIAS, ORACLE, SWEEP_HELD_OUT, write_report)
from mnemonic_jax import baselines, errors, relearning, workflow
from mnemonic_jax.baselines import mnemonic as mnemonic_lib, ssd
from mnemonic_jax.data import load_dataset
from mnemonic_jax.evaluation import DepthData



#: The ``inputs`` slot of a ``<method>:sweep`` run (its choice reads at most
#: :data:`SWEEP_HELD_OUT` retained training examples: all of them on a smaller split).
SWEEP = "sweep"
SWEEP_TOLERANCE = 1.0


class UsageError(ValueError):
  """Bad ``--methods`` / ``--inputs`` / ``--data``: one line, exit 2, nothing written."""


def parse_methods(methods: str, inputs: str, data: str, depth: bool = False
                  ) -> tuple[list[str], list[str]]:
  """Checks ``--methods``, ``--inputs``, ``--data`` and ``--depth`` before anything is
  written.

  Returns:
    ``(methods, inputs)`` as lists.

  Raises:
    UsageError: an empty or unknown method, unknown inputs, an unknown data kind, a method
      that needs data ``--data`` does not give, ablation inputs without a mnemonic method,
      or ``--depth`` without the oracle (``retrain``).
  """
  names = [m.strip() for m in methods.split(",") if m.strip()]
  valid = baselines.available_methods()
  if not names:
    raise UsageError(f"--methods is empty; choose from {','.join(valid)}")
  unknown = [m for m in names if m not in valid]
  if unknown:
    raise UsageError(f"unknown --methods {','.join(unknown)}; choose from {','.join(valid)}")
  if len(set(names)) != len(names):  # Each would be run, and averaged, twice.
    raise UsageError(f"--methods names a method twice ({methods}); give each once")
  if data not in baselines.DATA_KINDS:
    raise UsageError(f"unknown --data {data!r}; choose from {','.join(baselines.DATA_KINDS)}")
  allowed = {"none": set(), "forget": {"forget"}, "retain": {"retain"},
             "all": {"retain", "forget"}}
  for m in names:
    needs = allowed[baselines.get_method(m).data]
    if not needs <= allowed[data]:
      raise UsageError(f"{m} needs the {baselines.get_method(m).data} training data but "
                       f"--data {data} withholds it; drop {m} or pass --data all")
  kinds = [k.strip() for k in inputs.split(",") if k.strip()]
  bad = [k for k in kinds if k not in mnemonic_lib.INPUTS]
  if bad or not kinds:
    raise UsageError(f"unknown --inputs {','.join(bad) or repr(inputs)}; choose from "
                     f"{','.join(mnemonic_lib.INPUTS)}")
  if set(kinds) - {"trained-codes"} and not set(names) & set(DATA_FREE):
    raise UsageError(f"--inputs applies to the data-free mnemonic methods; add one of "
                     f"{','.join(DATA_FREE)} to --methods")
  if "one-image" in kinds and data not in ("all",):
    raise UsageError("--inputs one-image reads one training image per class; pass --data all")
  if depth and ORACLE not in names:
    raise UsageError(f"--depth attacks each method against the retrain oracle; add {ORACLE} "
                     "to --methods")
  return names, kinds


def section_key(method: str) -> str:
  """The other spelling ``config.baselines`` accepts for ``method``: ``-`` as ``_``, ``+`` as
  ``_plus`` (``neggrad+`` -> ``neggrad_plus``), so a section can be written with attribute
  access (``config.baselines.neggrad_plus.epochs = 40``)."""
  return method.replace("-", "_").replace("+", "_plus")


def baselines_section(config) -> dict[str, dict[str, Any]]:
  """``config.baselines`` checked, keyed by registered method name.

  The section's keys are methods of :func:`mnemonic_jax.baselines.available_methods`,
  as registered (``ssd-exact``, ``neggrad+``) or as :func:`section_key` spells them
  (``ssd_exact``, ``neggrad_plus``); each value maps fields of that method's config to
  values.

  Returns:
    ``{method: {field: value}}`` (empty without a section).

  Raises:
    UsageError: the section or a value is not a group of fields, a key is not a registered
      method (the message names the closest one), one method is given under both
      spellings, or a field is not one of its method's config.
  """
  section = config.get("baselines") if hasattr(config, "get") else None
  if section is None:
    return {}
  if not hasattr(section, "keys"):
    raise UsageError(f"config.baselines must map method names to their settings, got "
                     f"{section!r:.60}")
  valid = baselines.available_methods()
  spelt = {**{section_key(m): m for m in valid}, **{m: m for m in valid}}
  found: dict[str, dict[str, Any]] = {}
  for key in section.keys():
    method = spelt.get(key)
    if method is None:
      close = difflib.get_close_matches(str(key), list(spelt), n=1)
      hint = f"did you mean {spelt[close[0]]!r}? " if close else ""
      raise UsageError(f"config.baselines has a key {key!r} that is no method; {hint}"
                       f"its keys are methods of --methods: {','.join(valid)}")
    if method in found:
      raise UsageError(f"config.baselines sets {method} twice ({method!r} and "
                       f"{section_key(method)!r}); keep one")
    fields = section[key]
    if not hasattr(fields, "keys"):
      raise UsageError(f"config.baselines[{key!r}] must map {method}'s fields to values, got "
                       f"{fields!r:.60}")
    known = [f.name for f in dataclasses.fields(baselines.get_method(method).config_cls)]
    for field in fields.keys():
      if field not in known:
        close = difflib.get_close_matches(str(field), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"config.baselines[{key!r}] sets {field!r}, which {method} does not "
                         f"have; {hint}its fields: {','.join(known)}")
    found[method] = dict(fields)
  return found


def method_config(name: str, config, bundle=None) -> Any:
  """The method's config: its defaults, overridden by ``config.baselines[<name>]``.

  The section is keyed by the method's registered name (``config.baselines['ssd-exact']``)
  or :func:`section_key`'s spelling of it (``config.baselines.neggrad_plus.epochs = 40``);
  see :func:`baselines_section`. The ``mnemonic-*`` methods' config is
  their move object (:mod:`mnemonic_jax.forgetting.moves`): ``mnemonic-auto`` gets the
  runner's rule (:func:`experiments.common.rule_from_config`) unless the section sets one;
  ``mnemonic`` (Algorithm 2) starts from the bundle's lambdas.

  Args:
    name: a method of :func:`mnemonic_jax.baselines.available_methods`.
    config: the runner's config.
    bundle: the bundle forgotten from; needed by methods whose defaults depend on it
      (``mnemonic``) when the section overrides them.

  Returns:
    The config object, or ``None`` for the method's own defaults of the bundle.

  Raises:
    UsageError: a bad ``baselines`` section (:func:`baselines_section`).
    BadRequest, BadRequestType: a value the method's config refuses.
  """
  spec = baselines.get_method(name)
  overrides = dict(baselines_section(config).get(name, {}))
  if name == "mnemonic-auto":
    overrides.setdefault("rule", common.rule_from_config(config))
  if spec.defaults is not None:
    if not overrides:
      return None  # baselines.unlearn takes spec.defaults(bundle).
    return dataclasses.replace(spec.defaults(bundle), **overrides)
  return dataclasses.replace(spec.config_cls(), **overrides)


def check_settings(config, methods: Sequence[str]) -> None:
  """Checks the ``baselines`` section and every setting of ``methods`` before anything is
  trained: each key a registered method, each field one of its config, each value one its
  config takes (:mod:`mnemonic_jax.baselines.options`).

  Raises:
    UsageError: one line naming the method, the field and the value.
  """
  section = baselines_section(config)
  holder = types.SimpleNamespace(config=config)  # What the methods' defaults read.
  for name in dict.fromkeys([*section, *methods]):
    try:
      method_config(name, config, holder)
    except (errors.BadRequest, TypeError, ValueError) as e:
      if isinstance(e, UsageError):
        raise
      raise UsageError(f"config.baselines: {' '.join(str(e).split())}") from e


def check_data_bounds(config, methods: Sequence[str], forget_sets: Sequence[Sequence[int]],
                      labels: np.ndarray) -> None:
  """Checks the settings that are bounded by the data before anything is trained.

  ``ssd-exact`` refuses ``alpha >= N / N_f`` (:class:`mnemonic_jax.baselines.ssd.
  SSDExactConfig`; ``N`` training examples, ``N_f`` of them forgotten): that bound is read
  here for every forget set from the training labels, so the run is refused before the
  model is trained rather than by the method after it.

  Raises:
    UsageError: the set with the smallest bound, and the bound.
  """
  if "ssd-exact" not in methods:
    return
  alpha = method_config("ssd-exact", config).alpha
  if alpha is None:
    return
  for classes in forget_sets:
    try:
      ssd.exact_alpha(alpha, len(labels), int(np.isin(labels, classes).sum()),
                      f" when forgetting classes {','.join(map(str, classes))}")
    except errors.BadRequest as error:
      raise UsageError(f"config.baselines: {error}") from None


def method_settings(name: str, plain: dict[str, Any]) -> Any:
  """The settings ``name`` runs with under the config ``plain``, defaults included.

  What :func:`method_config` gives (the ``baselines`` section over the method's defaults;
  ``mnemonic``: the config's lambdas, which the trained bundle carries), as plain values.

  Args:
    name: a method of :func:`mnemonic_jax.baselines.available_methods`.
    plain: :func:`experiments.run_cache.config_key` of the runner's config.
  """
  spec = baselines.get_method(name)
  holder = types.SimpleNamespace(config=plain)  # What the method's defaults read.
  try:
    config = method_config(name, ml_collections.ConfigDict(plain), holder)
    if config is None:
      config = spec.defaults(holder) if spec.defaults is not None else spec.config_cls()
  except (errors.BadRequest, TypeError, ValueError) as e:  # It will fail when run, too.
    return {"unavailable": str(e)}
  return run_cache.settings(config)


def method_key(plain: dict[str, Any], classes: Sequence[int], method: str, inputs: str,
               data: str, relearn: bool, train_cap: int, mia_cap: int,
               version: str = run_cache.VERSION,
               relearn_config: dict[str, Any] | None = None) -> dict[str, Any]:
  """Everything that changes the result of one run of the comparison.

  The config enters twice: its training fields (the model forgotten from) and the
  method's settings read from it (:func:`method_settings`: its ``baselines`` section, the
  lambdas of ``mnemonic``, the rule of ``mnemonic-auto``); so another setting of one
  method computes that method's runs again, not the others'.

  Args:
    plain: :func:`experiments.run_cache.config_key` of the config, seed set.
    classes: the forgotten set.
    method: the method (``none``: the model before forgetting).
    inputs: the Fisher inputs of the codes ablation.
    data: ``--data``.
    relearn: whether relearning is measured.
    train_cap: training examples evaluated.
    mia_cap: the attacks' cap.
    version: the library version.
    relearn_config: the relearning settings (default: ``RelearnConfig()``).

  Returns:
    The key (a plain dict).
  """
  none = method == "none"
  if relearn and not none and relearn_config is None:
    relearn_config = run_cache.canonical(relearning.RelearnConfig())
  trained = {k: v for k, v in plain.items() if k not in run_cache.FORGET_FIELDS}
  key = {"runner": "experiments.table --methods", "version": version, "config": trained,
         "classes": [int(c) for c in classes], "method": method,
         "inputs": "trained-codes" if none else inputs,
         "settings": None if none else method_settings(method, plain),
         "data": None if none else data,
         "relearn": relearn_config if relearn and not none else None,
         "train_cap": train_cap, "mia_cap": mia_cap}
  if not none:  # The method's source: a changed method is run again (run_cache, Code).
    key[run_cache.CODE_FIELD] = run_cache.method_code(method)
  if inputs == SWEEP and not none:  # The ladder and the choice's settings.
    key["settings"] = run_cache.canonical(baselines.get_method(method).config_cls())
    key["sweep"] = {"ladder": run_cache.canonical(list(baselines.get_method(method).sweep)),
                    "held_out": SWEEP_HELD_OUT, "tolerance": SWEEP_TOLERANCE}
  return key


def legacy_method_key(spec: str, out: pathlib.Path, name: str, record: dict[str, Any],
                      train_cap: int, mia_cap: int) -> dict[str, Any] | None:
  """The key a run file written before keys was computed with, or None if it cannot tell.

  The config is :func:`experiments.common.legacy_config`'s (its ``baselines`` section: the
  spec's); ``--data`` was ``all`` (no committed command set it); relearning was measured
  if the record has it, with the recorded ``max_steps`` and the other settings' defaults;
  the caps are the parser's defaults.
  """
  try:
    seed, classes, method = int(record["seed"]), record["classes"], record["method"]
    inputs = record.get("inputs", "trained-codes")
  except (KeyError, TypeError, ValueError):
    return None
  rl = record.get("relearn")
  relearn_config = None
  if isinstance(rl, dict):
    relearn_config = {**run_cache.canonical(relearning.RelearnConfig()),
                      "max_steps": rl.get("max_steps")}
  plain = common.legacy_config(spec, out / "cache" / name, f"seed{seed}", seed)
  return method_key(plain, classes, method, inputs, "all", relearn_config is not None,
                    train_cap, mia_cap, run_cache.LEGACY_VERSION, relearn_config)


def variant(method: str, inputs: str) -> str:
  """The run's label: the method, with ``@inputs`` for the codes ablation, ``:sweep`` for
  its swept settings."""
  if inputs == SWEEP:
    return f"{method}:{SWEEP}"
  return method if inputs == "trained-codes" else f"{method}@{inputs}"


def parse_sweep(text: str | None, methods: Sequence[str]) -> bool | list[str]:
  """``--sweep``: None (not given) -> False; ``"all"`` (given bare) -> True; a comma list
  -> those methods.

  Raises:
    UsageError: a name not among ``methods``, or one without a ladder; a bare ``--sweep``
      when no method of ``methods`` has one (it would sweep nothing).
  """
  if text is None:
    return False
  laddered = [m for m in methods if baselines.get_method(m).sweep]
  if text == "all":
    if not laddered:
      raise UsageError(f"--sweep: no method of --methods registers a ladder of settings "
                       f"({','.join(methods)}); drop --sweep")
    return True
  names = [n for n in text.split(",") if n]
  wrong = [n for n in names if n not in methods or not baselines.get_method(n).sweep]
  if wrong or not names:
    raise UsageError(f"--sweep {text!r}: name methods of --methods that register a ladder "
                     f"({','.join(laddered) or 'none'})")
  return names


def plan_variants(methods: Sequence[str], inputs: Sequence[str],
                  sweep: bool | Sequence[str] = False) -> list[tuple[str, str]]:
  """``(method, inputs)`` pairs to run: every method, with ``sweep`` the swept settings of
  those that register a ladder (each after its defaults; ``sweep`` True: every method, a
  sequence: those of its names), then the ablation of the mnemonic ones."""
  swept = set(methods) if sweep is True else set(sweep or ())
  pairs = []
  for m in methods:
    pairs.append((m, "trained-codes"))
    if m in swept and baselines.get_method(m).sweep:
      pairs.append((m, SWEEP))
  pairs += [(m, k) for k in inputs if k != "trained-codes" for m in methods if m in DATA_FREE]
  return pairs


def _swept(method: str, bundle, classes: Sequence[int], data, train_full, key):
  """``(bundle, report)`` of :func:`mnemonic_jax.baselines.base.sweep` on ``method``'s
  ladder; the choice reads :data:`SWEEP_HELD_OUT` retained training examples, or every one
  if there are fewer (the run records the count as ``examples["held_out"]``)."""
  retained = np.flatnonzero(~np.isin(train_full.labels, classes))
  pick = np.sort(np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), retained))[
      :SWEEP_HELD_OUT])
  held_out = baselines.Split(train_full.images[pick], train_full.labels[pick])
  new, report = baselines.base.sweep(method, bundle, classes, data, held_out,
                                     tolerance=SWEEP_TOLERANCE, key=key)
  report = dataclasses.replace(
      report, seconds=float(report.details["sweep_seconds"]),
      data={"none": "retain", "forget": "all"}.get(report.data, report.data),
      examples={**report.examples, "held_out": int(len(pick))},
      details={**report.details, "chosen_seconds": report.seconds})
  return new, report


def forget_variant(ctx, classes: Sequence[int], method: str, inputs: str, config, train_full,
                   data_kind: str):
  """``(bundle, UnlearnReport)``: ``classes`` forgotten from ``ctx.bundle`` by ``method``
  (its Fishers from ``inputs`` for the codes ablation), reading the data of ``data_kind``."""
  bundle = ctx.bundle
  key = jax.random.fold_in(jax.random.key(ctx.seed), 7)
  data = baselines.UnlearnData.from_training(
      train_full.images, train_full.labels, classes,
      retain=data_kind in ("retain", "all"), forget=data_kind in ("forget", "all"))
  if inputs == SWEEP:
    return _swept(method, bundle, classes, data, train_full, key)
  source = bundle
  if inputs != "trained-codes":
    fake = mnemonic_lib.fisher_inputs(inputs, bundle, jax.random.fold_in(key, 1),
                                      baselines.Split(train_full.images, train_full.labels))
    source = bundle.replace(codes=np.asarray(fake))
  new, report = baselines.unlearn(method, source, classes, data,
                                  method_config(method, config, bundle), key=key)
  return new.replace(codes=bundle.codes), report


def run_method(ctx, classes: Sequence[int], method: str, inputs: str, config, test,
               train_full, eval_images, eval_labels, mia_cap: int, relearn: bool,
               data_kind: str) -> tuple[dict[str, Any], Any]:
  """Forgets ``classes`` from ``ctx.bundle`` with ``method``; evaluated, attacked, relearned.

  Returns:
    ``(record, bundle)``: the run's record and the forgotten bundle.
  """
  new, report = forget_variant(ctx, classes, method, inputs, config, train_full, data_kind)
  record: dict[str, Any] = {
      "seed": ctx.seed, "classes": list(classes), "method": method, "inputs": inputs,
      "variant": variant(method, inputs), "data": report.data, "seconds": report.seconds,
      "compile_seconds": report.compile_seconds, "steps": report.steps,
      "examples": report.examples, "details": report.details}
  record.update(common.measure(ctx, new, classes, test, eval_images, eval_labels, mia_cap))
  record["relearn"] = relearn_record(ctx, new, classes, test, train_full) if relearn else None
  return record, new


def relearn_record(ctx, bundle, classes, test, train_full) -> dict[str, Any]:
  """Relearning time of ``bundle`` on the forgotten ``classes`` (see module docstring)."""
  key = jax.random.fold_in(jax.random.key(ctx.seed), 11)
  split = baselines.UnlearnData.from_training(train_full.images, train_full.labels, classes)
  in_forget = np.isin(test.labels, classes)
  probe = baselines.Split(workflow.prepare_images(test.images[in_forget], bundle.input_shape),
                          test.labels[in_forget])
  reference = 100 * float(np.mean(
      np.argmax(ctx.test_logits[in_forget], -1) == test.labels[in_forget]))
  sample = relearning.relearn_sample(split.forget, key=jax.random.fold_in(key, 0))
  config = relearning.RelearnConfig()
  result = relearning.relearn_steps(bundle, sample, split.retain, probe, reference, config,
                                    key=jax.random.fold_in(key, 1))
  return {**result.to_dict(), "max_steps": config.max_steps}


# ----------------------------------------------------------------------------------------
# Main.


def run(args, config, name: str, command: str, report: str | None = None) -> pathlib.Path:
  """``table --methods``: plan, run (skipping cached runs), report.

  ``name`` names the runs' folders (keyed on the config), ``report`` the report (default
  ``name``; :func:`experiments.common.run_name` with the command's overrides)."""
  methods, inputs = parse_methods(args.methods, args.inputs, args.data, args.depth)
  variants = plan_variants(methods, inputs, parse_sweep(getattr(args, "sweep", None), methods))
  test = load_dataset(config.dataset, "test", data_dir=config.get("data_dir"))
  num_classes = test.info.num_classes
  forget_sets = common.forget_sets_of(args, num_classes)
  seeds = [int(config.seed) + k for k in range(args.seeds)]
  state: dict[str, Any] = {}
  try:  # Before anything is trained or written.
    check_settings(config, methods)
    if "ssd-exact" in methods:
      state["train"] = load_dataset(config.dataset, "train", data_dir=config.get("data_dir"))
      check_data_bounds(config, methods, forget_sets, state["train"].labels)
  except UsageError as e:
    common.fail(str(e))
  out = pathlib.Path(args.out)
  runs_dir = out / "runs" / name / "methods"
  runs_dir.mkdir(parents=True, exist_ok=True)
  plan = [(s, cs, m, k) for s in seeds for cs in forget_sets
          for m, k in [("none", "trained-codes"), *variants]]
  names = [variant(m, k) for m, k in variants]
  key_of = lambda seed, cs, method, kind: method_key(
      run_cache.config_key(config, seed), cs, method, kind, args.data, not args.no_relearn,
      args.train_cap, args.mia_cap)

  cache = run_cache.RunCache(runs_dir, common.machine_line(),
                             reuse_keyless=getattr(args, "reuse_keyless", False))
  legacy = (lambda record: legacy_method_key(args.config, out, name, record, common.TRAIN_CAP,
                                             common.MIA_CAP))
  depth_store = run_cache.RunCache(out / "runs" / name / "depth", common.machine_line())
  dcfg = (compare_depth.depth_config(args.depth_relearn_steps,
                                     getattr(args, "depth_probe_per_class", None))
          if args.depth else None)
  records, depth_records, made = [], [], {}

  def context(seed):
    """The seed's context (trained or cached model, its predictions) and training data."""
    if "train" not in state:  # Loaded already where a setting's bound reads its labels.
      state["train"] = load_dataset(config.dataset, "train", data_dir=config.get("data_dir"))
    if "idx" not in state:
      state["idx"] = common.train_subset(len(state["train"]), args.train_cap)
    train = state["train"]
    if state.get("seed") != seed:
      state["ctx"] = common.seed_context(config, seed, out, name, test,
                                         train.images[state["idx"]], not args.no_progress)
      state["train_full"] = baselines.Split(
          workflow.prepare_images(train.images, state["ctx"].bundle.input_shape), train.labels)
      state["seed"] = seed
    return state["ctx"], train, state["idx"], state["train_full"]

  def depth_pass(seed):
    """The depth records of ``seed`` (after all its method runs)."""
    depth_records.extend(compare_depth.seed_pass(
        seed=seed, forget_sets=forget_sets, variants=names,
        key_of=lambda cs, v: key_of(seed, cs, *compare_depth.split_variant(v)), made=made,
        context=lambda: (context(seed)[0], DepthData.of(state["train"], test)),
        forget=lambda ctx, cs, m, k: forget_variant(ctx, cs, m, k, config,
                                                    context(seed)[3], args.data)[0],
        store=depth_store, out=out, name=name, config=dcfg))
    made.clear()

  pending = None  # The seed whose depth pass is due once all its method runs are done.
  bar = tqdm(plan, desc=f"{name} methods", unit="run", disable=args.no_progress)
  for seed, cs, method, kind in bar:
    if dcfg is not None and pending not in (None, seed):
      depth_pass(pending)
    pending = seed
    stem = common.run_key(seed, cs, variant(method, kind))
    key = key_of(seed, cs, method, kind)
    bar.set_postfix_str(stem)
    cached = cache.get(stem, key, legacy)
    if cached is not None:
      records.append(cached)
      continue
    ctx, train, idx, train_full = context(seed)
    if method == "none":
      record = {"seed": seed, "classes": list(cs), "method": "none", "inputs": kind,
                "variant": "none", "data": "none", "seconds": 0.0, "compile_seconds": 0.0,
                "steps": 0, "examples": {}, "details": {}, "relearn": None}
      record.update(common.measure(ctx, ctx.bundle, cs, test, train.images[idx],
                                  train.labels[idx], args.mia_cap,
                                  logits=(ctx.test_logits, ctx.train_logits)))
    else:
      record, new = run_method(ctx, cs, method, kind, config, test, train_full,
                               train.images[idx], train.labels[idx], args.mia_cap,
                               not args.no_relearn, args.data)
      if dcfg is not None:
        made[(tuple(cs), variant(method, kind))] = new
        if method == compare_depth.ORACLE:
          compare_depth.save_oracle(compare_depth.oracle_dir(out, name, stem, key), new)
    record["train_seconds"] = ctx.train_seconds
    records.append(cache.put(stem, key, json.loads(json.dumps(
        record, default=run_cache.json_default))))
  if dcfg is not None and pending is not None:
    depth_pass(pending)
  bar.close()
  print(f"experiments.table: {cache.summary()} ({runs_dir})", file=sys.stderr)
  if dcfg is not None:
    print(f"experiments.table: depth: {depth_store.summary()}", file=sys.stderr)
    compare_depth.attach(records, depth_records)
  base = args.report or f"{report or name}_baselines"
  with report_files.staged_report(out):  # The notes file goes with the report's files.
    prov, notes = run_cache.prepare_report(out, base, cache, args.note, command=command,
                                            prog="experiments.table")
    return write_report(out, report or name, config, records, names, forget_sets, seeds,
                        list(test.info.class_names), command, notes, base, prov=prov,
                        depth_records=depth_records if dcfg is not None else None)


if __name__ == "__main__":  # A part of experiments.table, not a runner of its own.
  common.fail("experiments.compare runs through experiments.table: python -m "
              "experiments.table --config digits_mlp:quick --methods retrain,mnemonic ... "
              "(see its --help)", "experiments.compare")
