"""Forgetting table: train once per seed, forget each class in turn, evaluate, report.

Usage::

  python -m experiments.table --config digits_mlp[:variant] \\
      --classes all --seeds 3 [--lambdas paper,auto] [--multi 0,1,2] \\
      [--out experiments/results]

Without ``--out`` everything goes to the scratch folder ``runs/experiments`` (see
:data:`SCRATCH`), never to the committed ``experiments/results``.

For each seed ``config.seed + k`` (k < ``--seeds``) the model is trained once with
:func:`mnemonic_jax.workflow.train` into ``<out>/cache/<name>/seed<seed>`` (resumable,
reused on a rerun). Then every requested class, and the ``--multi`` set, is forgotten
from that model with each lambda choice of ``--lambdas``:

* ``paper``: the config's ``lambda1``/``lambda2`` (the hand-picked values of the paper);
* ``auto``: the ``paper`` move of :mod:`mnemonic_jax.forgetting` (the paper's move with
  ``(lambda1, lambda2)`` searched on the codes, data-free; the rule of
  :func:`experiments.common.rule_from_config`).

Each run is evaluated on the test split and on (a capped subset of) the training split,
and attacked with the three membership-inference attacks of :mod:`mnemonic_jax.mia`.
Every run is cached as one JSON file in ``<out>/runs/<name>/``, keyed on everything that
changes its result (:func:`run_key_of`: the config but its bookkeeping fields, the seed,
the classes, the lambda choice and for ``auto`` its rule, ``--train-cap``, ``--mia-cap``,
the library version; :mod:`experiments.run_cache`). A rerun reuses a run only on an equal
key, computes the others, and says how many of each. A run file written before runs
recorded their key (the committed ``digits_mlp``, ``fashion_mnist_mlp*`` and
``fashion_mnist_vit`` runs) was computed by code that is not recorded: it is computed again
unless ``--reuse-keyless`` is given, and the report says how many came from such files.
Outputs: ``<out>/<name>.md`` (the command; how many runs this command computed, on which
machine and when, and how many it reused from earlier files with where and when those were
computed, so a report rebuilt from cached runs says that nothing was recomputed; the
notes; the per-class table with mean +- std over seeds, paper vs auto side by side),
``<name>.csv``, ``<name>.json`` and plots ``<name>_*.png``. ``--note`` paragraphs are kept
in ``<out>/<name>_notes.md``: a rerun without ``--note`` keeps them (edit the file to change
them).

``<name>`` is ``config.name``, followed by ``-<variant>`` for a variant.

With ``--methods m1,m2,...`` the runner compares unlearning methods instead (the retrain
oracle, the baselines and the mnemonic methods; see :mod:`experiments.compare`).
"""

import argparse
import csv
import dataclasses
import json
import pathlib
import sys
from typing import Any, Sequence

from tqdm.auto import tqdm

from experiments import common, compare, plots, report_files, run_cache, runner_args
from experiments.common import (
    GOAL_A_R_DROP, MIA_CAP, TRAIN_CAP, SeedContext, fail, forget_sets_of, legacy_config,
    load_config, machine_line, mean_std, measure, rule_from_config, run_key, run_name,
    seed_context, set_label, train_subset)
from mnemonic_jax import configs, forgetting, workflow
from mnemonic_jax.data import load_dataset
from mnemonic_jax.forgetting.criterion import Rule

MODES = ("paper", "auto")
#: The registered method (:mod:`mnemonic_jax.baselines`) whose code each lambda choice runs:
#: its source, and that of every library module it imports, is part of a run's key.
MODE_METHODS = {"paper": forgetting.MOVES["algorithm2"].baseline,
                "auto": forgetting.MOVES["paper"].baseline}
SCRATCH = common.SCRATCH


# ----------------------------------------------------------------------------------------
# One run: forget, evaluate, attack.


