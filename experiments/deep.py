"""Which data-free rule goes deepest (issue #20): depth goals, chosen and held out apart.

Usage::

  python -m experiments.deep [--out experiments/results] [--work runs/deep]
      [--methods mnemonic,mnemonic-auto,...] [--report-only]

Runs :mod:`experiments.depth` on three parts, each in its own cache folder under
``--work`` (a rerun reuses every finished run), then writes ``deep.md``, ``deep.csv``,
``deep.json`` and ``deep.png`` to ``--out``:

* ``chosen``: the digits sigmoid, tanh and GELU MLPs, seed 0, classes 0, 6 and {0,1,2}:
  the runs the ``erase`` and ``reassign`` rules were designed and chosen on;
* ``held-out seed``: the same three architectures trained with seed 1, classes 3, 8 and
  {0,1,2} (models, classes and oracles never looked at during the choice);
* ``held-out architecture``: a ReLU MLP with a LayerNorm before its head
  (``digits_lnrelu``, trained only after the choice), the digits ViT and the ReLU CNN
  with BatchNorm on a Fashion-MNIST subset, seed 0, classes 0, 6 and {0,1,2};
* ``every class, seed 2`` (never looked at): the six models, every class alone and
  {0,1,2}; ``seed 0`` and ``seed 1``: the same again (three seeds); a few rules only
  (:data:`EVERY_CLASS_METHODS`), reported on their own and together.

Every method is scored against the retrain oracle of the same model, seed and class set
with :func:`mnemonic_jax.evaluation.depth_goals` (the goals of issue #19). The report
counts, per method, the runs passing each goal, the goals met in all, and its seconds
(compilation apart), with the held-out parts apart from the chosen one, and says which
rule meets the most goals on the held-out runs.
"""

from __future__ import annotations

import ast
import csv
import datetime
import json
import os
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any, NamedTuple

from experiments import common, report_files, runner_args
from experiments import depth as depth_run
from experiments import depth_models
from mnemonic_jax import configs


class Part(NamedTuple):
  """One part of the experiment: an ``experiments.depth`` run of its own.

  Attributes:
    name: ``chosen`` (the runs the rules were designed on) or a held-out part.
    models, seed, classes: what it runs (``experiments.depth``'s flags).
    methods: the methods it runs (``None``: ``--methods``); a part with fewer methods
      is reported on its own and left out of the held-out comparison, whose methods must
      all have run on the same runs.
  """

  name: str
  models: str
  seed: int
  classes: str
  methods: str | None = None


#: Every class alone and {0,1,2}.
EVERY_CLASS = ",".join([*map(str, range(10)), "0+1+2"])
#: The rules run on every class: the default, the one before it, the bias move (output
#: suppression) and the paper's move with its lambdas searched.
EVERY_CLASS_METHODS = "mnemonic-reassign,mnemonic-erase,mnemonic-bias,mnemonic-auto"

PARTS = (
    Part("chosen", "digits_sigmoid,digits_tanh,digits_gelu", 0, "0,6,0+1+2"),
    Part("held-out seed", "digits_sigmoid,digits_tanh,digits_gelu", 1, "3,8,0+1+2"),
    Part("held-out architecture", "digits_lnrelu,digits_vit,fashion_cnn", 0, "0,6,0+1+2"),
    *(Part(f"every class, seed {seed}", ",".join(depth_models.MODELS), seed, EVERY_CLASS,
           EVERY_CLASS_METHODS) for seed in (2, 0, 1)),
)
#: The parts of every class alone and {0,1,2}: the six models with seeds 2, 0 and 1 (seed 0
#: on the sigmoid, tanh and GELU MLPs holds the chosen runs' class sets; seed 2 was never
#: looked at before it was reported).
EVERY_CLASS_PARTS = tuple(p.name for p in PARTS if p.classes == EVERY_CLASS)
#: The held-out parts every method runs on: the comparison that names the best rule.
COMPARED = tuple(p.name for p in PARTS if p.name != "chosen" and p.methods is None)
#: The rules compared: the paper's (given and searched lambdas), this project's
#: data-free moves, and a comparator that reads training images (``svd-projection``,
#: Kodge et al. 2024), at its published CIFAR-10 defaults (100 images of each retained
#: class and up to 900 of the forgotten) and few-shot (``samples=10``: 10 images of the
#: forgotten classes and ``10 // retained`` = 1 of each retained class).
METHODS = ("mnemonic,mnemonic-auto,mnemonic-bias,mnemonic-project,mnemonic-erase,"
           "mnemonic-reassign,mnemonic-shrink,mnemonic-shrink+bias,svd-projection,"
           "svd-projection@samples=10")
