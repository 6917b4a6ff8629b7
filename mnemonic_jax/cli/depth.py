"""``evaluate --depth``: the depth attacks of :mod:`mnemonic_jax.evaluation` on a bundle.

:func:`check_options` and :func:`request` check everything a run needs before any data are
read (the forgotten classes in the bundle's history, ``--oracle`` and ``--original`` of
the same architecture, the attack groups that can run); :func:`run` calls
:func:`mnemonic_jax.evaluation.depth_report` and returns the JSON-able result that
:func:`mnemonic_jax.cli.report.depth_lines` prints and ``--json`` gives as is.

The library compares three bundles (forgotten, oracle, original). The bundle's history
does not say where its original is, and an oracle is a separate training run, so both are
optional here: a missing one is stood in for by the bundle itself and every figure that
would read the stand-in (its column, the gaps, CKA and distance to it, relearning without
the original) is dropped, never reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from typing import Any, NamedTuple

import numpy as np

from mnemonic_jax import checkpointing, errors, evaluation, relearning
from mnemonic_jax.evaluation import depth as depth_lib
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.cli.parser import UsageError

class DepthRequest(NamedTuple):
  """What ``evaluate --depth`` measures, checked before any data are read.

  Attributes:
    classes: the forgotten classes (every class the bundle's history forgot).
    groups: the attack groups of :data:`mnemonic_jax.cli.parser.DEPTH_GROUPS` that run.
    oracle, original: ``(path, Bundle)`` or ``None`` when not given.
    skipped: what is not measured (a group, ``oracle``, ``original``) -> why.
  """

  classes: tuple[int, ...]
  groups: tuple[str, ...]
  oracle: tuple[pathlib.Path, Bundle] | None
  original: tuple[pathlib.Path, Bundle] | None
  skipped: dict[str, str]


def check_options(args: argparse.Namespace) -> None:
  """Refuses the depth options without ``--depth``, and ``--depth`` scored on ``train``.

  Raises:
    UsageError: ``--oracle``, ``--original``, ``--probe-examples`` or ``--relearn-steps``
      without ``--depth``; ``--depth`` with ``--split train``.
  """
  if args.depth is None:
    given = [flag for flag, value in (
        ("--oracle", args.oracle), ("--original", args.original),
        ("--probe-examples", args.probe_examples), ("--relearn-steps", args.relearn_steps))
        if value is not None]
    if given:
      raise UsageError(f"{given[0]} applies to the depth attacks only; add --depth")
  elif args.split == "train":
    raise UsageError("--depth scores the attacks on held-out images and takes the attacker's "
                     "labelled images from the train split; drop --split train")


def _load_other(flag: str, name: str, given: Any, bundle: Bundle
                ) -> tuple[pathlib.Path, Bundle]:
  """``--oracle`` or ``--original``, loaded and checked to be the same architecture."""
  path = checkpointing.resolve_bundle_path(given)
  other = checkpointing.load_bundle(path)
  try:
    evaluation.check_comparable(bundle, other, name)
  except errors.BadRequest as e:
    raise UsageError(f"{flag} {path}: {e}") from None
  return path, other


def _check_retrained(oracle: tuple[pathlib.Path, Bundle], path: pathlib.Path,
                     bundle: Bundle) -> None:
  """Refuses an ``--oracle`` that is not a model trained without the classes: the bundle
  itself, or one :func:`mnemonic_jax.evaluation.check_retrained` refuses."""
  where, other = oracle
  if where.resolve() == path.resolve():
    raise UsageError(f"--oracle {where} is {path} itself, so every gap to it is 0; give the "
                     "model retrained from scratch without the classes")
  try:
    evaluation.check_retrained(bundle, other, f"--oracle {where}")
  except errors.BadRequest as e:
    raise UsageError(str(e)) from None


def request(args: argparse.Namespace, path: pathlib.Path, bundle: Bundle) -> DepthRequest:
  """The classes, the attack groups that can run, the oracle and the original, checked.

  Args:
    args: ``evaluate``'s parsed arguments (``depth``, ``oracle``, ``original``).
    path: the bundle's path (for the messages).
    bundle: the bundle evaluated.

  Returns:
    :class:`DepthRequest`. A group asked for that cannot run (``features`` on a model
    without features, ``relearning`` without ``--original``, ``weights`` with neither
    ``--oracle`` nor ``--original``) is in ``skipped`` with the reason.

  Raises:
    UsageError: no forgotten class in the bundle's history; an oracle or original of
      another model, class count or input shape; an oracle made without other classes
      than the bundle forgot; an original that had already forgotten them or holds other
      codes; none of the groups asked for can run.
  """
  classes = tuple(bundle.forgotten_classes)
  if not classes:
    raise UsageError(f"--depth measures how deep a forgetting went, but {path} has no "
                     "forgotten classes in its history; evaluate the bundle that "
                     "'mnemonic-jax forget' wrote")
  oracle = original = None
  if args.oracle is not None:
    oracle = _load_other("--oracle", "oracle", args.oracle, bundle)
    _check_retrained(oracle, path, bundle)
    without = tuple(oracle[1].forgotten_classes)
    if without and without != classes:
      raise UsageError(f"--oracle {oracle[0]} was made without classes {list(without)}, but "
                       f"{path} forgot {list(classes)}; give the oracle of the same classes")
  if args.original is not None:
    original = _load_other("--original", "original", args.original, bundle)
    again = sorted(set(original[1].forgotten_classes) & set(classes))
    if again:
      raise UsageError(f"--original {original[0]} had already forgotten classes {again}; give "
                       "the bundle they were forgotten from")
    mine, theirs = bundle.codes, original[1].codes
    if mine is not None and theirs is not None and not np.array_equal(np.asarray(mine),
                                                                       np.asarray(theirs)):
      raise UsageError(f"--original {original[0]} holds other mnemonic codes than {path}, so "
                       "it is not the bundle this one was forgotten from (forgetting keeps "
                       "the codes)")
  unavailable = {}
  try:
    evaluation.head_path(bundle)
  except evaluation.NoFeatures as e:
    unavailable["features"] = str(e)
  if original is None:
    unavailable["relearning"] = ("needs --original (relearning counts the steps back to a "
                                 "share of the original's accuracy on the forgotten images)")
  if oracle is None and original is None:
    unavailable["weights"] = "needs --oracle or --original (the distance is to them)"
  groups = tuple(g for g in args.depth if g not in unavailable)
  if not groups:
    raise UsageError("nothing to measure: " + "; ".join(f"{g}: {unavailable[g]}"
                                                         for g in args.depth))
  skipped = {g: unavailable[g] for g in args.depth if g in unavailable}
  if oracle is None:
    skipped["oracle"] = ("not given (--oracle): no oracle figures, gaps, depth goals or "
                         "measured verdict, and no CKA or distance to the oracle")
  if original is None:
    skipped["original"] = "not given (--original): no CKA or distance to the original"
  return DepthRequest(classes, groups, oracle, original, skipped)


def check_references(req: DepthRequest, test: Any) -> None:
  """:func:`mnemonic_jax.evaluation.depth.check_references` on the given --oracle and
  --original, named by their flags and paths, before the train split is read.

  Raises:
    BadRequest: see that function.
  """
  depth_lib.check_references(
      test, req.classes,
      oracles=[(f"--oracle {req.oracle[0]}", req.oracle[1])] if req.oracle else [],
      original=(f"--original {req.original[0]}", req.original[1]) if req.original else None)


def group_of(name: str) -> str | None:
  """The ``--depth`` group of a figure of the report (``None``: E_F and A_R, always there)."""
  if name in ("E_F", "A_R"):
    return None
  if name.startswith(("one_constant_", "input_scale_")):
    return "logits"
  if name.startswith("relearn_"):
    return "relearning"
  if name.startswith("distance_"):
    return "weights"
  return "features"


def run(req: DepthRequest, bundle: Bundle, train: Any, test: Any,
        args: argparse.Namespace) -> dict[str, Any]:
  """Runs the depth attacks and keeps what was asked for and can be read.

  Args:
    req: :func:`request`'s answer.
    bundle: the bundle evaluated.
    train, test: the dataset's train split (the attacker's images, the probe's, the
      relearning sample) and the split scored (anything with ``images`` and ``labels``).
    args: ``evaluate``'s parsed arguments (``probe_examples``, ``relearn_steps``).

  Returns:
    :meth:`mnemonic_jax.evaluation.DepthReport.to_dict` of the figures kept, with
    ``verdict`` (``output_level_only`` ``None`` when it cannot be told), ``goals`` (the
    depth goals as ``{name, passed, detail}``; empty without an oracle),
    ``forgotten_by`` (the history's moves), ``oracle``, ``original`` (paths or ``None``),
    ``attacks`` (the groups run) and ``settings``.

  Raises:
    mnemonic_jax.errors.BadRequest: data that do not fit the attacks (too few training
      images of a forgotten class, ...).
  """
  defaults = evaluation.DepthConfig()
  relearn = None
  if "relearning" in req.groups:
    relearn = relearning.RelearnConfig(**({} if args.relearn_steps is None
                                          else {"max_steps": args.relearn_steps}))
  config = dataclasses.replace(defaults, relearn=relearn,
                               probe_per_class=args.probe_examples or defaults.probe_per_class)
  oracle = req.oracle[1] if req.oracle else bundle  # Stand-ins: their figures are dropped.
  original = req.original[1] if req.original else bundle
  full = evaluation.depth_report(bundle, oracle, original, evaluation.DepthData.of(train, test),
                                 req.classes, config=config,
                                 check_references_first=False)  # Checked: check_references.
  drop = set()
  if req.oracle is None:
    drop |= {"cka_to_oracle", "distance_to_oracle"}
  if req.original is None:
    drop |= {"cka_to_original", "distance_to_original"}
  figures = []
  for f in full.figures:
    if f.name in drop or group_of(f.name) not in (None, *req.groups):
      continue
    if req.oracle is None:
      f = f._replace(oracle=None, gap=None, spread=None)
    if req.original is None:
      f = f._replace(original=None)
    figures.append(f)
  skipped = dict(req.skipped)
  if "relearning" in req.groups and "relearn" in full.skipped:
    skipped["relearning"] = full.skipped["relearn"]
  kept = dataclasses.replace(full, figures=tuple(figures), skipped=skipped)
  history = forgotten_by(bundle)
  if req.oracle is None:
    verdict, goals = verdict_without_oracle(history, req.classes), []
  else:
    measured = full.verdict
    if req.original is None:  # The library's verdict, without the stand-in's figures.
      measured = evaluation.verdict(dataclasses.replace(
          full, figures=tuple(f for f in full.figures if f.name != "cka_to_original"),
          skipped={**full.skipped, "cka_to_original": "there is no --original to compare "
                                                 "the features with"}))
    verdict = {"output_level_only": measured.output_level_only, "text": measured.text}
    # Without the original the probe goal cannot tell where it applies.
    scored = dataclasses.replace(kept, figures=tuple(
        f for f in kept.figures
        if req.original is not None or f.name not in ("probe_recall", "ncm_recall")))
    goals = [_goal(g, req) for g in evaluation.depth_goals(scored)]
  out = kept.to_dict()
  out.update(verdict=verdict, goals=goals, forgotten_by=history,
             oracle=str(req.oracle[0]) if req.oracle else None,
             original=str(req.original[0]) if req.original else None,
             attacks=list(req.groups),
             settings={"shots": config.shots, "probe_examples": config.probe_per_class,
                       "relearn_steps": relearn.max_steps if relearn else None})
  return out


def _goal(goal: Any, req: DepthRequest) -> dict[str, Any]:
  """A goal as JSON, saying what it needs where it was not measured for want of it."""
  detail = goal.detail
  if goal.passed is None and req.original is None and goal.name in ("probe", "relearning"):
    detail = "needs --original" + (" (it applies where the original's and the oracle's "
                                   "recall differ by more than 10 points)"
                                   if goal.name == "probe" else "")
  return {"name": goal.name, "passed": goal.passed, "detail": detail}


def forgotten_by(bundle: Bundle) -> list[dict[str, Any]]:
  """Each forgetting request of the bundle's history: its move (or baseline method), its
  classes and what the move acts on (``None`` where the history does not say)."""
  return [{"by": entry.get("move") or entry.get("method"), "classes": list(entry["classes"]),
           "acts_on": entry.get("acts_on")}
          for entry in bundle.history if entry.get("classes")]


def verdict_without_oracle(history: list[dict[str, Any]], classes: tuple[int, ...]
                           ) -> dict[str, Any]:
  """No measured verdict without an oracle; a history of output-layer moves still says
  output-level, by construction."""
  text = ("No measured verdict without an oracle: each figure is read against the oracle's, "
          "a model retrained without class(es) "
          f"{', '.join(map(str, classes))} (give it with --oracle).")
  if history and all(h["acts_on"] == "output layer" for h in history):
    moves = ", ".join(sorted({repr(h["by"]) for h in history}))
    return {"output_level_only": True,
            "text": f"Output-level only, by construction: the history records move {moves}, "
                    f"which changes the output layer alone. {text}"}
  return {"output_level_only": None, "text": text}
