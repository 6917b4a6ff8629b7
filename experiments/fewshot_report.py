"""Issue #20's few-shot fallback against the depth goals: ``experiments/results/fewshot.md``.

Usage::

  python -m experiments.fewshot_report [--runs runs/experiments/fewshot]
      [--out experiments/results] [--relearn-steps 200]

Runs :mod:`experiments.depth` (``--oracle-seeds ''``) on the requests of :data:`REQUESTS`,
each in its own folder under ``--runs`` (its cache: a folder that holds the trained models,
oracles and runs is reused, a missing one is trained): the **design** request (fashion_cnn
seed 3, classes {2,4}, on which every setting was chosen) with :data:`DESIGN_METHODS` (the
chosen ``fewshot-reassign`` on three draws of its images and the settings screened against
it), and the nine **held-out** requests (fashion_cnn seeds 0 and 2, digits_vit seed 0;
classes 0, 6 and {0,1,2}) with :data:`HELD_OUT_METHODS`. Then writes ``fewshot.md`` (and
``fewshot.json``, every run's goals and figures) in ``--out``: per method, held out apart,
the goals each run meets, the data it read and its CPU seconds.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import mnemonic_jax
from experiments import common, depth, fewshot, runner_args

#: ``(folder, model, seed, classes, role)`` of every request group.
REQUESTS = (("design", "fashion_cnn", 3, "2+4", "design"),
            ("heldout_cnn_s0", "fashion_cnn", 0, "0,6,0+1+2", "held out"),
            ("heldout_cnn_s2", "fashion_cnn", 2, "0,6,0+1+2", "held out"),
            ("heldout_vit_s0", "digits_vit", 0, "0,6,0+1+2", "held out"))

#: The goals of :func:`mnemonic_jax.evaluation.depth_goals`, in report order.
GOALS = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")

_FS = fewshot.NAME
#: Held-out methods: the data-free default and the chosen few-shot setting.
HELD_OUT_METHODS = ("mnemonic-reassign", _FS)
#: Design methods: those, the chosen setting on two other draws of its images, and the
#: settings screened against it (targets spread over the 3 nearest remaining classes, a
#: penalty on retained margins) on three draws each.
DESIGN_METHODS = HELD_OUT_METHODS + tuple(
    f"{_FS}{variant}{draw}" for variant in ("", "@margin_w=1.0", "@margin_w=10.0",
                                            "@target='spread'", "@target='spread'@margin_w=1.0",
                                            "@target='spread'@margin_w=10.0")
    for draw in ("", "@seed=1", "@seed=2") if variant or draw)

#: Figures shown per run: (figure, column).
FIGURES = (("A_R", "A_R"), ("probe_recall", "probe"), ("ncm_recall", "NCM"),
           ("one_constant_shots", "1-const 10 shots"), ("relearn_50", "relearn 50%"))


def _value(x: Any) -> str:
  return x if isinstance(x, str) else f"{x:.1f}"


def _median(values: Sequence[float]) -> str:
  return f"{statistics.median(values):.1f}" if values else "n/a"


def data_read(run: dict[str, Any]) -> str:
  """What a run read, short: k and the draw's seed for a few-shot run, else its ``data``."""
  read = run.get("read")
  if not read:
    return run["data"]
  counts = sorted(set(read["images_per_class"].values()))
  return (f"{'-'.join(map(str, counts))} training images of each of "
          f"{len(read['images_per_class'])} classes, seed {read['seed']}")