def forget_run(ctx: SeedContext, classes: Sequence[int], mode: str, config, rule,
               test, train_images, train_labels, mia_cap: int) -> dict[str, Any]:
  """Forgets ``classes`` from ``ctx.bundle`` with ``mode`` lambdas; everything measured."""
  bundle = ctx.bundle
  record: dict[str, Any] = {"seed": ctx.seed, "classes": list(classes), "mode": mode}
  if mode == "none":
    new = bundle
    record.update(lambda1=None, lambda2=None, sign=None, forget_seconds=0.0,
                  forget_compile_seconds=0.0)
  else:
    if mode == "paper":  # The paper's Algorithm 2 with the config's lambdas.
      new, report = workflow.forget_bundle(bundle, classes, float(config.lambda1),
                                           float(config.lambda2))
    else:  # The paper's move, lambdas searched on the codes.
      new, report = workflow.forget_bundle(bundle, classes,
                                           move=forgetting.moves.Paper(rule=rule))
    details = report.details
    search = getattr(details, "search", None)
    record.update(
        lambda1=details.lambda1, lambda2=details.lambda2, sign=details.sign,
        forget_seconds=report.seconds, forget_compile_seconds=report.compile_seconds,
        code_scores={k: v for k, v in report.to_dict().items()
                     if k in ("before", "after", "rejected")},
        search=None if search is None else search.to_dict())
  record.update(measure(ctx, new, classes, test, train_images, train_labels, mia_cap,
                        logits=(ctx.test_logits, ctx.train_logits) if mode == "none" else None))
  record["goal"] = bool(record["E_F"] >= 100.0 - 1e-9
                        and record["A_R"] >= record["A_R_before"] - GOAL_A_R_DROP)
  record["train_seconds"] = ctx.train_seconds
  return record


# ----------------------------------------------------------------------------------------
# The key of a cached run.

def run_key_of(config_plain: dict[str, Any], classes: Sequence[int], mode: str,
               rule: dict[str, Any] | None, train_cap: int, mia_cap: int,
               version: str = run_cache.VERSION) -> dict[str, Any]:
  """Everything that changes the result of one run of the table.

  Args:
    config_plain: :func:`experiments.run_cache.config_key` of the config, seed set (its
      training fields and its forgetting ones: ``lambda1``/``lambda2`` of ``paper``...).
    classes: the forgotten set.
    mode: ``none``, ``paper`` or ``auto``.
    rule: the rule of an ``auto`` run (as a dict), else ignored.
    train_cap: training examples evaluated.
    mia_cap: the attacks' cap.
    version: the library version.

  Returns:
    The key (a plain dict); for ``paper`` and ``auto`` with the code of the method they run
    (:data:`MODE_METHODS`, :data:`experiments.run_cache.CODE_FIELD`): a run of code
    changed since is computed again.
  """
  key = {"runner": "experiments.table", "version": version, "config": config_plain,
         "classes": [int(c) for c in classes], "mode": mode,
         "rule": rule if mode == "auto" else None, "train_cap": train_cap,
         "mia_cap": mia_cap}
  if mode in MODE_METHODS:
    key[run_cache.CODE_FIELD] = run_cache.method_code(MODE_METHODS[mode])
  return key


def legacy_key(spec: str, out: pathlib.Path, name: str, record: dict[str, Any]
               ) -> dict[str, Any] | None:
  """The key a run file written before keys was computed with, or None if it cannot tell.

  The config is :func:`experiments.common.legacy_config`'s; the caps are the defaults
  (no committed command set them); an ``auto`` run's rule is the one it records, a field
  it lacks read as that field's default (``fallback`` came later, with the value every
  earlier search used).
  """
  try:
    seed, classes, mode = int(record["seed"]), record["classes"], record["mode"]
  except (KeyError, TypeError, ValueError):
    return None
  rule = None
  if mode == "auto":
    recorded = (record.get("search") or {}).get("rule")
    if not isinstance(recorded, dict):
      return None
    rule = {**dataclasses.asdict(Rule()), **recorded}
  plain = legacy_config(spec, out / "cache" / name, f"seed{seed}", seed)
  return run_key_of(plain, classes, mode, rule, TRAIN_CAP, MIA_CAP, run_cache.LEGACY_VERSION)


# ----------------------------------------------------------------------------------------
# Report.


def fmt_lambda(v: float) -> str:
  return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def lambda_cell(runs: Sequence[dict[str, Any]]) -> str:
  pairs = [f"{fmt_lambda(r['lambda1'])}/{fmt_lambda(r['lambda2'])}" for r in runs]
  return ", ".join(pairs)


