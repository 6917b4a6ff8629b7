"""Robust data-free forgetting across architectures (issue #11): rules x models x seeds.

Usage::

  python -m experiments.robust [--models digits_sigmoid,digits_tanh,...] \\
      [--methods paper-auto,head,...] [--seeds 0,1,2] [--out experiments/results] \\
      [--choose-seeds 0] [--train] [--report-only] [--bench MODEL]

Every model is a bundle trained with codes (trained here and cached under
``<out>/cache/<name>/seed<k>`` if missing; the cached bundles of :mod:`experiments.table`
are reused). Each single class and the set {0, 1, 2} is forgotten from it with each
method of :data:`METHODS` (a move of :data:`mnemonic_jax.forgetting.MOVES`, codes only),
then evaluated on the test
split: the goal is E_F = 100 and A_R at most 1 point below before (as
:mod:`experiments.table`). Runs are cached as JSON in ``<out>/runs/robust/``, keyed on
what changes their result (:func:`robust_key`: the model's training config, the seed, the
classes, the method and its move's settings, the library version); a rerun reuses a run
only on an equal key, says how many it reused and computed, and rebuilds the report
``<out>/robust.md`` (+ ``.json``, ``_goal.png``). A cached model is used only if it was
trained with its spec's config (:func:`experiments.common.trained_model`). A run file
written before runs recorded their key (every committed one) is computed again unless
``--reuse-keyless`` or ``--report-only`` is given (the report then says how many it
reused). With nothing to report (no run cached or computed) it refuses: one line, exit 2,
nothing written.

``--choose-seeds`` names the seeds on which the rule was chosen; the report counts them
apart from the held-out ones. ``--bench MODEL`` also times each rule against the paper's
fixed lambdas (the compiled ``forget``) on one model, after a warm-up; it needs that
model's bundle of seed 0 (cached under ``<out>/cache/``, which git does not track, or
trained with ``--train``). Without ``--bench`` the earlier report's cost table is kept,
marked as carried over from it (:func:`earlier_bench`), never dropped without a word.
"""

import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Sequence

import numpy as np

from experiments import common, report_files, run_cache, runner_args
from mnemonic_jax import forgetting, metrics, workflow
from mnemonic_jax.data import load_dataset

GOAL_A_R_DROP = 1.0
#: name -> (cache directory, config spec to train it if missing, description).
MODELS = {
    "digits_sigmoid": ("digits_mlp", "digits_mlp",
                       "MLP 64-1000 sigmoid -10, digits, 200 epochs"),
    "digits_tanh": ("robust_digits_tanh", "experiments/configs/robust_models.py:digits_tanh",
                    "MLP 64-1000 tanh -10, digits, 200 epochs"),
    "digits_gelu": ("robust_digits_gelu", "experiments/configs/robust_models.py:digits_gelu",
                    "MLP 64-1000 GELU -10, digits, 200 epochs"),
    "digits_vit": ("robust_digits_vit", "experiments/configs/robust_models.py:digits_vit",
                   "ViT 2x2 patches, width 64, depth 2, digits, 100 epochs"),
    "fashion_sigmoid": ("fashion_mnist_mlp-e20", "fashion_mnist_mlp:e20",
                        "MLP 784-1000 sigmoid -10, Fashion-MNIST, 20 epochs"),
    "fashion_tanh": ("robust_fashion_tanh", "experiments/configs/robust_models.py:fashion_tanh",
                     "MLP 784-1000 tanh -10, Fashion-MNIST, 20 epochs"),
    "fashion_gelu": ("robust_fashion_gelu", "experiments/configs/robust_models.py:fashion_gelu",
                     "MLP 784-1000 GELU -10, Fashion-MNIST, 20 epochs"),
    "fashion_vit": ("fashion_mnist_vit", "fashion_mnist_vit",
                    "ViT 7x7 patches, width 64, depth 4, Fashion-MNIST, 20 epochs"),
    "fashion_sigmoid200": ("fashion_mnist_mlp", "fashion_mnist_mlp",
                           "MLP 784-1000 sigmoid -10, Fashion-MNIST, 200 epochs (paper)"),
}
FORGET_SETS = tuple((c,) for c in range(10)) + ((0, 1, 2),)
#: This runner's method names -> the move of :data:`mnemonic_jax.forgetting.MOVES` each
#: makes with its default options. The names are those of the cached runs
#: (``<out>/runs/robust/*-<method>.json``) and of the committed report, so they stay:
#: ``paper-auto`` is the ``paper`` move (the paper's move, lambdas searched on the codes).
METHODS = {"paper-auto": "paper", **{m: m for m in ("signed", "head", "steps", "shrink",
                                                      "dampen", "bias", "shrink+bias")}}