def count_table(runs: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[str]:
  """Markdown rows: per method, runs passing / applicable for each goal, all goals, runs
  meeting every goal, the data it read, the median CPU seconds of the method per run."""
  rows = ["| method | data read | " + " | ".join(GOALS) + " | goals | every goal | CPU s |",
          "|---|---|" + "---:|" * (len(GOALS) + 3)]
  for method in methods:
    mine = [r for r in runs if r["method"] == method]
    if not mine:
      continue
    cells, met, applicable = [], 0, 0
    for goal in GOALS:
      passed = [g["passed"] for r in mine for g in r["goals"]
                if g["name"] == goal and g["passed"] is not None]
      cells.append(f"{sum(passed)}/{len(passed)}" if passed else "n/a")
      met, applicable = met + sum(passed), applicable + len(passed)
    every = sum(all(g["passed"] is not False for g in r["goals"]) for r in mine)
    data = sorted({data_read(r) for r in mine})
    rows.append(f"| `{method}` | {'; '.join(data)} | " + " | ".join(cells)
                + f" | {met}/{applicable} | {every}/{len(mine)} | "
                + f"{_median([r['method_cpu_seconds'] for r in mine])} |")
  return rows


def run_table(runs: Sequence[dict[str, Any]]) -> list[str]:
  """Markdown rows: every run's goals met and figures, the oracle's beside each."""
  rows = ["| model | seed | classes | method | goals | "
          + " | ".join(f"{c} (oracle)" for _, c in FIGURES) + " | method CPU s |",
          "|---|---:|---|---|---:|" + "---:|" * (len(FIGURES) + 1)]
  for r in runs:
    passed = [g["passed"] for g in r["goals"] if g["passed"] is not None]
    figures = " | ".join(f"{_value(r['figures'][f][0])} ({_value(r['figures'][f][1])})"
                         for f, _ in FIGURES)
    rows.append(f"| {r['model']} | {r['seed']} | {'+'.join(map(str, r['classes']))} | "
                f"`{r['method']}` | {sum(passed)}/{len(passed)} | {figures} | "
                f"{r['method_cpu_seconds']:.1f} |")
  return rows


def draw_means(runs: Sequence[dict[str, Any]]) -> list[tuple[str, float, list[int]]]:
  """Per setting (a method less its ``@seed=N``), the goals met in each of its runs (one
  per draw of the images) and their mean; best mean first."""
  goals: dict[str, list[int]] = {}
  for r in runs:
    setting = "@".join(p for p in r["method"].split("@") if not p.startswith("seed="))
    goals.setdefault(setting, []).append(sum(bool(g["passed"]) for g in r["goals"]))
  return sorted(((s, statistics.mean(g), g) for s, g in goals.items()), key=lambda x: -x[1])


def write(result: dict[str, Any], out: pathlib.Path) -> pathlib.Path:
  """Writes ``fewshot.md`` and ``fewshot.json`` in ``out`` from :func:`main`'s result."""
  runs = [dict(r, role=role) for role, part in result["parts"] for r in part]
  design = [r for r in runs if r["role"] == "design"]
  held = [r for r in runs if r["role"] == "held out"]
  read = next((r for r in runs if r["method"] == _FS), None)
  lines = [
      "# Issue #20's few-shot fallback against the depth goals", "",
      f"Command: `{result['command']}` (written {result['date']}; mnemonic-jax "
      f"{result['version']}). Every figure below comes from it.", "",
      f"Machine: {result['machine']}; load average {result['load_start'][0]:.1f} at the start "
      f"and {result['load_end'][0]:.1f} at the end; {result['cpu_seconds'] / 60:.1f} CPU minutes "
      "in this invocation (runs, models and oracles found in the `--runs` caches are read, "
      "not recomputed; their CPU seconds are those recorded when they were computed).", "",
      "Each request is `python -m experiments.depth --oracle-seeds '' --relearn-steps "
      f"{result['relearn_steps']}` on one folder of `--runs` (see experiments/fewshot_report.py): "
      "one oracle per class set, so no seed-to-seed spread; read gaps of a point or two as "
      "noise. Goals as in experiments/results/depth.md (issue #19).", "",
      "## What each method reads", "",
      "- `mnemonic-reassign`: no training data (the bundle's mnemonic codes).",
      f"- `{_FS}` (experiments/fewshot.py): "
      + (f"{read['data']}; per class {json.dumps(read['read']['images_per_class'])} "
         "(the run record's `read`). " if read else "")
      + "k = 10 real training images of every class, the remaining classes' too (100 on these "
      "10-class models); then the data-free reassign move.", "",
      "## Held out: 9 requests (fashion_cnn seeds 0 and 2, digits_vit seed 0; classes 0, 6, "
      "{0,1,2})", "",
      "The few-shot setting was fixed on the design request before these runs.", "",
      *count_table(held, HELD_OUT_METHODS), "",
      "By model:", ""]
  for model in sorted({r["model"] for r in held}):
    lines += [f"**{model}**", "", *count_table([r for r in held if r["model"] == model],
                                               HELD_OUT_METHODS), ""]
  lines += [
      "## Design: fashion_cnn seed 3, classes {2,4}", "",
      f"`{_FS}` on three draws of its images (`seed` 12345, 1, 2) and the settings screened "
      "against it: `target='spread'` (the original's softmax over the 3 remaining classes it "
      "ranks highest, as a retrained model spreads the class, instead of the nearest one) and "
      "`margin_w` (a penalty on each retained image's margin falling under the original's, to "
      "hold A_R). Goals met (of 6) per draw and their mean:", "",
      "| setting | goals per draw (12345, 1, 2) | mean |", "|---|---|---:|",
      *(f"| `{s}` | {', '.join(map(str, g))} | {m:.2f} |"
        for s, m, g in draw_means([r for r in design if r["method"].startswith(_FS)])), "",
      *count_table(design, result["design_methods"]), "",
      "## Every run", "",
      *run_table(design + held), ""]
  out.mkdir(parents=True, exist_ok=True)
  path = out / "fewshot.md"
  path.write_text("\n".join(lines))
  (out / "fewshot.json").write_text(json.dumps(
      {k: v for k, v in result.items() if k != "parts"} | {"runs": runs}, indent=1) + "\n")
  return path


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  """Runs the requests (see the module docstring); returns the path of ``fewshot.md``."""
  parser = common.RunnerParser(prog="experiments.fewshot_report", description=__doc__)
  parser.add_argument("--runs", type=common.out_path, default="runs/experiments/fewshot",
                      help="the folder of the requests' harness folders (caches)")
  parser.add_argument("--out", type=common.out_path, default="experiments/results",
                      help="where fewshot.md and fewshot.json go")
  parser.add_argument("--relearn-steps", type=common.positive_int(0), default=200,
                      help="the relearning attack's most steps (experiments.depth's)")
  args = parser.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  result: dict[str, Any] = {
      "command": runner_args.command_line("experiments.fewshot_report", argv),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "machine": common.machine_line(), "load_start": os.getloadavg(),
      "version": mnemonic_jax.__version__, "relearn_steps": args.relearn_steps,
      "design_methods": list(DESIGN_METHODS), "parts": []}
  c0 = depth.cpu_seconds()
  for folder, model, seed, classes, role in REQUESTS:
    methods = DESIGN_METHODS if role == "design" else HELD_OUT_METHODS
    where = pathlib.Path(args.runs) / folder
    depth.main(["--models", model, "--seed", str(seed), "--classes", classes,
                "--oracle-seeds", "", "--methods", ",".join(methods),
                "--relearn-steps", str(args.relearn_steps), "--out", str(where)])
    report = json.loads((where / "depth.json").read_text())
    result["parts"].append((role, [r for m in report["models"] for r in m["runs"]]))
  result.update(load_end=os.getloadavg(), cpu_seconds=depth.cpu_seconds() - c0)
  path = write(result, pathlib.Path(args.out))
  print(f"wrote {path}", flush=True)
  return path


if __name__ == "__main__":
  common.run_command(main, "experiments.fewshot_report")
