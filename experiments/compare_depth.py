"""The depth columns of the methods comparison (``table --methods ... --depth``; issue #19).

With ``--depth``, every method's forgetting of every set is also attacked with the depth
suite of :mod:`mnemonic_jax.evaluation` (:func:`~mnemonic_jax.evaluation.depth_report`: the
one-constant attack both ways, input scaling, linear-probe and nearest-class-mean recall,
the prototype attack, head-only fine-tuning, relearning, CKA and weight distance) against
the retrain oracle of the same seed and set, which the comparison trains anyway (so
``--depth`` needs ``retrain`` in ``--methods``); :func:`~mnemonic_jax.evaluation.depth_goals`
scores each run. The codes-ablation variants (``method@inputs``) and the oracle itself are
not attacked.

Caching, as every run of the comparison (:mod:`experiments.run_cache`): one record per
method run in ``<out>/runs/<name>/depth/``, keyed on the method run's key, the oracle run's
key and the :class:`~mnemonic_jax.evaluation.DepthConfig`. The oracle's bundle is saved
under ``<out>/cache/<name>/oracles/`` when it is trained, so that a later ``--depth`` reads
it instead of retraining; a method whose run was cached forgets again to be attacked (its
run's record is left as it is).

The report's depth section (:func:`section`): per method, each attack's mean value and its
gap to the oracle, the verdict "output-level only", the depth goals met and a sentence
naming the methods that meet them (:func:`goals_summary`), a figure of the gaps
(:func:`experiments.plots.depth_gaps_chart`) and one of the gaps against each method's
seconds (:func:`experiments.plots.depth_vs_seconds`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from experiments import common, plots, run_cache
from mnemonic_jax import checkpointing
from mnemonic_jax.evaluation import DepthConfig, DepthData, depth_goals, depth_report
from mnemonic_jax.relearning import RelearnConfig

ORACLE = "retrain"
#: The figures shown as columns (name, header); all are in the JSON.
COLUMNS = (("one_constant_half", "1 const (half)"), ("one_constant_shots", "1 const (10-shot)"),
           ("input_scale_x3", "input x3"), ("probe_recall", "probe"), ("ncm_recall", "NCM"),
           ("prototype", "prototype"), ("head_ft_50", "head FT 50"),
           ("relearn_50", "relearn 50%"), ("cka_to_oracle", "CKA to oracle"),
           ("distance_to_oracle", "dist. to oracle"))
#: The goals of :func:`mnemonic_jax.evaluation.depth_goals`, in its order.
GOALS = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")


def depth_config(relearn_steps: int | None, probe_per_class: int | None = None
                 ) -> DepthConfig:
  """The suite's settings: its defaults, relearning capped at ``relearn_steps`` (``None``:
  the default cap; 0: no relearning), the linear probe fitted on ``probe_per_class``
  training images per class (``None``: the default, 500; on Fashion-MNIST's MLP features
  the probe's fit is most of the suite's time)."""
  config = DepthConfig()
  if probe_per_class is not None:
    config = dataclasses.replace(config, probe_per_class=probe_per_class)
  if relearn_steps is None:
    return config
  if relearn_steps <= 0:
    return dataclasses.replace(config, relearn=None)
  return dataclasses.replace(config, relearn=RelearnConfig(max_steps=relearn_steps))


def depth_key(method_key: dict[str, Any], oracle_key: dict[str, Any], config: DepthConfig
              ) -> dict[str, Any]:
  """Everything that changes one depth record: the method run, the oracle run, the suite's
  settings (and the library version)."""
  return {"runner": "experiments.table --methods --depth", "version": run_cache.VERSION,
          "method_run": method_key, "oracle_run": oracle_key,
          "depth": run_cache.settings(config)}


def oracle_dir(out: pathlib.Path, name: str, stem: str, oracle_key: dict[str, Any]
               ) -> pathlib.Path:
  """Where the oracle bundle of the run ``stem`` with ``oracle_key`` is kept."""
  return out / "cache" / name / "oracles" / f"{stem}-{run_cache.digest(oracle_key)}"


def save_oracle(path: pathlib.Path, bundle) -> None:
  """Keeps an oracle's bundle for later depth runs."""
  checkpointing.save_bundle(path / "bundle", bundle, force=True)