def model_config(model: str, seed: int):
  """The config of ``model`` (a key of :data:`MODELS`) with ``seed``."""
  config, _ = common.load_config(MODELS[model][1])
  config.seed = seed
  return config


def load_model(out: pathlib.Path, model: str, seed: int, train: bool):
  """The cached bundle of ``model``'s config (trained if missing and ``train``), or None.

  Only a bundle trained with the spec's config is used (:func:`common.trained_model`:
  ``<out>/cache/<dir>/seed<k>``, or ``seed<k>-<digest>`` beside it for another config).
  """
  cache, _, _ = MODELS[model]
  bundle, _ = common.trained_model(model_config(model, seed), out / "cache" / cache,
                                   f"seed{seed}", progress=False, train=train)
  return bundle


def robust_key(plain: dict[str, Any], classes: Sequence[int], method: str,
               version: str = run_cache.VERSION) -> dict[str, Any]:
  """Everything that changes one run's result: the trained model's config (``plain``:
  :func:`experiments.run_cache.config_key`, training fields, seed set), the classes, the
  method and its move's settings (defaults included), the library version, and the code
  of the move (:data:`experiments.run_cache.CODE_FIELD`: a run of code changed since is
  computed again)."""
  move = forgetting.MOVES[METHODS[method]]
  return {"runner": "experiments.robust", "version": version, "config": plain,
          "classes": [int(c) for c in classes], "method": method,
          "move": run_cache.settings(move()),
          run_cache.CODE_FIELD: run_cache.method_code(move.baseline)}


def legacy_robust_key(out: pathlib.Path, model: str, record: dict[str, Any]
                      ) -> dict[str, Any] | None:
  """The key a run file written before keys was computed with: the spec's config (or the
  cached bundle's, :func:`experiments.common.legacy_config`), the move's defaults."""
  try:
    seed, classes, method = int(record["seed"]), record["classes"], record["method"]
  except (KeyError, TypeError, ValueError):
    return None
  if method not in METHODS:
    return None
  cache, spec, _ = MODELS[model]
  plain = common.legacy_config(spec, out / "cache" / cache, f"seed{seed}", seed)
  plain = {k: v for k, v in plain.items() if k not in run_cache.FORGET_FIELDS}
  return robust_key(plain, classes, method, run_cache.LEGACY_VERSION)


def forget_with(method: str, apply_fn, params, codes, classes: Sequence[int]):
  """Forgets ``classes`` with the move of ``method`` (a key of :data:`METHODS`).

  Returns:
    ``(new_params, summary)``: ``summary`` holds ``seconds``, ``compile_seconds``,
    ``met``, the code scores ``before`` and ``after`` (floats) and ``steps``: the chosen
    steps of a step-grid move, or ``[{lambda1, lambda2, sign}]`` for ``paper-auto`` (the
    records' shape since the runner began).
  """
  new_params, report = forgetting.forget(apply_fn, params, codes, list(classes),
                                         move=METHODS[method])
  summary = report.to_dict()
  if method == "paper-auto":
    summary["steps"] = [{k: summary[k] for k in ("lambda1", "lambda2", "sign")}]
  return new_params, summary


