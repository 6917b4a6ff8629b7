"""Forgetting from a model trained without codes: attach codes for K epochs, then forget.

Usage::

  python -m experiments.attach_codes --config fashion_mnist_mlp:e100 \\
      [--epochs 1,2,5,10] [--t-mix 0.1] [--classes all] [--retrain 0] \\
      [--out DIR] [--note TEXT]

Without ``--out`` everything goes to the scratch folder ``runs/experiments``, never to the
committed ``experiments/results``.

1. Trains the config's model with ``t_mix = 0`` (no codes; ``config.name`` gets
   ``_plain``) into ``<out>/cache/<name>/plain`` (resumable, reused on a rerun; the time
   of an uninterrupted run is recorded).
2. For each K of ``--epochs``, attaches fresh codes to it with
   :func:`mnemonic_jax.attach.attach_codes` (K epochs of fine-tuning with codes, the
   config's optimiser) into ``<out>/cache/<name>/attach-e<K>-...`` and records what it
   did in ``<out>/runs/<name>/``.
3. Forgets every class of ``--classes`` in turn, with the data-free lambda search
   (:func:`mnemonic_jax.workflow.forget_bundle`, the ``paper`` move: the paper's move with
   its lambdas searched on the codes), from each attached model and from
   the plain model with its own codes, which it never saw (no attaching); evaluates on
   the test split and counts the goal: E_F = 100 and A_R at most 1 point below the same
   model's A_R before forgetting.
4. Retrains from scratch without each class of ``--retrain`` (the ``retrain`` oracle:
   the plain model's config on the retain set), for the seconds that attaching is set
   against, and the oracle's A_R and E_F.

Every step is cached, keyed on what changes its result (:func:`attach_key`: the plain
model's config but its bookkeeping fields, the attaching's epochs, t_mix and seed, the
class, the move's settings, the library version, and for forgetting and retraining the
code they run; :mod:`experiments.run_cache`): a rerun reuses a step only on an equal key,
computes the others, says how many of each, and rebuilds the report. A step's file written
before steps recorded their key is computed again unless ``--reuse-keyless`` is given.
Outputs: ``<out>/attach_codes.md`` (the command and where its runs were computed at the
top) and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from experiments import common, report_files, run_cache, runner_args
from mnemonic_jax import attach, baselines, checkpointing, forgetting, metrics, workflow
from mnemonic_jax.forgetting.criterion import Rule
from mnemonic_jax.data import load_dataset

REPORT = "attach_codes"
NONE = "none"  # The plain model's own codes, never seen: forgetting without attaching.


def build_parser() -> argparse.ArgumentParser:
  p = common.RunnerParser(prog="python -m experiments.attach_codes",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="fashion_mnist_mlp:e100",
                 help="config FILE[:VARIANT] of the plain model (trained with t_mix 0)")
  p.add_argument("--epochs", default="1,2,5,10", help="attaching epochs K, comma-separated")
  p.add_argument("--t-mix", type=float, default=attach.DEFAULT_T_MIX,
                 help="code-mixing probability while attaching")
  p.add_argument("--seed", type=int, default=0, help="seed of the attached codes")
  p.add_argument("--classes", default="all", help="classes forgotten (each in turn)")
  p.add_argument("--retrain", default="0",
                 help="classes to retrain from scratch without, for the seconds ('' none)")
  p.add_argument("--out", type=common.out_path, default=None,
                 help=f"output directory (default: {common.SCRATCH}, a scratch folder; pass "
                      "--out experiments/results to update the committed results)")
  p.add_argument("--note", action="append", default=[],
                 help="a paragraph for the report, kept in attach_codes_notes.md beside it")
  p.add_argument(runner_args.REUSE_KEYLESS, action="store_true",
                 help=runner_args.REUSE_KEYLESS_HELP)
  p.add_argument("--no-progress", action="store_true")
  return p


def _positive_ints(text: str, what: str) -> list[int]:
  items = [t.strip() for t in text.split(",") if t.strip()]
  if not items or not all(t.isascii() and t.isdigit() and int(t) > 0 for t in items):
    common.fail(f"{what} {text!r} must be positive integers, comma-separated (e.g. 1,2,5,10)")
  return [int(t) for t in items]


def plain_edit(config) -> None:
  """What this runner makes of a loaded config: the plain model (``t_mix`` 0, name
  ``<name>_plain``, no ``baselines``)."""
  config.t_mix = 0.0
  config.name = f"{config.name}_plain"
  if "baselines" in config:
    with config.unlocked():
      del config["baselines"]


#: The default settings of the one move this runner makes (lambdas searched on the codes).
MOVE = "paper"
#: The defaults of --t-mix and --seed: those of every run file written before keys.
LEGACY_ATTACH = {"t_mix": attach.DEFAULT_T_MIX, "seed": 0}


def attach_key(plain: dict[str, Any], step: str, *, attached: dict[str, Any] | None = None,
               classes: Sequence[int] = (), move: Any = None,
               version: str = run_cache.VERSION) -> dict[str, Any]:
  """Everything that changes the result of one step of this runner.

  Args:
    plain: :func:`experiments.run_cache.config_key` of the plain model's config.
    step: ``attach``, ``forget`` or ``retrain``.
    attached: the attaching (``{"epochs", "t_mix", "seed"}``) of the model attached to or
      forgotten from; ``None`` for the plain model with its own codes.
    classes: the class forgotten or retrained without.
    move: the move's settings (:func:`experiments.run_cache.settings`) of a ``forget``.
    version: the library version.
  """
  key = {"runner": "experiments.attach_codes", "version": version, "config": plain,
         "step": step, "attached": attached, "classes": [int(c) for c in classes]}
  if step == "forget":  # With the move's code: a run of code changed since is computed again.
    key["move"] = move
    key[run_cache.CODE_FIELD] = run_cache.method_code(forgetting.MOVES[MOVE].baseline)
  if step == "retrain":
    key["retrain"] = run_cache.settings(baselines.retrain.RetrainConfig())
    key[run_cache.CODE_FIELD] = run_cache.method_code("retrain")
  return key


def _attaching(epochs: int, t_mix: float, seed: int) -> dict[str, Any]:
  return {"epochs": int(epochs), "t_mix": float(t_mix), "seed": int(seed)}


def attached_model(plain, epochs: int, args, cache: pathlib.Path, store: run_cache.RunCache,
                   keys: "Keys", train, test, progress: bool):
  """The plain model with codes attached for ``epochs`` epochs (cached), and its record."""
  stem = f"attach-e{epochs}-t{args.t_mix:g}-s{args.seed}"
  attaching = _attaching(epochs, args.t_mix, args.seed)
  key = attach_key(keys.plain, "attach", attached=attaching)
  # A record written before keys has its bundle in <stem>/; a keyed one in <stem>-<digest>/.
  where = lambda record: cache / (f"{stem}-{run_cache.digest(key)}" if "cache_key" in record
                                  else stem) / "bundle"
  record = store.get(stem, key, lambda r: attach_key(
      keys.legacy(), "attach", attached=attaching, version=run_cache.LEGACY_VERSION),
      usable=lambda r: where(r).exists())
  if record is not None:
    return checkpointing.load_bundle(where(record)), record
  bundle, report = attach.attach_codes(
      plain, train.images, train.labels, epochs=epochs, t_mix=args.t_mix, seed=args.seed,
      test=(test.images, test.labels), dataset=plain.dataset, progress=progress)
  record = dict(report.to_dict(), key=stem)
  record["cache_key"] = key  # Where the bundle goes.
  checkpointing.save_bundle(where(record), bundle, force=True)
  return bundle, store.put(stem, key, record)


class Keys:
  """The plain model's config as key, and the one run files written before keys had."""

  def __init__(self, spec: str, config, cache: pathlib.Path):
    self.plain = run_cache.config_key(config)
    self._legacy = lambda: common.legacy_config(spec, cache, "plain", int(config.seed),
                                                edit=plain_edit)

  def legacy(self) -> dict[str, Any]:
    return self._legacy()


