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

``--inputs`` adds the codes ablation: the ``mnemonic`` methods again, their Fishers and
code scores computed from other inputs (:func:`mnemonic_jax.baselines.mnemonic.fisher_inputs`).

Every run is one JSON file in ``<out>/runs/<name>/methods/``, keyed on everything that
changes its result (:func:`method_key`: the config but its bookkeeping fields, the seed,
the classes, the method, its settings with their defaults, ``--inputs``, ``--data``,
whether and how relearning is measured, the caps, the library version); a rerun reuses a
run only on an equal key and says how many it reused and computed. The report is
``<out>/<name>_baselines.{md,csv,json}`` (``--report`` names another) with plots
``<name>_baselines_*.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
import sys
import types
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from experiments import common, plots, run_cache
from mnemonic_jax import baselines, errors, relearning, workflow
from mnemonic_jax.baselines import mnemonic as mnemonic_lib
from mnemonic_jax.data import load_dataset

ORACLE = "retrain"
#: The methods that read no training data: the paper's, and this project's rules.
DATA_FREE = tuple(m for m in baselines.available_methods() if m.startswith("mnemonic"))
MIAS = ("entropy_mia", "confidence_mia", "loss_mia")
# The benchmark goal for mnemonic-auto, against the oracle of the same seed and classes.
GOAL = {"A_R": 1.0, "mia": 2.0, "relearn": 2.0, "speedup": 100.0}


class UsageError(ValueError):
  """Bad ``--methods`` / ``--inputs`` / ``--data``: one line, exit 2, nothing written."""


def parse_methods(methods: str, inputs: str, data: str) -> tuple[list[str], list[str]]:
  """Checks ``--methods``, ``--inputs`` and ``--data`` before anything is written.

  Returns:
    ``(methods, inputs)`` as lists.

  Raises:
    UsageError: an empty or unknown method, unknown inputs, an unknown data kind, a method
      that needs data ``--data`` does not give, or ablation inputs without a mnemonic method.
  """
  names = [m.strip() for m in methods.split(",") if m.strip()]
  valid = baselines.available_methods()
  if not names:
    raise UsageError(f"--methods is empty; choose from {','.join(valid)}")
  unknown = [m for m in names if m not in valid]
  if unknown:
    raise UsageError(f"unknown --methods {','.join(unknown)}; choose from {','.join(valid)}")
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
    raise UsageError("--inputs applies to the mnemonic methods; add mnemonic or "
                     "mnemonic-auto to --methods")
  if "one-image" in kinds and data not in ("all",):
    raise UsageError("--inputs one-image reads one training image per class; pass --data all")
  return names, kinds


def method_config(name: str, config, bundle=None) -> Any:
  """The method's config: its defaults, overridden by ``config.baselines.<name>``.

  ``<name>`` is the method's name with ``-`` as ``_`` and ``+`` as ``_plus`` (e.g.
  ``config.baselines.neggrad_plus.epochs = 40``). The ``mnemonic-*`` methods' config is
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
  """
  spec = baselines.get_method(name)
  overrides = {}
  section = config.get("baselines") if hasattr(config, "get") else None
  field = name.replace("-", "_").replace("+", "_plus")
  if section is not None and field in section:
    overrides = dict(section[field])
  if name == "mnemonic-auto":
    overrides.setdefault("rule", common.rule_from_config(config))
  if spec.defaults is not None:
    if not overrides:
      return None  # baselines.unlearn takes spec.defaults(bundle).
    return dataclasses.replace(spec.defaults(bundle), **overrides)
  return dataclasses.replace(spec.config_cls(), **overrides)


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
  return {"runner": "experiments.table --methods", "version": version, "config": trained,
          "classes": [int(c) for c in classes], "method": method,
          "inputs": "trained-codes" if none else inputs,
          "settings": None if none else method_settings(method, plain),
          "data": None if none else data,
          "relearn": relearn_config if relearn and not none else None,
          "train_cap": train_cap, "mia_cap": mia_cap}


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
  """The run's label: the method, with ``@inputs`` for the codes ablation."""
  return method if inputs == "trained-codes" else f"{method}@{inputs}"