def run_one(bundle, apply_fn, test, logits_before, classes, method) -> dict[str, Any]:
  """Forgets ``classes`` with ``method``; E_F, A_R and the codes' margins."""
  new_params, summary = forget_with(method, apply_fn, bundle.params, bundle.codes, classes)
  logits = workflow.predict(bundle.replace(params=new_params), test.images)
  before = metrics.forgetting_metrics(logits_before, test.labels, classes)
  after = metrics.forgetting_metrics(logits, test.labels, classes)
  record = {"classes": list(classes), "method": method, "A_R": after["A_R"],
            "E_F": after["E_F"], "A_R_before": before["A_R"], "E_F_before": before["E_F"],
            "accuracy_before": before["accuracy"], "seconds": summary["seconds"],
            "compile_seconds": summary["compile_seconds"], "met": summary["met"],
            "code_before": summary["before"], "code_after": summary["after"],
            "steps": summary.get("steps"),
            "shift_recovered": metrics.shift_recovery(logits, test.labels, classes)}
  record["goal"] = bool(record["E_F"] >= 100 - 1e-9
                        and record["A_R"] >= record["A_R_before"] - GOAL_A_R_DROP)
  return record


def bench(out: pathlib.Path, model: str, methods: Sequence[str], repeats: int = 3,
          train: bool = False) -> dict[str, Any]:
  """Seconds of each rule against the paper's fixed lambdas (compiled ``forget``).

  Returns:
    ``{"model", "rows" (the table's Markdown rows), "machine", "measured" (when), "load"
    (the 1-minute load average), "carried": False}``.

  Raises:
    SystemExit: (2, one line) the model's bundle of seed 0 is not cached and ``train`` is
      False.
  """
  bundle = load_model(out, model, 0, train=train)
  if bundle is None:
    common.fail(f"--bench {model}: no cached bundle under {out / 'cache' / MODELS[model][0]}"
                "/seed0 (cached bundles are not in git); train it (--train) or drop --bench "
                "(the earlier report's cost table is then kept, marked as carried over)",
                prog="experiments.robust")
  apply, params, codes = bundle.apply_fn(), bundle.params, bundle.codes
  rows = []

  def timed(fn):
    fn()  # Warm-up: compilation.
    best = np.inf
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - start)
    return best

  fixed = timed(lambda: forgetting.forget(apply, params, codes, [3], 1e-3, 10.0))
  rows.append(f"| paper, fixed lambdas (1e-3, 10) | {fixed:.3f} | 1.0 |")
  for method in methods:
    s = timed(lambda m=method: forget_with(m, apply, params, codes, [3]))
    rows.append(f"| {method} | {s:.3f} | {s / fixed:.1f} |")
  return {"model": model, "rows": rows, "machine": common.machine_line(),
          "measured": run_cache.now(), "load": f"{os.getloadavg()[0]:.1f}", "carried": False}


BENCH_HEADING = "## Cost against the fixed path"


