"""The report of :mod:`experiments.depth`: ``depth.md``, ``depth.csv``, ``depth.json``, plots.

:func:`write_all` takes the runner's result (the command, the machine, and per model its
runs, the oracle's spread per class set and the failures) and writes

* ``depth.json``: all of it, each run's figures as ``name: [method, oracle, original,
  gap]`` (labels and units once, under ``figures``);
* ``depth.csv``: one row per run: model, classes, seed, method, the data it reads, whether
  the forgetting is output-level only, each depth goal (met / missed / n/a), then each
  figure's method, oracle and original value and the oracle's spread;
* ``depth.md``: the setup, which methods meet the depth goals (in words), the goal counts
  per method (all models, then per model), per model the mean gap of each attack and the
  oracle's values with their spread, and every run's main figures;
* ``depth_<model>.png``: per model, each method's gap to the oracle on each attack (mean
  over the class sets), coloured by how much worse than the oracle it is.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments import report_files

#: Figures shown in the tables and plots: (name, header, worse when the gap is ...).
COLUMNS = (("E_F", "E_F", -1), ("A_R", "A_R", -1), ("one_constant_half", "1 const (half)", 1),
           ("one_constant_shots", "1 const (10-shot)", 1), ("input_scale_x1.5", "x1.5", 1),
           ("input_scale_x2", "x2", 1), ("input_scale_x3", "x3", 1),
           ("probe_recall", "probe", 1), ("ncm_recall", "NCM", 1), ("prototype", "prototype", 1),
           ("head_ft_10", "head FT 10", 1), ("head_ft_50", "head FT 50", 1))
RELEARN = (("relearn_50", "relearn 50%"), ("relearn_90", "relearn 90%"))
GOALS = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")
GOAL_TEXT = ("forgetting: E_F >= 99 and A_R >= oracle - 1; one_constant: recovery both ways "
             "<= oracle + 10; input_scale: <= oracle + 5 at x1.5, x2 and x3; probe: linear-probe "
             "and nearest-class-mean recall <= oracle + 5, each only where the original and "
             "the oracle differ by more than 10 points; prototype: <= oracle + 10; relearning: "
             "no faster than the oracle to 50% and to 90% of the original's forgotten accuracy")


def _num(v: Any) -> float | None:
  """A figure value of ``DepthReport.to_dict`` as a float (``"inf"`` -> inf)."""
  return None if v is None else float(v)


def _figures(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
  return {f["name"]: f for f in run["report"]["figures"]}


def _set(classes: Sequence[int]) -> str:
  return "{" + ",".join(map(str, classes)) + "}" if len(classes) > 1 else str(classes[0])


def _fmt(v: float | None, unit: str = "%") -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "n/a"
  if math.isinf(v):
    return "never"
  return {"steps": f"{v:.0f}", "CKA": f"{v:.3f}", "distance": f"{v:.3f}"}.get(unit, f"{v:.1f}")


def _mean(values: Sequence[float | None]) -> float | None:
  finite = [v for v in values if v is not None and math.isfinite(v)]
  return statistics.fmean(finite) if finite else None


def _methods(runs: list[dict[str, Any]]) -> list[str]:
  return list(dict.fromkeys(r["method"] for r in runs))


def goal_counts(runs: list[dict[str, Any]], method: str) -> dict[str, tuple[int, int]]:
  """``goal -> (runs passing, runs where it applies)``, plus ``"all"`` (every applicable
  goal met in the run) over the runs of ``method``."""
  mine = [r for r in runs if r["method"] == method]
  out = {}
  for name in GOALS:
    passed = [g["passed"] for r in mine for g in r["goals"] if g["name"] == name]
    applies = [p for p in passed if p is not None]
    out[name] = (sum(applies), len(applies))
  out["all"] = (sum(all(g["passed"] is not False for g in r["goals"]) for r in mine), len(mine))
  return out


def _count(c: tuple[int, int]) -> str:
  return f"{c[0]}/{c[1]}" if c[1] else "n/a"


# ----------------------------------------------------------------------------------------
# Words.


def statement(runs: list[dict[str, Any]]) -> list[str]:
  """Which methods meet the depth goals, in words (one paragraph per line)."""
  methods = _methods(runs)
  counts = {m: goal_counts(runs, m) for m in methods}
  every = [m for m in methods if counts[m]["all"][0] == counts[m]["all"][1]]
  some = [m for m in methods if 0 < counts[m]["all"][0] < counts[m]["all"][1]]
  none = [m for m in methods if counts[m]["all"][0] == 0]
  lines = [("**Meet every depth goal in every run:** "
            + (", ".join(f"`{m}`" for m in every) if every else "no method") + "."),
           ("**Meet every goal in some runs only:** "
            + (", ".join(f"`{m}` ({_count(counts[m]['all'])})" for m in some) or "none") + "."),
           ("**Meet every goal in no run:** "
            + (", ".join(f"`{m}`" for m in none) or "none") + ".")]
  missed = []
  for m in methods:
    worst = [g for g in GOALS if counts[m][g][1] and counts[m][g][0] < counts[m][g][1]]
    if worst:
      missed.append(f"`{m}` " + ", ".join(f"{g} {_count(counts[m][g])}" for g in worst))
  if missed:
    lines.append("Goals missed (runs passing / applicable): " + "; ".join(missed) + ".")
  deep = [m for m in methods
          if all(counts[m][g][0] == counts[m][g][1] for g in ("one_constant", "input_scale",
                                                               "probe", "prototype"))]
  lines.append("Not undone by the depth attacks in any run (one constant, input scale, probe "
               "and prototype goals all met, whatever else): "
               + (", ".join(f"`{m}`" for m in deep) or "no method") + ".")
  output = [m for m in methods if all(r["report"]["verdict"]["output_level_only"]
                                      for r in runs if r["method"] == m)]
  lines.append("Output-level only in every run (the report's verdict: suppressed in the "
               "logits with the original's features, or undone by one constant): "
               + (", ".join(f"`{m}`" for m in output) or "no method") + ".")
  return lines


# ----------------------------------------------------------------------------------------
# Markdown.


def _goal_table(runs: list[dict[str, Any]]) -> list[str]:
  lines = ["| method | data | " + " | ".join(GOALS) + " | every goal (runs) |",
           "|---|---|" + "---:|" * (len(GOALS) + 1)]
  for m in _methods(runs):
    c = goal_counts(runs, m)
    data = next(r["data"] for r in runs if r["method"] == m)
    lines.append(f"| {m} | {data} | " + " | ".join(_count(c[g]) for g in GOALS)
                 + f" | {_count(c['all'])} |")
  return lines


def _gap_table(runs: list[dict[str, Any]]) -> list[str]:
  """Mean gap (method - oracle) over the class sets; relearning as the median ratio."""
  lines = ["| method | " + " | ".join(h for _, h, _ in COLUMNS)
           + " | relearn 50% (x oracle) | 1 - CKA orig (oracle) | output-level runs |",
           "|---|" + "---:|" * (len(COLUMNS) + 3)]
  for m in _methods(runs):
    mine = [r for r in runs if r["method"] == m]
    figs = [_figures(r) for r in mine]
    cells = []
    for name, _, _ in COLUMNS:
      gap = _mean([_num(f[name]["gap"]) for f in figs if name in f])
      cells.append("n/a" if gap is None else f"{gap:+.1f}")
    ratios = [_num(f["relearn_50"]["gap"]) for f in figs if "relearn_50" in f]
    ratios = [r for r in ratios if r is not None and not math.isnan(r)]
    cells.append(f"x{statistics.median(ratios):.2f}" if ratios else "n/a")
    cka = [(1 - _num(f["cka_to_original"]["method"]), 1 - _num(f["cka_to_original"]["oracle"]))
           for f in figs if "cka_to_original" in f]
    cells.append(f"{_mean([c[0] for c in cka]):.3f} ({_mean([c[1] for c in cka]):.3f})"
                 if cka else "n/a")
    cells.append(f"{sum(r['report']['verdict']['output_level_only'] for r in mine)}/{len(mine)}")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return lines


def _oracle_table(model: dict[str, Any]) -> list[str]:
  """The oracle's values per class set, with the seed-to-seed spread (std) beside."""
  spreads = {tuple(s["classes"]): s["spread"] for s in model["spreads"]}
  by_set = {}
  for r in model["runs"]:
    by_set.setdefault(tuple(r["classes"]), _figures(r))
  cols = [*COLUMNS, *((n, h, 0) for n, h in RELEARN)]
  lines = ["| classes | " + " | ".join(h for _, h, _ in cols) + " |",
           "|---|" + "---:|" * len(cols)]
  for classes, figs in by_set.items():
    spread = spreads.get(classes, {})
    cells = []
    for name, _, _ in cols:
      if name not in figs:
        cells.append("n/a")
        continue
      value = _fmt(_num(figs[name]["oracle"]), figs[name]["unit"])
      s = spread.get(name)
      cells.append(value + (f" ± {s:.1f}" if s is not None and math.isfinite(s) else ""))
    lines.append(f"| {_set(classes)} | " + " | ".join(cells) + " |")
  return lines