def legacy_forget_key(keys: Keys, record: dict[str, Any]) -> dict[str, Any] | None:
  """The key of a forgetting run file written before keys: the model it names (``none``
  or ``e<K>``, attached with the default --t-mix and --seed), the paper move with the
  rule it records (a missing field read as its default)."""
  try:
    model, classes, rule = record["model"], record["classes"], record["rule"]
    attached = None if model == NONE else _attaching(int(model[1:]), **LEGACY_ATTACH)
  except (KeyError, TypeError, ValueError):
    return None
  if not isinstance(rule, dict):
    return None
  move = forgetting.MOVES[MOVE](rule=Rule(**{**dataclasses.asdict(Rule()), **rule}))
  return attach_key(keys.legacy(), "forget", attached=attached, classes=classes,
                    move=run_cache.settings(move), version=run_cache.LEGACY_VERSION)


def forget_run(bundle, model: str, c: int, test, before_logits, plain_logits
               ) -> dict[str, Any]:
  """Forgets class ``c`` from ``bundle`` with the data-free search; measured on ``test``."""
  new, report = workflow.forget_bundle(bundle, [c], move=MOVE)  # Lambdas searched.
  entry = new.history[-1]
  ev = workflow.evaluate(new, test.images, test.labels)
  before = metrics.forgetting_metrics(before_logits, test.labels, [c])
  plain = metrics.forgetting_metrics(plain_logits, test.labels, [c])
  record = {
      "model": model, "classes": [c], "lambda1": report.details.lambda1,
      "lambda2": report.details.lambda2, "sign": report.details.sign, "met": entry.get("met"),
      "fallback": entry.get("fallback"),
      "rule": entry.get("rule"), "codes_forgotten": entry["codes_forgotten"],
      "forget_seconds": report.seconds, "forget_compile_seconds": report.compile_seconds,
      "A_R": ev.A_R, "E_F": ev.E_F, "A_R_before": before["A_R"], "E_F_before": before["E_F"],
      "A_R_plain": plain["A_R"], "per_class": [float(v) for v in ev.per_class],
  }
  record["goal"] = bool(record["E_F"] >= 100.0 - 1e-9
                        and record["A_R"] >= record["A_R_before"] - common.GOAL_A_R_DROP)
  record["goal_vs_plain"] = bool(record["E_F"] >= 100.0 - 1e-9
                                 and record["A_R"] >= record["A_R_plain"] - common.GOAL_A_R_DROP)
  return record