GOALS = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")


def _folder(part: str) -> str:
  return part.replace(",", "").replace(" ", "_").replace("-", "")


def _plain(value: Any) -> Any:
  return ast.literal_eval(value) if isinstance(value, str) else value


def load_runs(work: pathlib.Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Every run of every part (``part`` added), and each part's depth.json header."""
  runs, headers = [], []
  for part in (p.name for p in PARTS):
    path = work / _folder(part) / "depth.json"
    if not path.exists():
      continue
    result = json.loads(path.read_text())
    recorded = sum(float(m.get("total_cpu_seconds") or 0.0) for m in result["models"])
    headers.append({"part": part, "recorded_cpu_seconds": recorded,
                    **{k: result[k] for k in ("command", "machine", "date", "load_start")
                       if k in result}})
    for model in result["models"]:
      for run in model["runs"]:
        runs.append({**run, "part": part, "goals": _plain(run["goals"])})
  return runs, headers


def original_under_oracle(run: dict[str, Any]) -> bool:
  """Whether the run's original model already has an A_R more than 1 point under its
  oracle's (``figures["A_R"]`` is ``[method, oracle, original, gap]``): a rule that keeps
  the original's accuracy on the remaining classes misses the forgetting goal there."""
  a_r = (run.get("figures") or {}).get("A_R")
  return bool(a_r) and float(a_r[2]) < float(a_r[1]) - 1


def tally(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per method: per goal ``[passed, applicable]``, goals met, runs meeting every goal,
  the forgetting misses on runs whose original is already under its oracle's A_R
  (:func:`original_under_oracle`), the median seconds (compilation apart) and the data
  it reads."""
  out: dict[str, dict[str, Any]] = {}
  for run in runs:
    row = out.setdefault(run["method"], {"goals": {g: [0, 0] for g in GOALS}, "met": 0,
                                         "applicable": 0, "every": 0, "runs": 0,
                                         "forgetting_missed_original_under": 0,
                                         "seconds": [], "data": run["data"]})
    row["runs"] += 1
    row["forgetting_missed_original_under"] += (
        original_under_oracle(run)
        and any(g["name"] == "forgetting" and g["passed"] is False for g in run["goals"]))
    row["seconds"].append(float(run.get("method_seconds", float("nan"))))
    applicable = [g for g in run["goals"] if g["passed"] is not None]
    for goal in applicable:
      row["goals"][goal["name"]][0] += bool(goal["passed"])
      row["goals"][goal["name"]][1] += 1
    row["met"] += sum(bool(g["passed"]) for g in applicable)
    row["applicable"] += len(applicable)
    row["every"] += all(g["passed"] for g in applicable)
  for row in out.values():
    seconds = sorted(row.pop("seconds"))
    row["median_seconds"] = seconds[len(seconds) // 2] if seconds else float("nan")
  return out


def _misses(row: dict[str, Any]) -> str:
  """``"forgetting in 2/18 (1 of them ...), probe in 5/5"``: a method's missed goals."""
  under = row["forgetting_missed_original_under"]
  note = (f" ({under} of them on models whose own A_R is already more than 1 point under "
          f"the oracle's)") if under else ""
  return ", ".join(f"{g} in {a - p}/{a}" + (note if g == "forgetting" else "")
                   for g, (p, a) in row["goals"].items() if a and p < a)


def _table(counts: dict[str, dict[str, Any]]) -> list[str]:
  lines = ["| method | data | " + " | ".join(GOALS) + " | goals met | every goal (runs) | "
           "seconds (median) |", "|---|---|" + "---:|" * (len(GOALS) + 3)]
  for method, row in sorted(counts.items(), key=lambda kv: -kv[1]["met"]):
    cells = [f"{p}/{a}" if a else "n/a" for p, a in (row["goals"][g] for g in GOALS)]
    lines.append(f"| {method} | {row['data']} | " + " | ".join(cells)
                 + f" | {row['met']}/{row['applicable']} | {row['every']}/{row['runs']} | "
                 f"{row['median_seconds']:.2f} |")
  return lines


def plot(held: dict[str, dict[str, Any]], path: pathlib.Path) -> None:
  """Held-out goals met (fraction) against median seconds, one point per method."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for method, row in held.items():
    x, y = max(row["median_seconds"], 1e-3), row["met"] / max(row["applicable"], 1)
    ax.scatter(x, y)
    ax.annotate(method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
  ax.set_xscale("log")
  ax.set_xlabel("seconds per request (median, compilation apart)")
  ax.set_ylabel("depth goals met on held-out runs (fraction)")
  ax.set_title("Held-out depth goals against time")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def planned_runs(methods: str) -> dict[str, int]:
  """Per part, the runs it plans: models x class sets x methods (``methods``: the
  ``--methods`` of the parts that take them)."""
  return {p.name: len(p.models.split(",")) * len(p.classes.split(","))
          * len((p.methods or methods).split(",")) for p in PARTS}


def incomplete_line(runs: Sequence[dict[str, Any]], planned: dict[str, int]) -> str:
  """``**Incomplete:** ...`` naming the parts with fewer runs than planned, or ``""``."""
  short = [(part, sum(r["part"] == part for r in runs), n) for part, n in planned.items()]
  short = [(part, found, n) for part, found, n in short if found < n]
  if not short:
    return ""
  return ("**Incomplete:** " + "; ".join(f"{part}: {found} of {n} runs"
                                          for part, found, n in short)
          + " (a part stopped, failed or not run). Every count below covers the runs that "
          "exist, and nothing more.")


def write(runs: list[dict[str, Any]], headers: list[dict[str, Any]], out: pathlib.Path,
          command: str, planned: dict[str, int] | None = None) -> dict[str, Any]:
  """Writes deep.md/.csv/.json/.png, replacing the earlier report's together or not at all
  (:mod:`experiments.report_files`); returns the summary."""
  chosen = tally([r for r in runs if r["part"] == "chosen"])
  held = tally([r for r in runs if r["part"] in COMPARED])
  by_part = {p.name: tally([r for r in runs if r["part"] == p.name]) for p in PARTS}
  data_free = {m: r for m, r in held.items() if r["data"] == "none"}
  best = max(data_free, key=lambda m: (data_free[m]["met"], data_free[m]["every"])) \
      if data_free else None
  summary = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "machine": common.machine_line(), "load": os.getloadavg(), "parts": headers,
             "chosen": chosen, "held_out": held, "by_part": by_part, "best_held_out": best}
  parts = "\n".join(f"* {h['part']}: `{h['command']}` (compute recorded in its cache: "
                    f"{h['recorded_cpu_seconds'] / 60:.0f} CPU min for the methods and the "
                    f"attacks, training and oracles included where they were run)"
                    for h in headers)
  which = ("the data-free rule meeting the most depth goals is" if len(data_free) > 1
           else "the only data-free rule run is")
  best_line = (f"**On the held-out runs, {which} `{best}`** "
               f"({data_free[best]['met']}/{data_free[best]['applicable']} goals; "
               f"every goal in {data_free[best]['every']}/{data_free[best]['runs']} runs)."
               if best else "No held-out runs yet.")
  every = tally([r for r in runs if r["part"] in EVERY_CLASS_PARTS])
  every_line = ""
  if best in every:
    seeds = ", ".join(str(p.seed) for p in PARTS if p.name in EVERY_CLASS_PARTS
                      and by_part[p.name])
    models = len({r["model"] for r in runs if r["part"] in EVERY_CLASS_PARTS})
    counts = [f"`{m}` {r['met']}/{r['applicable']} goals, every goal in {r['every']}/"
              f"{r['runs']} runs" for m, r in sorted(every.items(), key=lambda kv: (
                  kv[0] != best, -kv[1]["met"]))]
    every_line = (f"On every class alone and {{0,1,2}} (the `every class` parts, seeds "
                  f"{seeds}, {models} model{'' if models == 1 else 's'}): " + "; ".join(counts)
                  + f". `{best}` misses {_misses(every[best])}.")
  misses = _misses(data_free[best]) if best else ""
  incomplete = incomplete_line(runs, planned or {})
  lines = [
      "# Which data-free rule goes deepest (issue #20)", "",
      f"Command: `{command}` (written {summary['date']}).", "",
      f"Machine: {summary['machine']} (load average at the end: "
      f"{', '.join(f'{v:.1f}' for v in summary['load'])}).",
      "", "Parts (each an `experiments.depth` run, cached under the work folder):", "", parts,
      "", *([incomplete, ""] if incomplete else []),
      "Goals (issue #19; per run, against the retrain oracle of the same model, seed and "
      "class set): forgetting (E_F >= 99, A_R >= oracle - 1), one_constant (<= oracle + 10 "
      "both ways), input_scale (<= oracle + 5 at x1.5, x2, x3), probe (linear probe and "
      "nearest-class-mean recall <= oracle + 5, only where the original and the oracle "
      "differ by more than 10 points), prototype (<= oracle + 10), relearning (no faster "
      "than the oracle). `data`: what the method reads besides the model and the codes "
      "(`none`: data-free; `svd-projection` reads training images: at its published "
      "CIFAR-10 defaults, 100 of each retained class and up to 900 of the forgotten one).", "",
      best_line + (f" It misses {misses} of the applicable held-out runs." if misses
                   else ""), "", *([every_line, ""] if every_line else []),
      "What no output-layer rule (`reassign`, `erase`, `project`, `bias`) changes is the "
      "original's features: the probe and nearest-class-mean attacks find the class "
      "wherever the original and the oracle differ (the `probe` column). After `erase` one "
      "constant added back to the forgotten logits recovers the class beyond the oracle in "
      "most runs, since every remaining logit sits level on the class's images; `reassign` "
      "hands the class's evidence to the remaining classes nearest it in the head, so those "
      "images are taken by the classes that resemble them, as by the oracle.", "",
      "## Held out (seed 1 on new classes; architectures trained after the choice)", "",
      *_table(held), "",
      "## Chosen on (the runs the rule was designed on: not evidence)", "",
      *_table(chosen), "",
      *[line for part in PARTS[1:] if by_part[part.name]
        for line in (f"## {part.name}" + ("" if part.methods is None else
                                          f" (rules: {part.methods.replace(',', ', ')})"), "",
                     *_table(by_part[part.name]), "")],
      "![held-out goals against seconds](deep.png)", "",
      "Per run: `deep.csv` (every goal's pass or fail); every attack's figure, method and "
      "oracle side by side: each part's `depth.md` in `deep_parts/`.", ""]
  with report_files.staged_report(out) as stage:  # Every file replaced together, or none.
    (stage / "deep.json").write_text(json.dumps(summary, indent=1, default=str))
    with open(stage / "deep.csv", "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["part", "model", "seed", "classes", "method", "data", "method_seconds",
                       *GOALS])
      for r in runs:
        passed = {g["name"]: g["passed"] for g in r["goals"]}
        writer.writerow([r["part"], r["model"], r["seed"], "+".join(map(str, r["classes"])),
                         r["method"], r["data"], f"{r.get('method_seconds', float('nan')):.4f}",
                         *[passed.get(g) for g in GOALS]])
    plot(held, stage / "deep.png")
    (stage / "deep.md").write_text("\n".join(lines))
  return summary


_OPTIONS = "deep_options.json"  # The parts' run options, kept for --report-only.


def run_options(work: pathlib.Path, args: Any) -> dict[str, Any]:
  """The parts' ``methods`` and ``relearn_steps``: those given, else (``--report-only``)
  those the run that made the parts recorded under ``work``, else the defaults.

  Raises:
    SystemExit: (2, one line) ``--report-only`` with an option that differs from the run's.
  """
  given = {"methods": args.methods, "relearn_steps": args.relearn_steps}
  recorded = {}
  if args.report_only and (work / _OPTIONS).exists():
    recorded = json.loads((work / _OPTIONS).read_text())
    differ = [k for k, v in given.items() if v is not None and v != recorded.get(k)]
    if differ:
      flag = "--" + differ[0].replace("_", "-")
      common.fail(f"{flag} {given[differ[0]]} differs from the run that made the parts "
                  f"under {work} ({recorded.get(differ[0])}): the report describes that "
                  f"run; leave {flag} out", "experiments.deep")
  defaults = {"methods": METHODS, "relearn_steps": 200}
  return {k: v if v is not None else recorded.get(k, defaults[k]) for k, v in given.items()}


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  """Runs the parts (unless ``--report-only``) and writes the report; returns deep.md."""
  parser = common.RunnerParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=common.out_path, default="runs/experiments",
                      help="where deep.md goes (default: the scratch folder)")
  parser.add_argument("--work", type=common.out_path, default="runs/deep",
                      help="the parts' caches and depth reports")
  parser.add_argument("--methods", default=None,
                      help=f"comma-separated methods (default: {METHODS}; with --report-only, "
                      "those of the run that made the parts)")
  parser.add_argument("--relearn-steps", default=None,
                      type=common.positive_int(0, configs.MAX_STEPS),
                      help="relearning attack's steps (default 200; with --report-only, the "
                      "run's)")
  parser.add_argument("--report-only", action="store_true",
                      help="write the report from the parts already run")
  args = parser.parse_args(argv)
  work, out = pathlib.Path(args.work), pathlib.Path(args.out)
  options = run_options(work, args)
  args.methods, args.relearn_steps = options["methods"], options["relearn_steps"]
  if not args.report_only:
    work.mkdir(parents=True, exist_ok=True)
    report_files.write_text(work / _OPTIONS, json.dumps(options, indent=1) + "\n")
    for part in PARTS:
      depth_run.main(["--models", part.models, "--seed", str(part.seed), "--classes",
                      part.classes, "--oracle-seeds", "", "--methods",
                      part.methods or args.methods, "--relearn-steps",
                      str(args.relearn_steps), "--out", str(work / _folder(part.name))])
  runs, headers = load_runs(work)
  if not runs:  # A report of nothing would still state the findings of its prose.
    common.fail(f"no runs under {work}: run without --report-only first (or pass the "
                "--work folder of an earlier run)", "experiments.deep")
  rerun = ["--methods", args.methods, "--relearn-steps", str(args.relearn_steps),
           "--out", str(out), "--work", str(work)]  # What reproduces it from scratch.
  with report_files.staged_report(out) as stage:  # deep.* and the parts' copies together.
    for part in (p.name for p in PARTS):  # Each part's full report beside deep.md.
      source = work / _folder(part)
      if (source / "depth.md").exists():
        target = stage / "deep_parts" / _folder(part)
        target.mkdir(parents=True, exist_ok=True)
        for name in ["depth.md", "depth.csv", *(p.name for p in source.glob("depth_*.png"))]:
          shutil.copyfile(source / name, target / name)
    write(runs, headers, out, runner_args.command_line("experiments.deep", rerun),
          planned_runs(args.methods))
  print(f"wrote {out / 'deep.md'}")
  return out / "deep.md"


if __name__ == "__main__":
  common.run_command(main, "experiments.deep")