def split_variant(variant: str) -> tuple[str, str]:
  """``"mnemonic@zeros"`` -> ``("mnemonic", "zeros")``; ``"ssd"`` -> ``("ssd",
  "trained-codes")``; ``"scrub:sweep"`` -> ``("scrub", "sweep")`` (the swept settings)."""
  if variant.endswith(":sweep"):
    return variant[:-len(":sweep")], "sweep"
  method, _, inputs = variant.partition("@")
  return method, inputs or "trained-codes"


def attacked(variants: Sequence[str]) -> list[str]:
  """The variants the suite attacks: every method but the oracle, without the ablation."""
  return [v for v in variants if "@" not in v and v != ORACLE]


def seed_pass(*, seed: int, forget_sets: Sequence[tuple[int, ...]], variants: Sequence[str],
              key_of: Callable[[tuple[int, ...], str], dict[str, Any]],
              made: dict[tuple[tuple[int, ...], str], Any],
              context: Callable[[], tuple[Any, DepthData]],
              forget: Callable[[Any, tuple[int, ...], str, str], Any],
              store: run_cache.RunCache, out: pathlib.Path, name: str,
              config: DepthConfig) -> list[dict[str, Any]]:
  """The depth records of one seed: cached, or measured now.

  Args:
    seed: the seed.
    forget_sets: the forgotten sets.
    variants: the comparison's variants (the oracle among them).
    key_of: ``(classes, variant)`` -> the key of that method run.
    made: ``(classes, variant)`` -> the bundle that run made in this command, if it did.
    context: gives ``(SeedContext, DepthData)`` of the seed (loaded on first need).
    forget: ``(context, classes, method, inputs)`` -> the bundle the method makes.
    store: the depth records' cache.
    out: the output folder (the oracle bundles go under its cache).
    name: the runner's config name.
    config: the suite's settings.

  Returns:
    One record per attacked variant and set: ``report`` (``DepthReport.to_dict``),
    ``goals``, ``seconds`` and the run's identity.
  """
  records = []
  for cs in forget_sets:
    cs = tuple(cs)
    oracle_key = key_of(cs, ORACLE)
    oracle = made.get((cs, ORACLE))
    for v in attacked(variants):
      stem = common.run_key(seed, cs, v)
      key = depth_key(key_of(cs, v), oracle_key, config)
      record = store.get(stem, key)
      if record is not None:
        records.append(record)
        continue
      ctx, data = context()
      if oracle is None:
        where = oracle_dir(out, name, common.run_key(seed, cs, ORACLE), oracle_key)
        if (where / "bundle").exists():
          oracle = checkpointing.load_bundle(where / "bundle")
        else:
          oracle = forget(ctx, cs, ORACLE, "trained-codes")
          save_oracle(where, oracle)
      method, inputs = split_variant(v)
      new = made.get((cs, v))
      if new is None:
        new = forget(ctx, cs, method, inputs)
      start = time.perf_counter()
      report = depth_report(new, oracle, ctx.bundle, data, cs, config=config,
                            key=jax.random.key(seed))
      records.append(store.put(stem, key, {
          "seed": seed, "classes": list(cs), "variant": v, "method": method,
          "inputs": inputs, "report": report.to_dict(),
          "goals": [g._asdict() for g in depth_goals(report)],
          "seconds": time.perf_counter() - start}))
  return records


# ----------------------------------------------------------------------------------------
# Report.


def _number(v: Any) -> float:
  """A figure value of ``DepthReport.to_dict`` as a float (``"inf"``, ``"nan"``, None)."""
  if v is None:
    return float("nan")
  return float(v)


def figure_values(records: Sequence[dict[str, Any]], name: str, what: str) -> list[float]:
  """``what`` (``method``, ``oracle``, ``gap``) of figure ``name`` over ``records``."""
  values = []
  for r in records:
    fig = next((f for f in r["report"]["figures"] if f["name"] == name), None)
    if fig is not None:
      values.append(_number(fig[what]))
  return values