def retrain_run(plain, c: int, train, test, progress: bool) -> dict[str, Any]:
  """The oracle for class ``c``: the plain model's training run on the retain set."""
  data = baselines.UnlearnData.from_training(train.images, train.labels, [c], forget=False)
  new, report = baselines.unlearn("retrain", plain, [c], data,
                                  baselines.retrain.RetrainConfig(progress=progress))
  ev = workflow.evaluate(new, test.images, test.labels)
  return {"classes": [c], "seconds": report.seconds,
          "compile_seconds": report.compile_seconds, "steps": report.steps,
          "epochs": report.details["epochs"], "retain_examples": len(data.retain),
          "A_R": ev.A_R, "E_F": ev.E_F, "per_class": [float(v) for v in ev.per_class]}


def _fmt(v: float | None, digits: int = 1, sign: bool = False) -> str:
  return "-" if v is None else f"{v:{'+' if sign else ''}.{digits}f}"


def _seconds(v: float) -> str:
  """Seconds to three significant figures: a 0.4 s retraining is not "0"."""
  return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def forgetting_sentence() -> str:
  """What the report says of its forgetting, from the code: the move it runs
  (:data:`MOVE`) and, apart, the default of ``mnemonic-jax forget``
  (:data:`mnemonic_jax.forgetting.DEFAULT_MOVE`)."""
  move = forgetting.MOVES[MOVE]
  default = ("its default too" if MOVE == forgetting.DEFAULT_MOVE else
             f"not the default of `mnemonic-jax forget`, which is `--move "
             f"{forgetting.DEFAULT_MOVE}`")
  return (f"**Forgetting**: each class in turn with the `{MOVE}` move (`mnemonic-jax forget "
          f"--move {MOVE}`: {move.summary}; {default}).")