def _run_table(runs: list[dict[str, Any]]) -> list[str]:
  cols = [*COLUMNS[:1], *COLUMNS[1:4], COLUMNS[6], *COLUMNS[7:10], COLUMNS[11]]
  lines = ["| method | classes | " + " | ".join(h for _, h, _ in cols)
           + " | relearn 50% | goals met | output-level only |",
           "|---|---|" + "---:|" * (len(cols) + 2) + "---|"]
  for r in runs:
    f = _figures(r)
    cell = lambda n: (f"{_fmt(_num(f[n]['method']), f[n]['unit'])} "
                      f"({_fmt(_num(f[n]['oracle']), f[n]['unit'])})" if n in f else "n/a")
    met = [g["passed"] for g in r["goals"] if g["passed"] is not None]
    lines.append(f"| {r['method']} | {_set(r['classes'])} | "
                 + " | ".join(cell(n) for n, _, _ in cols) + f" | {cell('relearn_50')} | "
                 f"{sum(met)}/{len(met)} | "
                 f"{'yes' if r['report']['verdict']['output_level_only'] else 'no'} |")
  return lines


def _seconds(v: float | None) -> str:
  return "not recorded" if v is None else f"{v:.0f} s"


def markdown(result: dict[str, Any]) -> str:
  """``depth.md`` from the runner's result."""
  models = result["models"]
  runs = [r for m in models for r in m["runs"]]
  cpu = sum(m.get("total_cpu_seconds") or 0 for m in models)
  load = lambda xs: " / ".join(f"{x:.1f}" for x in xs)
  lines = [
      "# Depth of forgetting against the retrain oracle (issue #19)", "",
      f"Command: `{result['command']}` (written {result['date']}; mnemonic-jax "
      f"{result['version']}).", "",
      f"Machine: {result['machine']}; load average (1/5/15 min) {load(result['load_start'])} "
      f"at the start and {load(result['load_end'])} at the end of the last invocation. "
      f"Compute recorded for the runs in this report: {cpu / 60:.1f} CPU minutes (training, "
      "oracles, methods and attacks, summed over the invocations that made them, from the "
      "cache; failed runs and trainings of an older runner not counted). The last invocation "
      f"(what it did not compute it read from the cache): {result['wall_seconds'] / 60:.1f} "
      "min wall, "
      f"{result['cpu_seconds'] / 60:.1f} CPU min.", "",
      "## Setup", "",
      "| model | architecture | data | epochs | train / test images | original test accuracy "
      "| training CPU |",
      "|---|---|---|---:|---|---:|---:|"]
  for m in models:
    lines.append(f"| {m['name']} | {m['model']} | {m['data']} | {m['epochs']} | "
                 f"{m['train_size']} / {m['test_size']} | {m['test_accuracy']:.1f}% | "
                 f"{_seconds(m['train_cpu_seconds'])} |")
  seeds = result["oracle_seeds"]
  lines += [
      "", f"Class sets: {', '.join(_set(c) for c in result['sets'])}; seed {result['seed']} "
      "(the model, its oracle and every method); "
      + (f"oracles of seeds {', '.join(map(str, seeds))} as well (same codes and config, "
         "`RetrainConfig(seed=s)`), for the oracle's seed-to-seed spread (std over "
         f"{len(seeds) + 1} oracles, beside each oracle value below)" if seeds else
         "one oracle per set, so no seed-to-seed spread: read small gaps as noise") + ".",
      "The oracle is `retrain` (the same config, initialisation and seed on the retained "
      "classes). Every attack is scored on the test split; the attacker's few labelled "
      "images, the probe's training images and the relearning sample come from the train "
      f"split. Attack settings: `{json.dumps(result['depth_config'])}`.", "",
      "Methods: every forgetting move of `mnemonic_jax.forgetting.MOVES` under its baseline "
      "name (`mnemonic` is the `algorithm2` move with the paper's lambdas, `mnemonic-auto` "
      "the `paper` move with searched lambdas; they read no training data) and the "
      "baselines, each with its published defaults except, on the digits models, "
      f"`{json.dumps(models[0]['baselines']) if models else ''}` (the settings of "
      "`digits_mlp`: digits has 11 batches an epoch). Data each method reads: the `data` "
      "column below.", ""]
  left = result.get("left_out", {})
  if left:
    lines += ["Left out: " + "; ".join(f"`{m}` ({why})" for m, why in left.items()) + ".", ""]
  for m in models:
    if m.get("skipped"):
      whys = dict.fromkeys(m["skipped"].values())
      lines += [f"Left out on {m['name']}: " + "; ".join(
          ", ".join(f"`{k}`" for k, v in m["skipped"].items() if v == why) + f" ({why})"
          for why in whys) + ".", ""]
  failures = [(m["name"], f) for m in models for f in m["failures"]]
  if failures:
    lines += ["Failed (not in the tables): " + "; ".join(
        f"{name} `{f['method']}` on {_set(f['classes'])}: {f['error'].rstrip('.')}"
        for name, f in failures) + ".", ""]
  lines += ["## Which methods meet the depth goals", "",
            f"Goals (issue #19), per run against the oracle of the same seed and set: "
            f"{GOAL_TEXT}. Counted over {len(runs)} runs (each method on each class set of "
            f"each model, seed {result['seed']}, less what was left out or failed).", "",
            *[line + "\n" for line in statement(runs)],
            "### Goal counts, all models (runs passing / runs where the goal applies)", "",
            *_goal_table(runs), ""]
  for m in models:
    lines += [f"## {m['name']}", "",
              f"{m['model']} on {m['data']}, {m['epochs']} epochs, original test accuracy "
              f"{m['test_accuracy']:.1f}%. Runs: {len(m['runs'])}; compute "
              f"{(m.get('total_cpu_seconds') or 0) / 60:.1f} CPU minutes.", "",
              f"![gaps to the oracle, {m['name']}]({figure_name(m['name'])})", "",
              "**Depth goals** (runs passing / applicable):", "", *_goal_table(m["runs"]), "",
              "**Mean gap to the oracle over the class sets** (method - oracle, points of "
              "forgotten-class test accuracy; E_F and A_R: negative is worse, the attacks: "
              "positive is worse; relearning: median ratio of steps, below 1 is faster than "
              "the oracle; 1 - CKA of the forgotten images' features to the original's, the "
              "oracle's in brackets):", "", *_gap_table(m["runs"]), "",
              "**The oracle** (value ± seed-to-seed std where measured):", "",
              *_oracle_table(m), "",
              "<details><summary>Every run: method (oracle)</summary>", "",
              *_run_table(m["runs"]), "", "</details>", ""]
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# CSV, JSON and plots.