def plan_variants(methods: Sequence[str], inputs: Sequence[str]) -> list[tuple[str, str]]:
  """``(method, inputs)`` pairs to run: every method, then the ablation of the mnemonic ones."""
  pairs = [(m, "trained-codes") for m in methods]
  pairs += [(m, k) for k in inputs if k != "trained-codes" for m in methods if m in DATA_FREE]
  return pairs


def run_method(ctx, classes: Sequence[int], method: str, inputs: str, config, test,
               train_full, eval_images, eval_labels, mia_cap: int, relearn: bool,
               data_kind: str) -> dict[str, Any]:
  """Forgets ``classes`` from ``ctx.bundle`` with ``method``; evaluated, attacked, relearned."""
  bundle = ctx.bundle
  key = jax.random.fold_in(jax.random.key(ctx.seed), 7)
  data = baselines.UnlearnData.from_training(
      train_full.images, train_full.labels, classes,
      retain=data_kind in ("retain", "all"), forget=data_kind in ("forget", "all"))
  source = bundle
  if inputs != "trained-codes":
    fake = mnemonic_lib.fisher_inputs(inputs, bundle, jax.random.fold_in(key, 1),
                                      baselines.Split(train_full.images, train_full.labels))
    source = bundle.replace(codes=np.asarray(fake))
  new, report = baselines.unlearn(method, source, classes, data,
                                  method_config(method, config, bundle), key=key)
  new = new.replace(codes=bundle.codes)
  record: dict[str, Any] = {
      "seed": ctx.seed, "classes": list(classes), "method": method, "inputs": inputs,
      "variant": variant(method, inputs), "data": report.data, "seconds": report.seconds,
      "compile_seconds": report.compile_seconds, "steps": report.steps,
      "examples": report.examples, "details": report.details}
  record.update(common.measure(ctx, new, classes, test, eval_images, eval_labels, mia_cap))
  record["relearn"] = relearn_record(ctx, new, classes, test, train_full) if relearn else None
  return record


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
# Report.


def oracle_distances(records: list[dict[str, Any]]) -> None:
  """Adds to each record its distance to the oracle run of the same seed and classes."""
  oracles = {(r["seed"], tuple(r["classes"])): r for r in records if r["method"] == ORACLE}
  for r in records:
    o = oracles.get((r["seed"], tuple(r["classes"])))
    if o is None or r is o:
      r["oracle"] = None
      continue
    r["oracle"] = {
        "A_R": r["A_R"] - o["A_R"], "E_F": r["E_F"] - o["E_F"],
        **{m: mia_points(r, m) - mia_points(o, m) for m in MIAS},
        **{f"relearn_{t}": relearn_ratio(r, o, t) for t in ("50", "90")}}


def mia_points(record: dict[str, Any], name: str) -> float:
  """An MIA score in percentage points (the entropy attack reports a fraction)."""
  value = record["mia"][name]
  return 100.0 * value if name == "entropy_mia" else value


def relearn_ratio(record, oracle, target: str) -> float | None:
  """Relearning steps relative to the oracle's (>= 1: at least as slow as the oracle)."""
  mine, theirs = common.relearn_steps_of(record, target), common.relearn_steps_of(oracle, target)
  if np.isnan(mine) or np.isnan(theirs):
    return None
  if np.isinf(theirs):
    return None if np.isinf(mine) else mine / max(relearning_budget(oracle), 1)
  return float("inf") if np.isinf(mine) else mine / max(theirs, 1.0)


def relearning_budget(record) -> int:
  return int(record["relearn"]["max_steps"])