def write_report(out: pathlib.Path, name: str, config, records: list[dict[str, Any]],
                 modes: Sequence[str], forget_sets: Sequence[tuple[int, ...]],
                 seeds: Sequence[int], class_names: Sequence[str], command: str,
                 notes: Sequence[str], rule, prov: dict[str, Any]) -> None:
  """Writes ``<name>.md``, ``.csv``, ``.json`` and the plots.

  ``prov`` (:func:`experiments.run_cache.prepare_report`) says in the header how many runs
  this command computed, on which machine and when, and how many it reused from which
  earlier files; ``notes`` are the report's hand-written notes (kept in their file).
  """
  by = {}
  for r in records:
    by.setdefault((tuple(r["classes"]), r["mode"]), []).append(r)
  label = lambda cs: set_label(cs, class_names)

  lines = [f"# {name}: one-shot forgetting, class by class", ""]
  lines += [f"Command: `{command}`", "", run_cache.runs_paragraph(prov), "",
            f"Seeds: {', '.join(map(str, seeds))}. Each seed trains one model; each class "
            "(and the multi-class set) is forgotten from it separately.", ""]
  plain = workflow.to_plain(config)
  lines += ["Config: " + ", ".join(f"{k}={v}" for k, v in plain.items()), ""]
  lines += [f"Lambda choices: `paper` = lambda1 {config.lambda1}, lambda2 {config.lambda2} "
            f"(the config's); `auto` = data-free search, rule {dataclasses.asdict(rule)} "
            f"(the `paper` move, `mnemonic_jax/forgetting/moves/paper_search.py`).", ""]
  lines += run_cache.notes_lines(notes, prov)

  lines += ["## Goal", "",
            f"E_F = 100 and A_R at most {GOAL_A_R_DROP:g} point below the same model's A_R "
            "before forgetting. Count of class x seed runs meeting it:", ""]
  lines += ["| lambdas | single classes | multi-class |", "|---|---|---|"]
  for mode in modes:
    single = [r for cs in forget_sets if len(cs) == 1 for r in by.get((cs, mode), [])]
    multi = [r for cs in forget_sets if len(cs) > 1 for r in by.get((cs, mode), [])]
    lines.append(f"| {mode} | {sum(r['goal'] for r in single)} / {len(single)} | "
                 f"{sum(r['goal'] for r in multi)} / {len(multi)} |")
  lines.append("")

  lines += ["## Per class (mean ± std over seeds, population std; test split)", "",
            "A_R before = accuracy on the remaining classes before forgetting; ΔA_R = after - "
            "before (per seed, then averaged); goal = runs meeting the goal.", ""]
  head = "| forgotten | acc before | A_R before |"
  sep = "|---|---|---|"
  for mode in modes:
    head += f" A_R {mode} | ΔA_R {mode} | E_F {mode} | goal {mode} |"
    sep += "---|---|---|---|"
  lines += [head + " lambdas auto (l1/l2 per seed) |", sep + "---|"]
  for cs in forget_sets:
    base = by.get((cs, modes[0]), [])
    if not base:
      continue
    acc_before = [100 - r["E_F_before"] for r in base]
    row = f"| {label(cs)} | {mean_std(acc_before)} | {mean_std([r['A_R_before'] for r in base])} |"
    for mode in modes:
      rs = by.get((cs, mode), [])
      row += (f" {mean_std([r['A_R'] for r in rs])} | "
              f"{mean_std([r['A_R'] - r['A_R_before'] for r in rs], 2)} | "
              f"{mean_std([r['E_F'] for r in rs])} | {sum(r['goal'] for r in rs)}/{len(rs)} |")
    auto = by.get((cs, "auto"), [])
    row += f" {lambda_cell(auto) if auto else '-'} |"
    lines.append(row)
  lines.append("")

  misses = [r for r in records if r["mode"] in modes and not r["goal"]]
  lines += ["## Runs that miss the goal", ""]
  if not misses:
    lines += ["None.", ""]
  else:
    lines += ["Margins are on the codes (own logit minus the best other): the forgotten "
              "codes' largest margin after forgetting, and the remaining codes' smallest.", ""]
    lines += ["| lambdas | seed | forgotten | E_F | A_R before -> after | forgotten-code margin "
              "after | smallest remaining-code margin before -> after | why |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(misses, key=lambda r: (r["mode"], len(r["classes"]), r["classes"], r["seed"])):
      cs = r["code_scores"]
      fm, rm0, rm1 = (cs["after"]["forget_margin"], cs["before"]["remain_margin"],
                      cs["after"]["remain_margin"])
      why = []
      if r["E_F"] < 100.0 - 1e-9:
        why.append("forgotten code " + ("still classified right" if fm > 0 else
                                        f"pushed only to margin {fm:.1f}"))
      if r["A_R"] < r["A_R_before"] - GOAL_A_R_DROP:
        why.append(f"rest disturbed: remaining-code margin {rm0:.1f} -> {rm1:.1f}")
      if r["mode"] == "auto" and r.get("search") and not r["search"]["met"]:
        why.append("no grid candidate met the rule")
      lines.append(
          f"| {r['mode']} | {r['seed']} | {label(tuple(r['classes']))} | {r['E_F']:.1f} | "
          f"{r['A_R_before']:.1f} -> {r['A_R']:.1f} | {fm:.2f} | {rm0:.2f} -> {rm1:.2f} | "
          f"{'; '.join(why)} |")
    lines.append("")

  lines += ["## Other measures (mean ± std over every class x seed run)", "",
            "Retained/forgotten train = accuracy on training samples of the remaining/forgotten "
            "classes. MIAs (`mnemonic_jax.mia.all_attacks`; members = retained training "
            "samples): **entropy** = fraction of forgotten training samples an entropy "
            "attack calls member (lower is better); **confidence** = MIA-efficacy, % of "
            "forgotten training samples a confidence SVC calls non-member (higher is better); "
            "**loss** = cross-validated accuracy of telling forgotten training samples from "
            "test samples of the same classes by their loss (50 is ideal). `none` = the model "
            "before forgetting. The right reference for all three is a model retrained "
            "without the forgotten class (not run here).", ""]
  lines += ["| lambdas | test acc | retained train | forgotten train | entropy MIA | "
            "confidence MIA | loss MIA | forget s | compile s | eval s | MIA s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for mode in ("none", *modes):
    rs = [r for r in records if r["mode"] == mode]
    if not rs:
      continue
    lines.append(
        f"| {mode} | {mean_std([r['accuracy'] for r in rs])} | "
        f"{mean_std([r['retain_train_accuracy'] for r in rs])} | "
        f"{mean_std([r['forget_train_accuracy'] for r in rs])} | "
        f"{mean_std([r['mia']['entropy_mia'] for r in rs], 3)} | "
        f"{mean_std([r['mia']['confidence_mia'] for r in rs])} | "
        f"{mean_std([r['mia']['loss_mia'] for r in rs])} | "
        f"{mean_std([r['forget_seconds'] for r in rs], 3)} | "
        f"{mean_std([r['forget_compile_seconds'] for r in rs], 2)} | "
        f"{mean_std([r.get('eval_seconds') for r in rs], 2)} | "
        f"{mean_std([r['mia_seconds'] for r in rs], 2)} |")
  train_s = {r["seed"]: r["train_seconds"] for r in records}
  lines += ["", "Training seconds per seed: " + ", ".join(
      f"seed {s}: {'not recorded' if v is None else f'{v:.0f}'}"
      for s, v in sorted(train_s.items())), ""]
  lines += ["Forget s: forgetting after compilation (for `auto`, the whole search: Fishers once, "
            "every grid candidate scored on the codes, then the chosen move); compile s: its "
            "compilation, apart.", ""]

  with report_files.staged_report(out) as stage:  # Every file replaced together, or none.
    figures = plots.write_all(stage, name, records, modes, forget_sets, class_names)
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]

    (stage / f"{name}.md").write_text("\n".join(lines))
    (stage / f"{name}.json").write_text(json.dumps(
        {"command": command, "machine": prov["machine"], "provenance": prov, "notes": notes,
         "config": plain, "rule": dataclasses.asdict(rule), "runs": records}, indent=1))
    fields = ["seed", "classes", "mode", "lambda1", "lambda2", "sign", "A_R", "E_F", "accuracy",
              "A_R_before", "E_F_before", "goal", "retain_train_accuracy", "forget_train_accuracy",
              "entropy_mia", "confidence_mia", "loss_mia", "forget_seconds",
              "forget_compile_seconds", "eval_seconds", "mia_seconds", "train_seconds"]
    with open(stage / f"{name}.csv", "w", newline="") as f:
      writer = csv.DictWriter(f, fields)
      writer.writeheader()
      for r in records:
        row = {k: r.get(k) for k in fields}
        row.update(r["mia"])
        row["classes"] = " ".join(map(str, r["classes"]))
        writer.writerow(row)


# ----------------------------------------------------------------------------------------
# Main.


def build_parser() -> argparse.ArgumentParser:
  p = common.RunnerParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True,
                 help="a packaged config (digits_mlp, ...) or path/to/config.py, with "
                      "[:variant]; --config.FIELD=VALUE overrides a field (the report's "
                      "name then ends +FIELD=VALUE)")
  p.add_argument("--classes", default="all", help="'all' or comma-separated class ids")
  p.add_argument("--seeds", type=common.positive_int(), default=3,
                 help="number of seeds (config.seed + k)")
  p.add_argument("--lambdas", default="paper,auto", help="comma-separated: paper, auto")
  p.add_argument("--methods", default=None,
                 help="compare unlearning methods instead (experiments.compare): comma-"
                      "separated names of mnemonic_jax.baselines, e.g. "
                      "retrain,finetune,ssd,mnemonic,mnemonic-auto")
  p.add_argument("--inputs", default="trained-codes",
                 help="with --methods: the mnemonic methods' Fisher inputs, comma-separated: "
                      "trained-codes, fresh-codes, zeros, one-image (the codes ablation)")
  p.add_argument("--data", default="all",
                 help="with --methods: training data the methods may read: none, forget, "
                      "retain or all (default)")
  p.add_argument("--sweep", nargs="?", const="all", default=None, metavar="METHODS",
                 help="with --methods: also run each method that registers a ladder of "
                      "settings (or only those named, comma-separated) as <method>:sweep, "
                      "the strongest setting that keeps its accuracy on retained training "
                      "examples (mnemonic_jax.baselines.base.sweep)")
  p.add_argument("--no-relearn", action="store_true",
                 help="with --methods: skip the relearning-time measurement")
  p.add_argument("--depth", action="store_true",
                 help="with --methods (retrain among them): attack every method's forgetting "
                      "with the depth suite of mnemonic_jax.evaluation against the retrain "
                      "oracle (experiments.compare_depth); slow, off by default")
  p.add_argument("--depth-relearn-steps", type=common.positive_int(0), default=None,
                 help="with --depth: the most relearning steps per model (0: no relearning "
                      "attack; default: the suite's)")
  p.add_argument("--depth-probe-per-class", type=int, default=None,
                 help="with --depth: training images per class the linear probe is fitted on "
                      "(default: the suite's, 500)")
  p.add_argument("--report", type=common.report_name, default=None,
                 help="with --methods: the report's base name (default: <name>_baselines)")
  p.add_argument("--multi", default="0,1,2", help="one multi-class set ('' for none)")
  p.add_argument("--out", type=common.out_path, default=None,
                 help=f"output directory (default: {SCRATCH}, a scratch folder; pass "
                      "--out experiments/results to update the committed results)")
  p.add_argument("--train-cap", type=common.positive_int(), default=TRAIN_CAP,
                 help="training examples evaluated (random subset, seed 0)")
  p.add_argument("--mia-cap", type=common.positive_int(2), default=MIA_CAP,
                 help="members and non-members each capped at this many for the MIAs")
  p.add_argument("--note", action="append", default=[],
                 help="a paragraph for the report, kept in <report>_notes.md beside it (a "
                      "rerun without --note keeps it; edit that file to change it)")
  p.add_argument(runner_args.REUSE_KEYLESS, action="store_true",
                 help=runner_args.REUSE_KEYLESS_HELP)
  p.add_argument("--no-progress", action="store_true")
  return p