def _mean(values: Sequence[float]) -> float:
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")


def _cell(records, name: str, unit: str) -> str:
  values = figure_values(records, name, "method")
  gaps = figure_values(records, name, "gap")
  if not values:
    return "-"
  digits = {"CKA": 3, "distance": 3, "steps": 0}.get(unit, 1)
  never = sum(np.isinf(v) for v in values)
  value = _mean(values)
  text = "n/a" if np.isnan(value) else f"{value:.{digits}f}"
  if name.startswith("relearn_"):  # Steps: the median, a run never relearned counted as
    median = float(np.median([v for v in values if not np.isnan(v)] or [np.nan]))  # inf.
    text = "never" if np.isinf(median) else "n/a" if np.isnan(median) else f"{median:.0f}"
    gap = _mean(gaps)  # The gap is a ratio to the oracle's steps.
    text += "" if np.isnan(gap) else f" (x{gap:.2f})"
    return text + (f"; {never} of {len(values)} never" if 0 < never < len(values) else "")
  gap = _mean(gaps)
  return text + ("" if np.isnan(gap) else f" ({gap:+.{digits}f})")


def attach(records: list[dict[str, Any]], depth_records: Sequence[dict[str, Any]]) -> None:
  """Adds to each method run (in memory) its depth gaps and goals, for the CSV and JSON."""
  by = {(r["seed"], tuple(r["classes"]), r["variant"]): r for r in depth_records}
  for r in records:
    d = by.get((r["seed"], tuple(r["classes"]), r["variant"]))
    if d is None:
      continue
    r["depth"] = {
        "gaps": {n: figure_values([d], n, "gap")[0] if figure_values([d], n, "gap") else None
                 for n, _ in COLUMNS},
        "goals": {g["name"]: g["passed"] for g in d["goals"]},
        "output_level_only": d["report"]["verdict"]["output_level_only"]}


def goals_met(depth_records: Sequence[dict[str, Any]], variant: str) -> tuple[int, int]:
  """``(runs of variant with no depth goal missed, runs of variant)``; a goal that does not
  apply to a run (``passed`` None) is not missed."""
  rs = [r for r in depth_records if r["variant"] == variant]
  return sum(all(g["passed"] is not False for g in r["goals"]) for r in rs), len(rs)


def goals_summary(depth_records: Sequence[dict[str, Any]], shown: Sequence[str]) -> list[str]:
  """The sentence saying which methods meet the depth goals, and over how many runs.

  Every goal in every run; failing that, the methods with the most runs missing no goal;
  and, per goal, the methods meeting it in every run where it applies.
  """
  counts = {v: goals_met(depth_records, v) for v in shown}
  runs = sorted({n for _, n in counts.values()})
  runs_text = " or ".join(map(str, runs))
  every = [v for v, (k, n) in counts.items() if n and k == n]
  if every:
    lines = [f"**Methods meeting every depth goal in every run ({runs_text} runs each):** "
             + ", ".join(every) + "."]
  else:
    lines = [f"**No method meets every depth goal in every run** ({len(shown)} methods, "
             f"{runs_text} runs each)."]
  best = max((k for k, _ in counts.values()), default=0)
  if best and not every:
    lines[0] += " Most runs with no goal missed: " + ", ".join(
        f"{v} ({k}/{n})" for v, (k, n) in counts.items() if k == best) + "."
  per_goal = []
  for goal in GOALS:
    met, applies = [], False
    for v in shown:
      passed = [g["passed"] for r in depth_records if r["variant"] == v for g in r["goals"]
                if g["name"] == goal and g["passed"] is not None]
      applies = applies or bool(passed)
      if passed and all(passed):
        met.append(v)
    per_goal.append(f"{goal}: " + (", ".join(met) if met else "none" if applies
                                   else "applies to no run"))
  return lines + ["", "Each goal met in every run where it applies: " + "; ".join(per_goal)
                  + "."]