def goal_check(r: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, bool] | None:
  """The benchmark goal of a data-free run against the oracle and the data-based methods."""
  d = r.get("oracle")
  if d is None:
    return None
  others = [o for o in records if o["seed"] == r["seed"] and o["classes"] == r["classes"]
            and o["data"] != "none" and o["method"] != ORACLE and o["E_F"] >= 99.0]
  fastest = min((o["seconds"] for o in others), default=None)
  ratios = [d[f"relearn_{t}"] for t in ("50", "90")]
  return {
      "A_R": abs(d["A_R"]) <= GOAL["A_R"],
      "E_F": r["E_F"] >= 100.0 - 1e-9,
      "mia": all(abs(d[m]) <= GOAL["mia"] for m in MIAS),
      "relearn": all(x is None or x >= 1.0 / GOAL["relearn"] for x in ratios),
      "speed": fastest is not None and r["seconds"] * GOAL["speedup"] <= fastest,
  }


def oracle_spread(records: list[dict[str, Any]]) -> dict[str, float]:
  """Mean absolute difference between oracles of different seeds (same forgotten set).

  The noise floor of the distances to the oracle: A_R and each MIA, in points.
  """
  oracles: dict[tuple[int, ...], list[dict[str, Any]]] = {}
  for r in records:
    if r["method"] == ORACLE:
      oracles.setdefault(tuple(r["classes"]), []).append(r)
  diffs: dict[str, list[float]] = {"A_R": [], **{m: [] for m in MIAS}}
  for runs in oracles.values():
    for i, a in enumerate(runs):
      for b in runs[i + 1:]:
        diffs["A_R"].append(abs(a["A_R"] - b["A_R"]))
        for m in MIAS:
          diffs[m].append(abs(mia_points(a, m) - mia_points(b, m)))
  return {k: float(np.mean(v)) for k, v in diffs.items() if v}


def _mean(values, digits=1):
  return common.mean_std([v for v in values if v is not None and np.isfinite(v)], digits)


def _relearn_cell(rs, target):
  median, never = common.relearn_median(rs, target)
  if np.isnan(median):
    return "-"
  cell = "never" if np.isinf(median) else f"{median:.0f}"
  return cell + (f" ({never} never)" if never else "")