def earlier_bench(out: pathlib.Path) -> dict[str, Any] | None:
  """The cost table of the report in ``out``, to carry over into one rebuilt without
  ``--bench`` (measuring it needs a cached bundle, which a clone does not have).

  Read from ``robust.json``'s ``bench`` where it has one, else (a report written before
  the JSON kept it) from ``robust.md``'s section, with the machine and date of that report.

  Returns:
    :func:`bench`'s dict with ``carried`` True, or None where the earlier report has no
    cost table.
  """
  json_path, md_path = out / "robust.json", out / "robust.md"
  try:
    data = json.loads(json_path.read_text())
  except (OSError, ValueError):
    data = None
  data = data if isinstance(data, dict) else {}
  if "bench" in data:  # Kept by the JSON (None: that report had no cost table).
    return {**data["bench"], "carried": True} if isinstance(data["bench"], dict) else None
  try:
    text = md_path.read_text()
  except OSError:
    return None
  if BENCH_HEADING not in text:
    return None
  section = text.split(BENCH_HEADING, 1)[1].split("\n## ", 1)[0]
  rows = [line for line in section.splitlines()
          if line.startswith("| ") and not line.startswith("| rule |")]
  model = re.search(r"seed 0 of `([^`]+)`", section)
  load = re.search(r"cost table below was measured[^(]*\(load average ([\d.]+)\)", text)
  if isinstance(data.get("provenance"), dict):
    stamp = {"machine": data["provenance"].get("machine", ""),
             "written": data["provenance"].get("written", "")}
  else:
    stamp = run_cache.earlier_stamp(json_path, md_path) or {}
  return {"model": model.group(1) if model else "", "rows": rows,
          "machine": stamp.get("machine", ""), "measured": stamp.get("written", ""),
          "load": load.group(1) if load else "", "carried": True}


def bench_lines(cost: dict[str, Any] | None) -> list[str]:
  """The report's cost section (nothing without a cost table)."""
  if not cost:
    return []
  lines = ["", BENCH_HEADING, ""]
  if cost["carried"]:
    when = ", ".join(x for x in (
        f"measured {cost['measured']}" if cost.get("measured") else "",
        f"on {cost['machine']}" if cost.get("machine") else "",
        f"load average {cost['load']}" if cost.get("load") else "") if x)
    when = when or "when and where not recorded"
    lines += [f"**Carried over from the earlier report** in this folder ({when}), not "
              "measured by this command, which had no `--bench`: "
              "`--bench MODEL` measures it again, from that model's cached bundle of seed 0 "
              "(`<out>/cache/`, which git does not track).", ""]
  return lines + [f"Forgetting class 3 from seed 0 of `{cost['model']}`, best of 3 after a "
                  "warm-up (compilation excluded); ratio = seconds / the paper's "
                  "fixed-lambda `forget`.", "", "| rule | seconds | ratio |", "|---|---|---|",
                  *cost["rows"]]