def write_report(out: pathlib.Path, command: str, config, plain_info: dict[str, Any],
                 attached: dict[int, dict[str, Any]], records: list[dict[str, Any]],
                 retrains: list[dict[str, Any]], classes: Sequence[int],
                 class_names: Sequence[str], t_mix: float, prov: dict[str, Any],
                 notes: Sequence[str] = ()) -> pathlib.Path:
  """Writes ``<out>/attach_codes.md`` and ``.json``, replacing the earlier report's together
  or not at all (:mod:`experiments.report_files`).

  ``prov`` (:func:`experiments.run_cache.prepare_report`) says in the header how many
  steps this command computed, where and when, and how many it reused from which earlier
  files; ``notes``: the hand-written notes (kept in ``attach_codes_notes.md``).
  """
  by_model: dict[str, list[dict[str, Any]]] = {}
  for r in records:
    by_model.setdefault(r["model"], []).append(r)
  models = [NONE] + [f"e{k}" for k in sorted(attached)]
  n = len(classes)
  retrain_s = [r["seconds"] for r in retrains]

  lines = ["# Forgetting a model trained without codes: attach codes, then forget", "",
           f"Command: `{command}`", "",
           run_cache.runs_paragraph(
               prov, "steps (attaching, forgetting" + (", retraining)" if retrains else ")")),
           ""]
  lines += run_cache.notes_lines(notes, prov)
  lines += [
      f"**Plain model**: {config.model} {dict(workflow.to_plain(config.model_kwargs))} on "
      f"{config.dataset}, SGD lr {config.learning_rate:g} momentum {config.momentum:g} "
      f"weight decay {config.weight_decay:g}, batch {config.batch_size}, "
      f"{config.epochs} epochs, **t_mix = 0** (never saw a code), seed {config.seed}: "
      f"test accuracy {plain_info['accuracy']:.2f}%, trained in "
      f"{_fmt(plain_info['train_seconds'], 0)} s.", "",
      f"**Attaching** (`mnemonic-jax attach-codes`, `mnemonic_jax.attach.attach_codes`): "
      f"fresh uniform codes, K epochs of fine-tuning with t_mix = {t_mix:g} and the same "
      f"optimiser, from the plain model's weights. {forgetting_sentence()} "
      "**No attaching**: the same forgetting from the plain model with the codes stored in "
      "its bundle, which it never saw.", "",
      f"**Goal**: E_F = 100 and A_R at most {common.GOAL_A_R_DROP:g} point below the same "
      "model's A_R before forgetting (for an attached model: after attaching). The column "
      "\"goal vs plain\" measures A_R against the plain model instead, so it also charges "
      "what attaching cost. ΔA_R = A_R after forgetting - A_R before (positive: the "
      "remaining classes gained, as they no longer lose images to the forgotten class).", "",
      "Seconds are wall-clock with compilation excluded, measured where and when each step "
      "was computed (above; the committed ones on a 2-core machine shared with other jobs: "
      "inflated and noisy alike for every row); compare them within one machine.", ""]

  lines += ["| codes | K | attaching s | test acc. after attaching | codes learned | "
            f"goal (of {n}) | goal vs plain | E_F mean (min) | ΔA_R mean (worst) | "
            "forget s (mean) |", "|---|---|---|---|---|---|---|---|---|---|"]
  summary = []
  for model in models:
    runs = by_model.get(model, [])
    if model == NONE:
      label, k, secs = "never seen (no attaching)", "0", "-"
      acc = plain_info["accuracy"]
      learned = plain_info["codes_accuracy"]
    else:
      a = attached[int(model[1:])]
      label, k = "attached", str(a["epochs"])
      secs = f"{a['seconds']:.1f}"
      acc, learned = a["test_accuracy_after"], a["codes_accuracy_after"]
    goal = sum(r["goal"] for r in runs)
    goal_plain = sum(r["goal_vs_plain"] for r in runs)
    ef = [r["E_F"] for r in runs]
    change = [r["A_R"] - r["A_R_before"] for r in runs]
    fs = [r["forget_seconds"] for r in runs]
    lines.append(
        f"| {label} | {k} | {secs} | {acc:.2f} | {round(learned * 10)}/10 | {goal} | "
        f"{goal_plain} | {_fmt(np.mean(ef) if ef else None)} ({_fmt(min(ef) if ef else None)}) | "
        f"{_fmt(np.mean(change) if change else None, 2, True)} "
        f"({_fmt(min(change) if change else None, 2, True)}) | "
        f"{_fmt(np.mean(fs) if fs else None, 2)} |")
    summary.append({"model": model, "goal": goal, "goal_vs_plain": goal_plain, "runs": len(runs)})
  lines.append("")

  if retrains:
    lines += ["**Retraining from scratch** without a class (the `retrain` oracle: the plain "
              "model's training run, same config and seed, on the retain set; compilation "
              "excluded, as for attaching):", "",
              "| class | epochs | retain images | seconds | A_R | E_F |",
              "|---|---|---|---|---|---|"]
    for r in retrains:
      c = r["classes"][0]
      lines.append(f"| {common.class_label(c, class_names)} | {r['epochs']} | "
                   f"{r['retain_examples']} | {_seconds(r['seconds'])} | {r['A_R']:.2f} | "
                   f"{r['E_F']:.1f} |")
    lines.append("")
    mean_retrain = float(np.mean(retrain_s))
    ratios = ", ".join(f"K={k}: {mean_retrain / attached[k]['seconds']:.0f}x"
                       for k in sorted(attached))
    forget_s = float(np.mean([r["forget_seconds"] for r in records if r["model"] != NONE]))
    lines += [f"Attaching once is faster than one retraining by: {ratios}. Attaching is paid "
              "once and then lets the model forget any class (here in "
              f"{forget_s:.1f} s on average with the search); retraining is paid again for "
              f"every forgetting request. Retrained for {len(retrains)} class(es) only: its "
              "time hardly depends on the class (the same epochs over 9/10 of the data).",
              ""]

  lines += ["## Per class", "",
            "E_F / ΔA_R (A_R after forgetting - the same model's A_R before) per forgotten "
            "class; **bold** where the goal is met.", ""]
  lines += ["| class | " + " | ".join("no attaching" if m == NONE else f"K={m[1:]}"
                                      for m in models) + " |",
            "|---|" + "---|" * len(models)]
  for c in classes:
    cells = []
    for model in models:
      r = next((r for r in by_model.get(model, []) if r["classes"] == [c]), None)
      if r is None:
        cells.append("-")
        continue
      cell = f"{r['E_F']:.1f} / {r['A_R'] - r['A_R_before']:+.2f}"
      cells.append(f"**{cell}**" if r["goal"] else cell)
    lines.append(f"| {common.class_label(c, class_names)} | " + " | ".join(cells) + " |")
  lines += ["", "Searches that met their rule (the others used a fallback): " + ", ".join(
      f"{'no attaching' if m == NONE else 'K=' + m[1:]} "
      f"{sum(bool(r['met']) for r in by_model.get(m, []))}/{len(by_model.get(m, []))}"
      for m in models) + ".", ""]

  with report_files.staged_report(out) as stage:  # Both files replaced together, or none.
    (stage / f"{REPORT}.md").write_text("\n".join(lines))
    (stage / f"{REPORT}.json").write_text(json.dumps({
        "command": command, "machine": prov["machine"], "provenance": prov,
        "notes": list(notes), "config": workflow.to_plain(config), "plain": plain_info,
        "attached": {str(k): v for k, v in attached.items()}, "summary": summary,
        "retrain": retrains, "runs": records}, indent=1))
  return out / f"{REPORT}.md"


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  args = build_parser().parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  if args.out is None:
    args.out = common.SCRATCH
    print(f"experiments.attach_codes: writing to the scratch folder {common.SCRATCH} (pass "
          "--out DIR to choose one)", file=sys.stderr)
  command = runner_args.command_line("experiments.attach_codes", argv)
  config, variant = common.load_config(args.config)
  plain_edit(config)
  name = common.run_name(config, variant)
  epochs = _positive_ints(args.epochs, "--epochs")
  if not 0.0 < args.t_mix <= 1.0:
    common.fail(f"--t-mix {args.t_mix} must be in (0, 1]")
  test = load_dataset(config.dataset, "test", data_dir=config.get("data_dir"))
  num_classes = test.info.num_classes
  classes = common.parse_classes(args.classes, num_classes)
  retrain = common.parse_classes(args.retrain, num_classes) if args.retrain else []
  progress = not args.no_progress
  out = pathlib.Path(args.out)
  cache, runs = out / "cache" / name, out / "runs" / name
  runs.mkdir(parents=True, exist_ok=True)
  store = run_cache.RunCache(runs, common.machine_line(), reuse_keyless=args.reuse_keyless)
  keys = Keys(args.config, config, cache)

  start = time.perf_counter()
  plain, train_seconds = common.trained_model(config, cache, "plain", progress)
  train = load_dataset(config.dataset, "train", data_dir=config.get("data_dir"))
  plain_ev = workflow.evaluate(plain, test.images, test.labels)
  plain_info = {"accuracy": plain_ev.accuracy, "train_seconds": train_seconds,
                "codes_accuracy": attach.codes_accuracy(plain)}
  print(f"plain model: {plain_ev.accuracy:.2f}% ({time.perf_counter() - start:.0f} s)",
        flush=True)

  models = {NONE: (plain, plain_ev.logits, None)}
  attached = {}
  for k in epochs:
    bundle, record = attached_model(plain, k, args, cache, store, keys, train, test, progress)
    attached[k] = record
    models[f"e{k}"] = (bundle, workflow.evaluate(bundle, test.images, test.labels).logits,
                       _attaching(k, args.t_mix, args.seed))
    print(f"attached K={k}: {record['seconds']:.1f} s, test {record['test_accuracy_after']:.2f}%"
          f", codes {record['codes_accuracy_after']:.1f} ({time.perf_counter() - start:.0f} s)",
          flush=True)

  records = []
  move = run_cache.settings(forgetting.MOVES[MOVE]())
  plan = [(m, c) for m in models for c in classes]
  bar = tqdm(plan, desc="forget", unit="run", disable=not progress)
  for model, c in bar:
    stem = f"{model}-c{c}"
    key = attach_key(keys.plain, "forget", attached=models[model][2], classes=[c], move=move)
    record = store.get(stem, key, lambda r: legacy_forget_key(keys, r))
    if record is None:
      bundle, logits, _ = models[model]
      record = store.put(stem, key, forget_run(bundle, model, c, test, logits, plain_ev.logits))
    records.append(record)
  bar.close()
  print(f"forgetting done ({time.perf_counter() - start:.0f} s)", flush=True)

  retrains = []
  for c in retrain:
    stem = f"retrain-c{c}"
    key = attach_key(keys.plain, "retrain", classes=[c])
    record = store.get(stem, key, lambda r, c=c: attach_key(
        keys.legacy(), "retrain", classes=[c], version=run_cache.LEGACY_VERSION))
    if record is None:
      record = store.put(stem, key, retrain_run(plain, c, train, test, progress))
    retrains.append(record)
    print(f"retrained without class {c}: {retrains[-1]['seconds']:.0f} s "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
  print(f"experiments.attach_codes: {store.summary()} ({runs})", file=sys.stderr)

  with report_files.staged_report(out):  # The notes file goes with the report's files.
    prov, notes = run_cache.prepare_report(out, REPORT, store, args.note, command=command,
                                            prog="experiments.attach_codes")
    return write_report(out, command, config, plain_info, attached, records, retrains,
                        classes, list(test.info.class_names), args.t_mix, prov, notes)


if __name__ == "__main__":
  common.run_command(main, "experiments.attach_codes", show=True)