def section(depth_records: Sequence[dict[str, Any]], variants: Sequence[str],
            out: pathlib.Path, base: str, seconds: dict[str, float] | None = None,
            data: dict[str, str] | None = None) -> tuple[list[str], list[pathlib.Path]]:
  """The report's depth section (lines) and its figures: the heat map of the gaps, and,
  given each variant's mean ``seconds`` (and the training ``data`` it reads), the gaps
  against seconds (:func:`experiments.plots.depth_vs_seconds`)."""
  shown = [v for v in attacked(variants) if any(r["variant"] == v for r in depth_records)]
  if not shown:
    return [], []
  units = {}
  for r in depth_records:
    for f in r["report"]["figures"]:
      units.setdefault(f["name"], f["unit"])
  columns = [(n, h) for n, h in COLUMNS if n in units]
  lines = ["## Depth against the retrain oracle", "",
           "The depth suite of `mnemonic_jax.evaluation` (`depth_report`, issue #19) on every "
           "method's forgetting, against the retrain oracle of the same seed and set. Each "
           "cell: the method's mean over runs (its mean gap to the oracle): recovered or "
           "recalled accuracy (%) on the forgotten classes' test images for the attacks "
           "(higher than the oracle = the class is still there to be found), relearning "
           "steps (median; never = not within the cap; x = the method's steps over the "
           "oracle's, where both relearned: below 1 relearns faster), CKA "
           "of the forgotten images' features to the oracle's (1 = the same), relative "
           "weight distance to the oracle. **output-level only**: runs the suite's verdict "
           "calls output-level only (the features keep the class; only the outputs moved).",
           "", "| method | runs | output-level only | "
           + " | ".join(h for _, h in columns) + " |",
           "|---|---|---|" + "---:|" * len(columns)]
  for v in shown:
    rs = [r for r in depth_records if r["variant"] == v]
    level = sum(bool(r["report"]["verdict"]["output_level_only"]) for r in rs)
    lines.append(f"| {v} | {len(rs)} | {level} | "
                 + " | ".join(_cell(rs, n, units[n]) for n, _ in columns) + " |")
  lines += ["", "Depth goals met (runs passing / runs where the goal applies; issue #19: "
            "forgetting = E_F >= 99 and A_R >= oracle - 1; one_constant: both ways <= oracle "
            "+ 10; input_scale: every scale <= oracle + 5; probe: probe and NCM recall <= "
            "oracle + 5 where the original and the oracle differ by more than 10; "
            "prototype: <= oracle + 10; relearning: no faster than the oracle):", "",
            "| method | " + " | ".join(GOALS) + " | no goal missed |",
            "|---|" + "---:|" * (len(GOALS) + 1)]
  for v in shown:
    rs = [r for r in depth_records if r["variant"] == v]
    cells = []
    for goal in GOALS:
      passed = [g["passed"] for r in rs for g in r["goals"] if g["name"] == goal]
      applies = [p for p in passed if p is not None]
      cells.append(f"{sum(applies)}/{len(applies)}" if applies else "n/a")
    every, n = goals_met(depth_records, v)
    lines.append(f"| {v} | " + " | ".join(cells) + f" | {every}/{n} |")
  lines += [""] + goals_summary(depth_records, shown)
  percent = [(n, h) for n, h in columns if units[n] == "%"]
  gaps = [[_mean(figure_values([r for r in depth_records if r["variant"] == v], n, "gap"))
           for n, _ in percent] for v in shown]
  figures = [plots.depth_gaps_chart(
      out / f"{base}_depth.png", shown, [h for _, h in percent], np.array(gaps),
      f"{base}: what each attack recovers beyond the retrain oracle (points, mean over runs)")]
  if seconds is not None:
    timed = [i for i, v in enumerate(shown) if v in seconds]
    figures.append(plots.depth_vs_seconds(
        out / f"{base}_depth_seconds.png", [shown[i] for i in timed],
        [seconds[shown[i]] for i in timed], np.array(gaps).reshape(len(shown), -1)[timed],
        [h for _, h in percent], [(data or {}).get(shown[i], "?") for i in timed],
        [goals_met(depth_records, shown[i])[0] == goals_met(depth_records, shown[i])[1]
         for i in timed],
        f"{base}: depth gaps to the retrain oracle against seconds (mean over runs; the "
        "attacks of the heat map)"))
  return lines + [""], figures
