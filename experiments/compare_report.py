"""The report of the methods comparison (:mod:`experiments.compare`): tables and plots.

Every method read against the retrain oracle of the same seed and classes: A_R, E_F, the
three MIAs and relearning as distances to the oracle, the codes ablation, the goal of
``mnemonic-auto``, the per-set table, the plots (:mod:`experiments.plots`) and, with
``--depth``, the depth section (:mod:`experiments.compare_depth`).
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from experiments import common, compare_depth, plots, report_files, run_cache
from mnemonic_jax import baselines, workflow
from mnemonic_jax.baselines import mnemonic as mnemonic_lib

ORACLE = "retrain"
#: The methods that read no training data: the paper's, and this project's rules.
DATA_FREE = tuple(m for m in baselines.available_methods() if m.startswith("mnemonic"))
MIAS = ("entropy_mia", "confidence_mia", "loss_mia")
# The benchmark goal for mnemonic-auto, against the oracle of the same seed and classes.
#: The most retained training examples a ``<method>:sweep`` choice reads (fewer where the
#: training split has fewer; each run records its count as ``examples["held_out"]``).
SWEEP_HELD_OUT = 2000
GOAL = {"A_R": 1.0, "mia": 2.0, "relearn": 2.0, "speedup": 100.0}


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


#: The figures a report may have, ``<report>_<kind>.png`` (plots.methods_figures,
#: compare_depth.section): one a rerun does not draw is removed, never left beside it.
FIGURE_KINDS = ("ar_ef", "ablation", "relearn", "depth", "depth_seconds")


def remove_stale_figures(out: pathlib.Path, base: str, figures: Sequence[pathlib.Path]
                         ) -> list[pathlib.Path]:
  """Removes the figures of an earlier run of report ``base`` in ``out`` that this run did
  not draw (e.g. its depth plots after a rerun without ``--depth``); returns them.

  ``figures``: the figures drawn, by name (in ``out`` or in the report's staging folder).
  Inside a staged report they are removed when its files are put in place
  (:func:`experiments.report_files.remove`).
  """
  drawn = {pathlib.Path(p).name for p in figures}
  stale = [out / f"{base}_{kind}.png" for kind in FIGURE_KINDS]
  stale = [p for p in stale if p.exists() and p.name not in drawn]
  for path in stale:
    report_files.remove(path)
  return stale


def title(name: str, variants: Sequence[str]) -> str:
  """The report's title: "against the retrain oracle" only when the oracle ran."""
  if ORACLE in variants:
    return f"{name}: unlearning methods against the retrain oracle"
  return f"{name}: unlearning methods (no retrain oracle run)"


def write_report(out: pathlib.Path, name: str, config, records: list[dict[str, Any]],
                 variants: Sequence[str], forget_sets, seeds, class_names, command: str,
                 notes: Sequence[str], base: str | None = None, *,
                 prov: dict[str, Any],
                 depth_records: Sequence[dict[str, Any]] | None = None) -> pathlib.Path:
  """Writes ``<base>.{md,csv,json}`` and its plots (``base``: ``<name>_baselines`` by
  default), replacing the earlier report's together or not at all
  (:func:`experiments.report_files.staged_report`); returns the Markdown path.

  ``prov`` (:func:`experiments.run_cache.prepare_report`) says in the header how many runs
  this command computed, where and when, and how many it reused from which earlier files;
  ``notes``: the hand-written notes; ``depth_records``
  (:func:`experiments.compare_depth.seed_pass`, with ``--depth``) add the depth section,
  its figure and the depth columns of the CSV.
  """
  oracle_distances(records)
  base = base or f"{name}_baselines"
  by_variant = {v: [r for r in records if r["variant"] == v] for v in ("none", *variants)}
  has_oracle = ORACLE in variants
  lines = [f"# {title(name, variants)}", "",
           f"Command: `{command}`", "", run_cache.runs_paragraph(prov), "",
           f"Seeds: {', '.join(map(str, seeds))}. Forgotten: "
           + ", ".join(common.set_label(cs, class_names) for cs in forget_sets)
           + ". Each seed trains one model; every method forgets each set from it "
           "separately; " + (
               f"`{ORACLE}` trains a new model without the set (same config and seed)."
               if has_oracle else
               f"no retrain oracle was run (`{ORACLE}` is not among the methods), so every "
               "Δ column (a method minus the oracle) is empty."),
           "", "Config: " + ", ".join(f"{k}={v}" for k, v in workflow.to_plain(config).items()),
           ""]
  lines += run_cache.notes_lines(notes, prov)
  lines += [
      "## Summary (mean ± std over every class x seed run)", "",
      "**data**: the training data a method reads (none / forget / retain / all). **s**: "
      "seconds of the method with compilation apart (**compile s**). Δ columns: the "
      "method minus the retrain oracle of the same seed and classes (A_R, E_F in points; "
      "MIAs in points, the entropy attack as %"
      + ("" if has_oracle else "; none here: no oracle ran") + "). **relearn 50/90**: "
      "median steps to relearn the forgotten classes to 50% / 90% of their original test "
      "accuracy (fine-tuning on 1% of their training images mixed with retained ones; a "
      "run that never relearns within the budget (500 steps) counts as infinite, 'never' "
      "= the median is); the oracle never knew the class, so a method relearning much "
      "faster than it has forgotten shallowly. **shift-rec.**: accuracy (%) on the "
      "forgotten classes' test images once one constant is added back to their logits "
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
            "samples of their classes (50 ideal). `none` = the model before forgetting. "
            + (f"Read them against `{ORACLE}`." if has_oracle else
               "No retrain oracle ran to read them against."), "",
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
  lines += sweep_section(records)
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

  with report_files.staged_report(out) as stage:  # Every file replaced together, or none.
    figures = plots.methods_figures(stage, base, records, shown)
    if depth_records is not None:
      depth_lines, depth_figures = compare_depth.section(
          depth_records, variants, stage, base,
          seconds={v: float(np.mean([r["seconds"] for r in rs])) for v, rs in by_variant.items()
                   if rs},
          data={v: rs[0]["data"] for v, rs in by_variant.items() if rs})
      lines += depth_lines
      figures += depth_figures
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    remove_stale_figures(out, base, figures)
    (stage / f"{base}.md").write_text("\n".join(lines))
    (stage / f"{base}.json").write_text(json.dumps(
        {"command": command, "machine": prov["machine"], "provenance": prov, "notes": notes,
         "config": workflow.to_plain(config), "runs": records,
         **({"depth": list(depth_records)} if depth_records is not None else {})}, indent=1,
        default=run_cache.json_default))
    fields = ["seed", "classes", "variant", "method", "inputs", "data", "A_R", "E_F",
              "A_R_before", "E_F_before", *MIAS, "relearn_50", "relearn_90", "seconds",
              "compile_seconds", "steps", "d_A_R", "d_E_F"]
    if depth_records is not None:  # Each attack's gap to the oracle, and the goals met.
      fields += [f"depth_gap_{n}" for n, _ in compare_depth.COLUMNS]
      fields += [f"depth_goal_{g}" for g in compare_depth.GOALS] + ["depth_output_level_only"]
    with open(stage / f"{base}.csv", "w", newline="") as f:
      writer = csv.DictWriter(f, fields, extrasaction="ignore")
      writer.writeheader()
      for r in records:
        row = {**r, **r["mia"], "classes": " ".join(map(str, r["classes"])),
               "relearn_50": common.relearn_steps_of(r, "50"),
               "relearn_90": common.relearn_steps_of(r, "90"),
               "d_A_R": (r.get("oracle") or {}).get("A_R"),
               "d_E_F": (r.get("oracle") or {}).get("E_F")}
        depth = r.get("depth") or {}
        row.update({f"depth_gap_{n}": v for n, v in (depth.get("gaps") or {}).items()})
        row.update({f"depth_goal_{g}": v for g, v in (depth.get("goals") or {}).items()})
        row["depth_output_level_only"] = depth.get("output_level_only")
        writer.writerow(row)
  return out / f"{base}.md"


def sweep_section(records: list[dict[str, Any]]) -> list[str]:
  """The swept methods (``<method>:sweep``): which rung each run chose, at what cost."""
  swept = [r for r in records if r["variant"].endswith(":sweep")]
  if not swept:
    return []
  read = sorted({int(r["examples"]["held_out"]) for r in swept
                 if isinstance(r.get("examples"), dict) and "held_out" in r["examples"]})
  count = ("a number not recorded" if not read else f"{read[0]:,}" if len(read) == 1
           else f"{read[0]:,} to {read[-1]:,}, by run")
  lines = ["## Swept settings (`<method>:sweep`)", "",
           "Where a method's published defaults leave the class known (or wreck the rest) on "
           "small models, its module registers a ladder of settings, the defaults first "
           "(`mnemonic_jax.baselines.base.sweep`). `<method>:sweep` runs every rung and keeps "
           "the strongest one whose accuracy on retained training examples (up to "
           f"{SWEEP_HELD_OUT:,} drawn at random; here {count}) stays within 1 point of the "
           "trained model's: chosen on retained data only, "
           "never on a forgotten class's example or a test image. Its **s** is every rung's "
           "seconds together; the method's row above is its defaults.", "",
           "| variant | runs | chosen (runs) | held-out accuracy of each rung (mean) | s of "
           "the chosen rung |", "|---|---|---|---|---|"]
  for v in dict.fromkeys(r["variant"] for r in swept):
    rs = [r for r in swept if r["variant"] == v]
    chosen: dict[str, int] = {}
    for r in rs:
      text = ", ".join(f"{k}={x}" for k, x in r["details"].get("chosen", {}).items())
      chosen[text or "defaults"] = chosen.get(text or "defaults", 0) + 1
    trials = [r["details"].get("sweep", []) for r in rs]
    rungs = []
    for i, trial in enumerate(trials[0]):
      label = ", ".join(f"{k}={x}" for k, x in trial["overrides"].items()) or "defaults"
      accs = [t[i]["held_out_accuracy"] for t in trials if i < len(t)
              and t[i]["held_out_accuracy"] is not None]
      rungs.append(f"{label}: {np.mean(accs):.1f}" if accs else f"{label}: diverged")
    lines.append(f"| {v} | {len(rs)} | "
                 + "; ".join(f"{k} ({n})" for k, n in chosen.items()) + " | "
                 + "; ".join(rungs) + " | "
                 + _mean([r["details"].get("chosen_seconds") for r in rs], 3) + " |")
  return lines + [""]


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