#: Options only the methods comparison reads (``--sweep`` and ``--depth`` say why apart).
_METHODS_ONLY = ("inputs", "data", "no_relearn", "report")
#: Options only ``--depth`` reads.
_DEPTH_ONLY = ("depth_relearn_steps", "depth_probe_per_class")


def refuse_ignored_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Exits with one line if an option was given that this run would ignore.

  ``--inputs`` without ``--methods``, ``--lambdas`` with it, or ``--depth-*`` without
  ``--depth`` used to be dropped without a word, so a run did something else than asked.
  """
  given = lambda dest: getattr(args, dest) != parser.get_default(dest)

  def refuse(dests: tuple[str, ...], where: str, fix: str) -> None:
    named = ["--" + d.replace("_", "-") for d in dests if given(d)]
    if named:
      fail(f"{', '.join(named)} only appl{'ies' if len(named) == 1 else 'y'} {where}; {fix}")

  if args.methods is None:
    refuse(_METHODS_ONLY, "to the methods comparison", "pass --methods ...")
  elif given("lambdas"):
    fail("--lambdas chooses the paper's lambdas for the forgetting table, which --methods "
         "does not run; name mnemonic (the paper's lambdas) or mnemonic-auto in --methods")
  if not args.depth:
    refuse(_DEPTH_ONLY, "with --depth", "pass --depth too")


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    rest, overrides = configs.split_overrides(argv)
  except configs.ConfigError as e:
    fail(str(e))
  parser = build_parser()
  args = parser.parse_args(rest)
  refuse_ignored_options(parser, args)
  if args.out is None:
    args.out = SCRATCH
    print(f"experiments.table: writing to the scratch folder {SCRATCH} (pass --out DIR to "
          "choose one)", file=sys.stderr)
  command = runner_args.command_line("experiments.table", argv)
  config, variant = load_config(args.config, overrides)
  name = run_name(config, variant)  # Its runs and trained models (keyed on the config).
  report = run_name(config, variant, overrides)  # Its report: one per overridden config.
  if args.depth_probe_per_class is not None and args.depth_probe_per_class < 1:
    fail(f"--depth-probe-per-class must be at least 1, got {args.depth_probe_per_class}")
  if args.methods is not None:
    try:  # Before anything is written.
      methods, _ = compare.parse_methods(args.methods, args.inputs, args.data, args.depth)
      compare.parse_sweep(args.sweep, methods)
      compare.check_settings(config, methods)
    except compare.UsageError as e:
      fail(str(e))
    return compare.run(args, config, name, command, report)
  if args.sweep is not None:
    fail("--sweep runs methods' ladders, which only the methods comparison runs; pass "
         "--methods ...")
  if args.depth:
    fail("--depth attacks each method against the retrain oracle, which only the methods "
         "comparison trains; pass --methods retrain,...")
  modes = [m for m in args.lambdas.split(",") if m]
  bad = [m for m in modes if m not in MODES]
  if bad or not modes:
    fail(f"unknown --lambdas {bad or args.lambdas!r}; use {','.join(MODES)}")
  if "paper" in modes and "auto" in (config.lambda1, config.lambda2):
    fail(f"{name} has no hand-picked lambdas; use --lambdas auto")
  rule = rule_from_config(config)
  test = load_dataset(config.dataset, "test", data_dir=config.get("data_dir"))
  forget_sets = forget_sets_of(args, test.info.num_classes)  # Checked before writing.
  out = pathlib.Path(args.out)
  runs_dir = out / "runs" / name
  runs_dir.mkdir(parents=True, exist_ok=True)
  seeds = [int(config.seed) + k for k in range(args.seeds)]
  plan = [(s, cs, mode) for s in seeds for cs in forget_sets for mode in ("none", *modes)]
  cache = run_cache.RunCache(runs_dir, machine_line(), reuse_keyless=args.reuse_keyless)
  rule_dict = dataclasses.asdict(rule)
  legacy = lambda record: legacy_key(args.config, out, name, record)

  train = None
  records, contexts = [], {}
  bar = tqdm(plan, desc=name, unit="run", disable=args.no_progress)
  for seed, cs, mode in bar:
    stem = run_key(seed, cs, mode)
    key = run_key_of(run_cache.config_key(config, seed), cs, mode, rule_dict, args.train_cap,
                     args.mia_cap)
    bar.set_postfix_str(stem)
    cached = cache.get(stem, key, legacy)
    if cached is not None:
      records.append(cached)
      continue
    if seed not in contexts:
      contexts.clear()  # One trained model in memory at a time.
      if train is None:
        train = load_dataset(config.dataset, "train", data_dir=config.get("data_dir"))
        idx = train_subset(len(train), args.train_cap)
        train_images, train_labels = train.images[idx], train.labels[idx]
      contexts[seed] = seed_context(config, seed, out, name, test, train_images,
                                    not args.no_progress)
    record = forget_run(contexts[seed], cs, mode, config, rule, test, train_images,
                        train_labels, args.mia_cap)
    records.append(cache.put(stem, key, record))
  bar.close()
  print(f"experiments.table: {cache.summary()} ({runs_dir})", file=sys.stderr)

  with report_files.staged_report(out):  # The notes file goes with the report's files.
    prov, notes = run_cache.prepare_report(out, report, cache, args.note, command=command,
                                            prog="experiments.table")
    write_report(out, report, config, records, modes, forget_sets, seeds,
                 list(test.info.class_names), command, notes, rule, prov)
  return out / f"{report}.md"


if __name__ == "__main__":
  common.run_command(main, "experiments.table", show=True)