def write_report(out, records, models, methods, choose_seeds, command, cost, notes, prov,
                 missing=""):
  """``robust.md``, ``robust.json``, ``robust_goal.png`` and ``robust_ar_ef.png``, replacing
  the earlier report's together or not at all (:mod:`experiments.report_files`).

  ``missing``: a sentence saying which of the command's runs the report lacks (``""``: none).
  ``cost``: the cost table (:func:`bench`, or :func:`earlier_bench` carried over) or None.
  ``prov`` (:func:`experiments.run_cache.prepare_report`) says in the header how many runs
  this command computed, where and when, and how many it reused from which earlier files.
  """
  # pylint: disable-next=import-outside-toplevel
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  by = {}
  for r in records:
    by.setdefault((r["model"], r["method"]), []).append(r)
  lines = ["# Robust data-free forgetting: rules x architectures (issue #11)", "",
           f"Command: `{command}`", "", run_cache.runs_paragraph(prov), "",
           "The runs' seconds were measured in their own sessions, where and when each was "
           "computed (the committed ones on 2 CPU cores shared with other work, contended)" + (
               "." if not cost else
               "; the cost table below was carried over from the earlier report, not "
               "measured by this command (see there)." if cost["carried"] else
               f"; the cost table below was measured by this command on {cost['machine']} "
               f"(load average {cost['load']})."), "",
           f"Goal: E_F = 100 "
           f"and A_R at most {GOAL_A_R_DROP:g} point below before, on the test split. Every "
           "rule sees the codes only (never real data); each rule is the move of that name "
           "in `mnemonic_jax/forgetting/moves/`; `paper-auto` = the `paper` move, the "
           "paper's move with the data-free lambda search (`moves/paper_search.py`).", "",
           f"Seeds the rule was chosen on: {', '.join(map(str, choose_seeds)) or 'none'} "
           "(of the digits models); everything else is held out.", ""]
  lines += run_cache.notes_lines(notes, prov)
  lines += ["## Models", "", "| model | description | seeds | test accuracy before |",
            "|---|---|---|---|"]
  for m in models:
    rs = [r for r in records if r["model"] == m and len(r["classes"]) == 1]
    seeds = sorted({r["seed"] for r in rs})
    accs = {r["seed"]: r["accuracy_before"] for r in rs}
    lines.append(f"| {m} | {MODELS[m][2]} | {', '.join(map(str, seeds))} | "
                 + ", ".join(f"{accs[s]:.1f}" for s in seeds) + " |")
  lines += ["", missing] if missing else []
  lines += ["", "## Goal count per model x rule", "",
            "single = every class 0-9 forgotten alone; multi = {0,1,2}; chosen / held out = "
            "the runs on the seeds the rule was chosen on / the others. ΔA_R and E_F: mean "
            "over runs; min E_F: the worst run; shift-recovered: accuracy (%) on the "
            "forgotten classes' test images once the one constant that maximises the test "
            "accuracy is added back to their logits (mean; near the accuracy before = the "
            "forgetting is a logit shift; see `mnemonic_jax.metrics.shift_recovery`); "
            "s = forgetting seconds "
            "after compilation (mean, contended CPU).", ""]
  lines += ["| model | rule | single | multi | held-out single | held-out multi | ΔA_R | "
            "E_F | min E_F | shift-recovered | s |", "|---" * 11 + "|"]
  for m in models:
    for meth in methods:
      rs = by.get((m, meth), [])
      if not rs:
        continue
      sing = [r for r in rs if len(r["classes"]) == 1]
      mult = [r for r in rs if len(r["classes"]) > 1]
      held = lambda xs: [r for r in xs
                         if not (m.startswith("digits") and r["seed"] in choose_seeds)]
      cnt = lambda xs: f"{sum(r['goal'] for r in xs)}/{len(xs)}"
      lines.append(
          f"| {m} | {meth} | {cnt(sing)} | {cnt(mult)} | {cnt(held(sing))} | "
          f"{cnt(held(mult))} | {np.mean([r['A_R'] - r['A_R_before'] for r in rs]):+.2f} | "
          f"{np.mean([r['E_F'] for r in rs]):.1f} | {min(r['E_F'] for r in rs):.1f} | "
          f"{np.mean([r.get('shift_recovered', np.nan) for r in rs]):.1f} | "
          f"{np.mean([r['seconds'] for r in rs]):.3f} |")
  lines += ["", "## Misses, with the codes' margins", "",
            "Per model x rule, over the runs that miss the goal: how many; of those, how many "
            "forgot every forgotten code (code accuracy 0) but not every test image (E_F < "
            "100), and how many lost more than 1 point of A_R; the median margins on the "
            "codes (own logit minus best other; forgotten = largest over the forgotten codes, "
            "remaining = smallest over the others) before -> after. Every run, misses "
            "included, is in `robust.json` (`code_before`, `code_after`, `steps`).", "",
            "| model | rule | misses | codes forgotten, images not | A_R lost > 1 | "
            "forgotten-code margin | remaining-code margin |", "|---|---|---|---|---|---|---|"]
  for m in models:
    for meth in methods:
      miss = [r for r in by.get((m, meth), []) if not r["goal"]]
      if not miss:
        continue
      med = lambda key, when: np.median([r[when][key] for r in miss])
      codes_only = sum(r["code_after"]["forget_accuracy"] == 0 and r["E_F"] < 100 - 1e-9
                       for r in miss)
      ar_lost = sum(r["A_R"] < r["A_R_before"] - GOAL_A_R_DROP for r in miss)
      lines.append(
          f"| {m} | {meth} | {len(miss)} | {codes_only} | {ar_lost} | "
          f"{med('forget_margin', 'code_before'):.2f} -> "
          f"{med('forget_margin', 'code_after'):.2f} | "
          f"{med('remain_margin', 'code_before'):.2f} -> "
          f"{med('remain_margin', 'code_after'):.2f} |")
  lines += bench_lines(cost)

  with report_files.staged_report(out) as stage:  # Every file replaced together, or none.
    fig = Figure(figsize=(max(6, 1.3 * len(models)), 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(methods), 1)
    for i, meth in enumerate(methods):
      share = []
      for m in models:
        rs = by.get((m, meth), [])
        share.append(100 * np.mean([r["goal"] for r in rs]) if rs else np.nan)
      ax.bar(np.arange(len(models)) + i * width, share, width, label=meth)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, rotation=20, fontsize=8)
    ax.set_ylabel("% runs meeting the goal")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=len(methods), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.savefig(stage / "robust_goal.png", dpi=110)

    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for meth in methods:
      rs = [r for r in records if r["method"] == meth]
      ax.scatter([r["E_F"] for r in rs], [r["A_R"] - r["A_R_before"] for r in rs], s=10,
                 label=meth, alpha=0.6)
    ax.axhline(-GOAL_A_R_DROP, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("E_F (test, %)")
    ax.set_ylabel("ΔA_R (points)")
    ax.legend(fontsize=7)
    fig.savefig(stage / "robust_ar_ef.png", dpi=110)
    lines += ["", "## Plots", "", "![goal](robust_goal.png)", "", "![ar_ef](robust_ar_ef.png)", ""]
    (stage / "robust.md").write_text("\n".join(lines))
    (stage / "robust.json").write_text(json.dumps(
        {"command": command, "machine": prov["machine"], "provenance": prov, "notes": notes,
         "bench": cost, "runs": records}, indent=1))


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  p = common.RunnerParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default=",".join(MODELS),
                 help="comma-separated models (all by default)")
  p.add_argument("--methods", default=",".join(METHODS),
                 help="comma-separated moves (all by default; paper-auto: the 'paper' move)")
  p.add_argument("--seeds", type=common.seed_list, default="0,1,2",
                 help="seeds of every model, comma-separated")
  p.add_argument("--choose-seeds", type=common.seed_list, default="0",
                 help="the seeds the rules were chosen on (the others are held out)")
  p.add_argument("--out", type=common.out_path, default=common.SCRATCH,
                 help="where the runs, the cached models and the report go (a scratch "
                      "folder by default; --out experiments/results updates the committed "
                      "report)")
  p.add_argument("--train", action="store_true", help="train missing models")
  p.add_argument("--bench", default="", metavar="MODEL",
                 help="a model to time the rules on (needs its cached bundle of seed 0, or "
                      "--train); without it, the earlier report's cost table is carried "
                      "over, marked so")
  p.add_argument("--note", action="append", default=[],
                 help="a paragraph for the report, added to the notes file (kept by reruns)")
  p.add_argument("--notes-file", default=None,
                 help="the report's notes: paragraphs separated by blank lines (default: "
                      "<out>/robust_notes.md; edit it to change them)")
  p.add_argument("--report-only", action="store_true",
                 help="only rebuild the report from the cached runs (skip missing ones), "
                      "those written before runs recorded their key included")
  p.add_argument(runner_args.REUSE_KEYLESS, action="store_true",
                 help=runner_args.REUSE_KEYLESS_HELP)
  args = p.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  command = runner_args.command_line("experiments.robust", argv)
  models = [m for m in args.models.split(",") if m]
  methods = [m for m in args.methods.split(",") if m]
  bad = [m for m in models if m not in MODELS] + [m for m in methods if m not in METHODS]
  if bad:
    common.fail(f"unknown models or methods {bad}", prog="experiments.robust")
  seeds, choose = args.seeds, args.choose_seeds  # ASCII digits (common.seed_list).
  if not seeds:
    common.fail("--seeds names no seed; give e.g. 0,1,2", prog="experiments.robust")
  if args.bench and args.bench not in MODELS:
    common.fail(f"--bench {args.bench}: not a model ({','.join(MODELS)})",
                prog="experiments.robust")
  out = pathlib.Path(args.out)
  # Timed first, so that a bundle it lacks is refused before any work.
  cost = bench(out, args.bench, methods, train=args.train) if args.bench else None
  runs = out / "runs" / "robust"  # Created by the first run computed.
  cache = run_cache.RunCache(runs, common.machine_line(),
                             reuse_keyless=args.reuse_keyless or args.report_only)
  records, tests, no_models = [], {}, []
  for model in models:
    legacy = lambda record, m=model: legacy_robust_key(out, m, record)
    for seed in seeds:
      bundle, no_model = None, False
      plain = run_cache.config_key(model_config(model, seed), training_only=True)
      for cs in FORGET_SETS:
        for method in methods:
          stem = f"{model}-seed{seed}-c{'_'.join(map(str, cs))}-{method}"
          key = robust_key(plain, cs, method)
          cached = cache.get(stem, key, legacy)
          if cached is not None:
            records.append(cached)
            continue
          if args.report_only or no_model:
            continue
          if bundle is None:
            bundle = load_model(out, model, seed, args.train)
            if bundle is None:
              no_model = True
              continue
            if bundle.dataset not in tests:
              tests[bundle.dataset] = load_dataset(bundle.dataset, "test")
            test = tests[bundle.dataset]
            logits_before = workflow.predict(bundle, test.images)
            apply_fn = bundle.apply_fn()  # One per bundle: the programs compile once.
          record = run_one(bundle, apply_fn, test, logits_before, cs, method)
          record.update(model=model, seed=seed)
          records.append(cache.put(stem, key, record))
          print(f"{model} seed{seed} {cs} {method}: E_F {record['E_F']:.1f} A_R "
                f"{record['A_R_before']:.1f}->{record['A_R']:.1f} goal {record['goal']}",
                flush=True)
      if no_model:  # Not cached and --train not given: the cached runs still count.
        no_models.append(f"{model} seed{seed}")
  if not records:  # An empty report would replace a good one (and exit 0).
    keyless = (f"; {cache.keyless_not_reused} cached runs were written before runs recorded "
               f"their key ({runner_args.REUSE_KEYLESS} or --report-only reports them)"
               if cache.keyless_not_reused else "")
    why = ("--report-only computes none" if args.report_only else
           "no model is cached with its config: pass --train to train them")
    common.fail("no run to report: none is cached under --out for these models, seeds and "
                f"methods{keyless}, and none was computed ({why}; or give --out the folder "
                "of an earlier run); nothing was written", "experiments.robust")
  for item in no_models:
    print(f"{item}: no cached model trained with its config (pass --train); only its cached "
          "runs are reported", file=sys.stderr)
  print(f"experiments.robust: {cache.summary()} ({runs})", file=sys.stderr)
  planned = len(models) * len(seeds) * len(FORGET_SETS) * len(methods)
  missing = "" if len(records) == planned else (
      f"**Not every run is here**: this report holds {len(records)} of the {planned} runs "
      "its command names; the others were neither cached nor computed ("
      + ("--report-only" if args.report_only else
         "no model cached with its config for " + ", ".join(no_models)
         + "; --train trains them") + ").")
  models = [m for m in models if any(r["model"] == m for r in records)]
  cost = cost or earlier_bench(out)
  with report_files.staged_report(out):  # The notes file goes with the report's files.
    prov, notes = run_cache.prepare_report(
        out, "robust", cache, args.note,
        pathlib.Path(args.notes_file) if args.notes_file else None, command=command,
        prog="experiments.robust")
    write_report(out, records, models, methods, choose, command, cost, notes, prov, missing)
  return out / "robust.md"


if __name__ == "__main__":
  common.run_command(main, "experiments.robust", show=True)