def write_csv(result: dict[str, Any], path: pathlib.Path) -> None:
  """One row per run (see the module docstring)."""
  rows = []
  names: list[str] = []
  for m in result["models"]:
    spreads = {tuple(s["classes"]): s["spread"] for s in m["spreads"]}
    for r in m["runs"]:
      row = {"model": m["name"], "classes": "+".join(map(str, r["classes"])), "seed": r["seed"],
             "method": r["method"], "data": r["data"],
             "output_level_only": r["report"]["verdict"]["output_level_only"]}
      row.update({f"goal_{g['name']}": {True: "met", False: "missed", None: "n/a"}[g["passed"]]
                  for g in r["goals"]})
      spread = spreads.get(tuple(r["classes"]), {})
      for f in r["report"]["figures"]:
        names.append(f["name"]) if f["name"] not in names else None
        row.update({f["name"]: f["method"], f"{f['name']}_oracle": f["oracle"],
                    f"{f['name']}_original": f["original"],
                    f"{f['name']}_oracle_spread": spread.get(f["name"])})
      rows.append(row)
  fields = list(dict.fromkeys(k for row in rows for k in row))
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    writer.writerows(rows)


def compact(result: dict[str, Any]) -> dict[str, Any]:
  """The JSON written: each run's figures as ``name: [method, oracle, original, gap]``."""
  labels = {}
  models = []
  for m in result["models"]:
    runs = []
    for r in m["runs"]:
      figs = {}
      for f in r["report"]["figures"]:
        labels[f["name"]] = {"label": f["label"], "unit": f["unit"], "ratio": f["ratio"]}
        figs[f["name"]] = [f["method"], f["oracle"], f["original"], f["gap"]]
      runs.append({**{k: v for k, v in r.items() if k not in ("report", "cached")},
                   "verdict": r["report"]["verdict"], "skipped": r["report"]["skipped"],
                   "figures": figs})
    models.append({**m, "runs": runs})
  return {**result, "figures": labels, "models": models}