def write_report(out: pathlib.Path, name: str, config, records: list[dict[str, Any]],
                 variants: Sequence[str], forget_sets, seeds, class_names, command: str,
                 notes: Sequence[str], base: str | None = None, *,
                 prov: dict[str, Any]) -> pathlib.Path:
  """Writes ``<base>.{md,csv,json}`` and its plots (``base``: ``<name>_baselines`` by
  default); returns the Markdown path.

  ``prov`` (:func:`experiments.run_cache.prepare_report`) says in the header how many runs
  this command computed, where and when, and how many it reused from which earlier files;
  ``notes``: the hand-written notes.
  """
  oracle_distances(records)
  base = base or f"{name}_baselines"
  by_variant = {v: [r for r in records if r["variant"] == v] for v in ("none", *variants)}
  lines = [f"# {name}: unlearning methods against the retrain oracle", "",
           f"Command: `{command}`", "", run_cache.runs_paragraph(prov), "",
           f"Seeds: {', '.join(map(str, seeds))}. Forgotten: "
           + ", ".join(common.set_label(cs, class_names) for cs in forget_sets)
           + ". Each seed trains one model; every method forgets each set from it "
           "separately; `retrain` trains a new model without the set (same config and seed).",
           "", "Config: " + ", ".join(f"{k}={v}" for k, v in workflow.to_plain(config).items()),
           ""]
  lines += run_cache.notes_lines(notes, prov)
  lines += [
      "## Summary (mean ± std over every class x seed run)", "",
      "**data**: the training data a method reads (none / forget / retain / all). **s**: "
      "seconds of the method with compilation apart (**compile s**). Δ columns: the "
      "method minus the retrain oracle of the same seed and classes (A_R, E_F in points; "
      "MIAs in points, the entropy attack as %). **relearn 50/90**: median steps to relearn "
      "the forgotten classes to 50% / 90% of their original test accuracy (fine-tuning on "
      "1% of their training images mixed with retained ones; a run that never relearns "
      "within the budget (500 steps) counts as infinite, 'never' = the median is); the "
      "oracle never knew the class, so a method relearning much faster than "
      "it has forgotten shallowly. **shift-rec.**: accuracy (%) on the forgotten classes' "
      "test images once one constant is added back to their logits "
      "(`mnemonic_jax.metrics.shift_recovery`; compare with the oracle's).", ""]
  lines += ["| method | data | A_R | E_F | ΔA_R | ΔE_F | Δentropy MIA | Δconfidence MIA "
            "| Δloss MIA | relearn 50 | relearn 90 | shift-rec. | s | compile s | steps |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for v, rs in by_variant.items():
    if not rs:
      continue
    delta = lambda k: _mean([r["oracle"][k] for r in rs if r.get("oracle")], 2)
    lines.append(
        f"| {v} | {rs[0]['data']} | {_mean([r['A_R'] for r in rs])} | "
        f"{_mean([r['E_F'] for r in rs])} | {delta('A_R')} | {delta('E_F')} | "
        f"{delta('entropy_mia')} | {delta('confidence_mia')} | {delta('loss_mia')} | "
        f"{_relearn_cell(rs, '50')} | {_relearn_cell(rs, '90')} | "
        f"{_mean([r.get('shift_recovered') for r in rs])} | "
        f"{_mean([r['seconds'] for r in rs], 3)} | {_mean([r['compile_seconds'] for r in rs], 2)} "
        f"| {_mean([r['steps'] for r in rs], 0)} |")
  lines.append("")

  lines += ["## Absolute MIA scores (mean ± std)", "",
            "entropy: fraction of forgotten training samples an entropy attack calls member "
            "(lower is better); confidence: MIA-efficacy, % called non-member (higher is "
            "better); loss: CV accuracy telling forgotten training samples from unseen test "
            "samples of their classes (50 ideal). `none` = the model before forgetting. Read "
            "them against `retrain`.", "",
            "| method | entropy MIA | confidence MIA | loss MIA | retained train acc | "
            "forgotten train acc |", "|---|---|---|---|---|---|"]
  for v, rs in by_variant.items():
    if rs:
      lines.append(f"| {v} | {_mean([r['mia']['entropy_mia'] for r in rs], 3)} | "
                   f"{_mean([r['mia']['confidence_mia'] for r in rs])} | "
                   f"{_mean([r['mia']['loss_mia'] for r in rs])} | "
                   f"{_mean([r['retain_train_accuracy'] for r in rs])} | "
                   f"{_mean([r['forget_train_accuracy'] for r in rs])} |")
  lines.append("")

  lines += ablation_section(records)
  auto = [r for r in records if r["variant"] == "mnemonic-auto"]
  if auto and any(r.get("oracle") for r in auto):
    lines += goal_section(auto, records, class_names)

  lines += ["## Per forgotten set (mean over seeds): A_R / E_F", ""]
  shown = [v for v in variants if by_variant.get(v)]
  lines += ["| forgotten | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
  for cs in forget_sets:
    cells = []
    for v in shown:
      rs = [r for r in by_variant[v] if tuple(r["classes"]) == tuple(cs)]
      cells.append(f"{np.mean([r['A_R'] for r in rs]):.1f} / {np.mean([r['E_F'] for r in rs]):.1f}"
                   if rs else "-")
    lines.append(f"| {common.set_label(cs, class_names)} | " + " | ".join(cells) + " |")
  lines.append("")

  figures = plots.methods_figures(out, base, records, shown)
  lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
  (out / f"{base}.md").write_text("\n".join(lines))
  (out / f"{base}.json").write_text(json.dumps(
      {"command": command, "machine": prov["machine"], "provenance": prov, "notes": notes,
       "config": workflow.to_plain(config), "runs": records}, indent=1,
      default=run_cache.json_default))
  fields = ["seed", "classes", "variant", "method", "inputs", "data", "A_R", "E_F",
            "A_R_before", "E_F_before", *MIAS, "relearn_50", "relearn_90", "seconds",
            "compile_seconds", "steps", "d_A_R", "d_E_F"]
  with open(out / f"{base}.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fields, extrasaction="ignore")
    writer.writeheader()
    for r in records:
      row = {**r, **r["mia"], "classes": " ".join(map(str, r["classes"])),
             "relearn_50": common.relearn_steps_of(r, "50"),
             "relearn_90": common.relearn_steps_of(r, "90"),
             "d_A_R": (r.get("oracle") or {}).get("A_R"),
             "d_E_F": (r.get("oracle") or {}).get("E_F")}
      writer.writerow(row)
  return out / f"{base}.md"


def ablation_section(records: list[dict[str, Any]]) -> list[str]:
  """The codes ablation: the mnemonic methods with their Fishers from other inputs."""
  runs = [r for r in records if r["method"] in DATA_FREE]
  kinds = [k for k in mnemonic_lib.INPUTS if any(r["inputs"] == k for r in runs)]
  if kinds == ["trained-codes"] or not kinds:
    return []
  lines = ["## Do the codes matter? (Fisher inputs ablation)", "",
           "The mnemonic methods with the Fishers and code scores computed from other inputs "
           "than the trained codes: fresh random codes the model never saw, all-zero inputs, "
           "one real training image per class. Goal = E_F 100 and A_R at most 1 point below "
           "the model's before forgetting.", "",
           "| inputs | method | A_R | ΔA_R vs before | E_F | goal |", "|---|---|---|---|---|---|"]
  for kind in kinds:
    for method in DATA_FREE:
      rs = [r for r in runs if r["inputs"] == kind and r["method"] == method]
      if not rs:
        continue
      goal = sum(r["E_F"] >= 100.0 - 1e-9 and r["A_R"] >= r["A_R_before"] - 1.0 for r in rs)
      lines.append(f"| {kind} | {method} | {_mean([r['A_R'] for r in rs])} | "
                   f"{_mean([r['A_R'] - r['A_R_before'] for r in rs], 2)} | "
                   f"{_mean([r['E_F'] for r in rs])} | {goal} / {len(rs)} |")
  return lines + [""]


def goal_section(auto, records, class_names) -> list[str]:
  """The benchmark goal of ``mnemonic-auto``, run by run, with where it misses."""
  checks = [(r, goal_check(r, records)) for r in auto]
  checks = [(r, c) for r, c in checks if c is not None]
  parts = ("A_R", "E_F", "mia", "relearn", "speed")
  lines = ["## Goal: mnemonic-auto against the oracle", "",
           f"Per run: A_R within {GOAL['A_R']:g} point of the oracle's; E_F = 100; every MIA "
           f"within {GOAL['mia']:g} points of the oracle's; relearning (50% and 90%) no faster "
           f"than {1 / GOAL['relearn']:g}x the oracle's steps; at least {GOAL['speedup']:g}x "
           "faster than the fastest data-based method reaching E_F >= 99 on the same run "
           "(seconds with compilation apart).", "",
           "| criterion | runs meeting it |", "|---|---|"]
  for p in parts:
    lines.append(f"| {p} | {sum(c[p] for _, c in checks)} / {len(checks)} |")
  lines.append(f"| all | {sum(all(c.values()) for _, c in checks)} / {len(checks)} |")
  spread = oracle_spread(records)
  if spread:
    lines += ["", "For scale, the oracle against itself: two retrained models of different "
              "seeds, same forgotten set, differ on average by "
              + ", ".join(f"{v:.2f} points of {k}" for k, v in spread.items())
              + " (mean absolute difference over seed pairs). A goal tighter than this spread "
              "is below the noise of the measurement."]
  misses = [(r, c) for r, c in checks if not all(c.values())]
  if misses:
    lines += ["", "Misses:", "",
              "| seed | forgotten | missed | ΔA_R | E_F | ΔMIAs (ent/conf/loss) "
              "| relearn ratio 50/90 |", "|---|---|---|---|---|---|---|"]
    for r, c in misses:
      d = r["oracle"]
      fmt = lambda x: "-" if x is None else ("never" if np.isinf(x) else f"{x:.2f}")
      label = common.set_label(r["classes"], class_names)
      lines.append(
          f"| {r['seed']} | {label} | {', '.join(p for p in parts if not c[p])} | "
          f"{d['A_R']:+.2f} | {r['E_F']:.1f} | {d['entropy_mia']:+.1f} / "
          f"{d['confidence_mia']:+.1f} / {d['loss_mia']:+.1f} | "
          f"{fmt(d['relearn_50'])} / {fmt(d['relearn_90'])} |")
  return lines + [""]


# ----------------------------------------------------------------------------------------
# Main.


def run(args, config, name: str, command: str) -> pathlib.Path:
  """``table --methods``: plan, run (skipping cached runs), report."""
  methods, inputs = parse_methods(args.methods, args.inputs, args.data)
  variants = plan_variants(methods, inputs)
  test = load_dataset(config.dataset, "test", data_dir=config.get("data_dir"))
  num_classes = test.info.num_classes
  forget_sets = common.forget_sets_of(args, num_classes)
  seeds = [int(config.seed) + k for k in range(args.seeds)]
  out = pathlib.Path(args.out)
  runs_dir = out / "runs" / name / "methods"
  runs_dir.mkdir(parents=True, exist_ok=True)
  plan = [(s, cs, m, k) for s in seeds for cs in forget_sets
          for m, k in [("none", "trained-codes"), *variants]]

  cache = run_cache.RunCache(runs_dir, common.machine_line())
  legacy = (lambda record: legacy_method_key(args.config, out, name, record, common.TRAIN_CAP,
                                             common.MIA_CAP))
  records, ctx, train, train_full = [], None, None, None
  bar = tqdm(plan, desc=f"{name} methods", unit="run", disable=args.no_progress)
  for seed, cs, method, kind in bar:
    stem = common.run_key(seed, cs, variant(method, kind))
    key = method_key(run_cache.config_key(config, seed), cs, method, kind, args.data,
                     not args.no_relearn, args.train_cap, args.mia_cap)
    bar.set_postfix_str(stem)
    cached = cache.get(stem, key, legacy)
    if cached is not None:
      records.append(cached)
      continue
    if train is None:
      train = load_dataset(config.dataset, "train", data_dir=config.get("data_dir"))
      idx = common.train_subset(len(train), args.train_cap)
    if ctx is None or ctx.seed != seed:
      ctx = common.seed_context(config, seed, out, name, test, train.images[idx],
                               not args.no_progress)
      train_full = baselines.Split(
          workflow.prepare_images(train.images, ctx.bundle.input_shape), train.labels)
    if method == "none":
      record = {"seed": seed, "classes": list(cs), "method": "none", "inputs": kind,
                "variant": "none", "data": "none", "seconds": 0.0, "compile_seconds": 0.0,
                "steps": 0, "examples": {}, "details": {}, "relearn": None}
      record.update(common.measure(ctx, ctx.bundle, cs, test, train.images[idx],
                                  train.labels[idx], args.mia_cap,
                                  logits=(ctx.test_logits, ctx.train_logits)))
    else:
      record = run_method(ctx, cs, method, kind, config, test, train_full, train.images[idx],
                          train.labels[idx], args.mia_cap, not args.no_relearn, args.data)
    record["train_seconds"] = ctx.train_seconds
    records.append(cache.put(stem, key, json.loads(json.dumps(
        record, default=run_cache.json_default))))
  bar.close()
  print(f"experiments.table: {cache.summary()} ({runs_dir})", file=sys.stderr)
  base = args.report or f"{name}_baselines"
  prov, notes = run_cache.prepare_report(out, base, cache, args.note)
  return write_report(out, name, config, records, [variant(m, k) for m, k in variants],
                      forget_sets, seeds, list(test.info.class_names), command, notes,
                      base, prov=prov)