def figure_name(model: str) -> str:
  """``depth_<model>.png``, with a variant's colon as a dash (``digits_mlp:quick`` in a
  Markdown link reads as a URL scheme, and the figure was not shown)."""
  return f"depth_{model.replace(':', '-')}.png"


def plot_model(model: dict[str, Any], path: pathlib.Path) -> None:
  """Per method, its mean gap to the oracle on each attack, coloured by how much worse."""
  methods = _methods(model["runs"])
  gaps = np.full((len(methods), len(COLUMNS)), np.nan)
  ratio = np.full((len(methods), len(RELEARN)), np.nan)
  for i, m in enumerate(methods):
    figs = [_figures(r) for r in model["runs"] if r["method"] == m]
    for j, (name, _, _) in enumerate(COLUMNS):
      v = _mean([_num(f[name]["gap"]) for f in figs if name in f])
      gaps[i, j] = np.nan if v is None else v
    for j, (name, _) in enumerate(RELEARN):
      rs = [_num(f[name]["gap"]) for f in figs if name in f]
      rs = [r for r in rs if r is not None and not math.isnan(r)]
      ratio[i, j] = statistics.median(rs) if rs else np.nan
  worse = gaps * np.array([w for _, _, w in COLUMNS])
  fig = Figure(figsize=(12, 0.32 * len(methods) + 1.8), layout="constrained")
  FigureCanvasAgg(fig)
  left, right = fig.subplots(1, 2, width_ratios=[len(COLUMNS), len(RELEARN) + 0.4])
  image = left.imshow(np.clip(worse, -100, 100), cmap="RdBu_r", vmin=-100, vmax=100,
                      aspect="auto")
  for (i, j), v in np.ndenumerate(gaps):
    left.text(j, i, "n/a" if np.isnan(v) else f"{v:+.0f}", ha="center", va="center",
              fontsize=7, color="white" if abs(worse[i, j]) > 60 else "black")
  left.set_xticks(range(len(COLUMNS)), [h for _, h, _ in COLUMNS], rotation=40, ha="right",
                  fontsize=8)
  left.set_yticks(range(len(methods)), methods, fontsize=8)
  left.set_title(f"{model['name']}: mean gap to the oracle (points; red = worse than the "
                 "oracle)", fontsize=9)
  with np.errstate(divide="ignore"):
    faster = -np.log2(np.where(ratio > 0, ratio, 1 / 64))
  right.imshow(np.clip(faster, -3, 3), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
  fig.colorbar(image, ax=[left, right], shrink=0.5, label="points worse than the oracle")
  for (i, j), v in np.ndenumerate(ratio):
    right.text(j, i, "n/a" if np.isnan(v) else ("never" if np.isinf(v) else f"x{v:.2f}"),
               ha="center", va="center", fontsize=7,
               color="white" if abs(faster[i, j]) > 1.8 else "black")
  right.set_xticks(range(len(RELEARN)), [h for _, h in RELEARN], rotation=40, ha="right",
                   fontsize=8)
  right.set_yticks([])
  right.set_title("relearning steps\n/ oracle's (median;\nred = faster)", fontsize=8)
  fig.savefig(path, dpi=110)


def write_all(result: dict[str, Any], out: pathlib.Path) -> None:
  """Writes ``depth.md``, ``depth.csv``, ``depth.json`` and ``depth_<model>.png``, replacing
  the earlier report's together or not at all (:mod:`experiments.report_files`)."""
  with report_files.staged_report(out) as stage:
    (stage / "depth.json").write_text(json.dumps(compact(result), separators=(",", ":")) + "\n")
    write_csv(result, stage / "depth.csv")
    for m in result["models"]:
      if m["runs"]:
        plot_model(m, stage / figure_name(m["name"]))
    (stage / "depth.md").write_text(markdown(result))
