"""What the commands print: per-class tables, the forget summary, warnings, JSON numbers.

Pure text from the library's results (a bundle's class names, an evaluation's per-class
accuracies, a forget report's ``to_dict()``); nothing here prints or imports JAX.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mnemonic_jax import _files


def printable(text: object, keep: str = "") -> str:
  """``text`` safe for a terminal: :func:`mnemonic_jax._files.escape` (the one escaping of
  the project; its docstring says what is escaped and what ``keep`` keeps). Every string
  that comes from a bundle, a dataset or a config goes through it before the command line
  prints it: a table's class names here, everything on stdout
  (:class:`mnemonic_jax.cli.outcome.ReportStream`) and the error line
  (:func:`mnemonic_jax.cli.parser.print_error`).

  Example:
    >>> printable("\\x1b[31mred")
    '\\\\x1b[31mred'
  """
  return _files.escape(text, keep)


def fmt(value: float | None, digits: int = 1) -> str:
  """``value`` with ``digits`` decimals, or ``-`` for None or NaN (nothing to measure)."""
  return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
      else f"{value:.{digits}f}"


def json_number(value: Any) -> float | None:
  """``value`` as a JSON number: a float, or None (``null``) for NaN."""
  value = float(value)
  return None if math.isnan(value) else value


def class_names(bundle: Any, num_classes: int, dataset: Any = None) -> list[str]:
  """The bundle's class names, else the dataset's, else the class ids as text.

  Args:
    bundle: a :class:`mnemonic_jax.bundle.Bundle` (its ``class_names``).
    num_classes: the model's number of classes.
    dataset: a loaded dataset (its ``info.class_names``), or None.

  Returns:
    ``num_classes`` names.
  """
  names = list(bundle.class_names) or (list(dataset.info.class_names) if dataset else [])
  return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
  """Examples per class (0 for a class the labels never show).

  Args:
    labels: int labels, shape ``(N,)``.
    num_classes: the model's number of classes.

  Returns:
    ``num_classes`` counts.
  """
  return [int(n) for n in np.bincount(labels, minlength=num_classes)[:num_classes]]


def format_table(names: Sequence[str], counts: Sequence[int], columns: Mapping[str, Any],
                 forgotten: Sequence[int]) -> str:
  """A per-class accuracy table; forgotten classes are marked with ``*``.

  A class with no example in the data is shown as ``absent`` (and named below the table).

  Args:
    names: class names.
    counts: examples per class.
    columns: column title -> per-class accuracy (%).
    forgotten: forgotten class ids.

  Returns:
    The table as text (no trailing newline).
  """
  forgotten = {int(c) for c in forgotten}
  names = [printable(name) for name in names]  # A bundle's or a dataset's text.
  width = max([len("name")] + [len(n) for n in names])
  head = f"{'class':>5}  {'name':<{width}}  {'images':>6}" + "".join(
      f"  {title:>8}" for title in columns)
  lines = [head, "-" * len(head)]
  for c, name in enumerate(names):
    mark = "*" if c in forgotten else " "
    cells = (["absent"] * len(columns) if int(counts[c]) == 0
             else [fmt(float(col[c])) for col in columns.values()])
    lines.append(f"{c:>4}{mark}  {name:<{width}}  {int(counts[c]):>6}" + "".join(
        f"  {cell:>8}" for cell in cells))
  if forgotten:
    lines.append("(* forgotten)")
  absent = [c for c in range(len(names)) if int(counts[c]) == 0]
  if absent:
    lines.append(f"(absent: the data hold no image of class{'es' if len(absent) > 1 else ''} "
                 f"{', '.join(map(str, absent))})")
  return "\n".join(lines)


#: The hand-over shares of ``reassign`` (:data:`~mnemonic_jax.forgetting.moves.reassign.
#: HAND_OVER`) in words.
_SHARES = {1.0: "all", 0.5: "1/2", 0.25: "1/4", 0.0: "none"}


def phase_words(phase: str, t: float) -> str:
  """One phase of a step-grid move and its step ``t`` (logits for the output bias) in
  words, e.g. ``"output bias lowered by 17.8 logits"``; an unnamed phase as ``"NAME t =
  T"``."""
  if phase == "erase":
    return "the forgotten classes' directions erased from the head"
  if phase == "project":
    return "the forgotten classes' head rows projected onto the span of the remaining rows"
  if phase == "reassign":
    return ("the forgotten classes' directions erased from the head and "
            f"{_SHARES.get(float(t), f'{t:g}')} of each one's evidence handed to the "
            "remaining classes nearest it")
  if phase == "bias":
    return f"output bias lowered by {t:.3g} logits"
  if phase == "guard":
    return (f"then {t:.3g} logits more, so that no input can reach a forgotten class" if t > 0
            else "no further lowering needed for any input")
  return f"{phase} t = {t:.3g}"


def forget_summary(report: Any, lambda_source: str) -> list[str]:
  """The lines ``forget`` (and ``demo``) print about one forgetting.

  The move and its step (a step-grid move's ``t`` and each phase's in words,
  :func:`phase_words`, or the paper's lambdas and where they came from), the accuracy on
  the codes before and after, the sign kept (the paper's move) and the time taken.

  Args:
    report: a :class:`mnemonic_jax.forgetting.ForgetReport` (its ``to_dict()`` is read).
    lambda_source: where the paper's lambdas came from ("given", "chosen from the codes
      ...").

  Returns:
    The lines, without newlines.
  """
  r = report.to_dict()
  pct = lambda v: f"{100.0 * v:5.1f}%"
  if "lambda1" in r:  # The paper's moves (Algorithm 2), lambdas given or searched.
    head = [(f"move = {r['move']}, lambda1 = {r['lambda1']:g}, lambda2 = {r['lambda2']:g} "
             f"({lambda_source})")]
  elif "t" in r:  # A move that chooses its step t on the codes.
    head = [f"move = {r['move']}, step t = {r['t']:g} (chosen from the codes)"]
    if len(r.get("steps", ())) > 1:
      head.append("in steps: " + "; ".join(phase_words(s["phase"], s["t"]) for s in r["steps"]))
  else:
    head = [f"move = {r['move']}"]
  rule = ("met on the codes" if r.get("met") else "not met on the codes"
          if r.get("met") is False else "no rule")
  checked = ("checked for every input: the model bounds its head's input and no input can "
             "be classified as a forgotten class" if r.get("verified") == "every input" else
             "checked on the codes only: E_F on real images is not guaranteed")
  from mnemonic_jax.forgetting import MOVES  # pylint: disable=import-outside-toplevel
  if r["move"] in MOVES:
    head.append(f"what it does: {MOVES[r['move']].summary}")
  head.append(f"acts on: {r['acts_on']}; its rule: {rule}; {checked}")
  lines = head + [
      "accuracy on the mnemonic codes:  before    after",
      (f"  forgotten classes              {pct(r['before']['forget_accuracy'])}   "
       f"{pct(r['after']['forget_accuracy'])}"),
      (f"  remaining classes              {pct(r['before']['remain_accuracy'])}   "
       f"{pct(r['after']['remain_accuracy'])}")]
  if "sign" in r:
    sign = "+" if r["sign"] > 0 else "-"
    lines.append(f"sign kept: {sign} (of eq. 5's two candidates, params {sign} alpha * eta "
                 "scored higher on the codes)")
  return lines + [
      f"forgetting took {r['seconds']:.3f} s (+ {r['compile_seconds']:.2f} s compiling)"]


def warning_lines(request: Mapping[str, Any]) -> list[str]:
  """``warning: ...`` for each warning of a history entry (recorded in the bundle).

  Args:
    request: a bundle history entry (its ``warnings``, if any).

  Returns:
    The lines, without newlines.
  """
  return [f"warning: {warning}" for warning in request.get("warnings") or ()]


def evaluation_json(checkpoint: str, dataset: str, split: str, num_examples: int,
                    evaluation: Any, names: Sequence[str], counts: Sequence[int],
                    forgotten: Sequence[int]) -> dict[str, Any]:
  """``evaluate --json``'s object: overall and per-class accuracy, A_R and E_F.

  Args:
    checkpoint: the bundle's path.
    dataset: the dataset's name.
    split: the split evaluated.
    num_examples: its number of examples.
    evaluation: a :class:`mnemonic_jax.workflow.Evaluation`.
    names: class names.
    counts: examples per class.
    forgotten: forgotten class ids.

  Returns:
    A JSON-ready dict (NaN as None; A_R and E_F None when nothing was forgotten).
  """
  forgotten = list(forgotten)
  return {
      "checkpoint": checkpoint,
      "dataset": dataset,
      "split": split,
      "num_examples": num_examples,
      "accuracy": json_number(evaluation.accuracy),
      "per_class": [{"class": c, "name": names[c], "examples": counts[c],
                     "accuracy": json_number(evaluation.per_class[c]),
                     "forgotten": c in forgotten, "absent": counts[c] == 0}
                    for c in range(len(names))],
      "forgotten": forgotten,
      "absent": [c for c in range(len(names)) if counts[c] == 0],
      "A_R": json_number(evaluation.A_R) if forgotten else None,
      "E_F": json_number(evaluation.E_F) if forgotten else None,
  }


def _depth_value(value: Any, unit: str) -> str:
  """A depth figure as text: ``inf`` steps are ``not reached``, JSON's ``"nan"`` ``n/a``."""
  if value is None:
    return ""
  if value in ("inf", "-inf", "nan"):
    return {"inf": "not reached" if unit == "steps" else "inf", "-inf": "-inf",
            "nan": "n/a"}[value]
  return fmt(float(value), {"CKA": 3, "distance": 3, "steps": 0}.get(unit, 1))


def _depth_gap(figure: Mapping[str, Any]) -> str:
  """The gap as text: ``+2.7`` (method - oracle), ``x1.32`` (a ratio), ``n/a``."""
  gap = figure["gap"]
  if gap is None:
    return ""
  if gap == "nan":
    return "n/a"
  if gap in ("inf", "-inf"):
    text = gap
  else:
    text = f"{float(gap):.2f}" if figure["ratio"] else _depth_value(gap, figure["unit"])
  if figure["ratio"]:
    return "x" + text
  return text if text.startswith("-") else "+" + text


def depth_lines(depth: Mapping[str, Any], dataset: str, split: str, train_size: int
                ) -> list[str]:
  """What ``evaluate --depth`` prints: the attacks, the depth goals, the verdict, notes.

  Args:
    depth: :func:`mnemonic_jax.cli.depth.run`'s result (``evaluate --json``'s ``depth``).
    dataset, split: where the attacks were scored.
    train_size: images of the train split (the attacker's and the probe's).

  Returns:
    The lines, without newlines: a table of every figure (the bundle's value, and with an
    oracle its value and the gap; with the original its value), the goals as
    ``pass``/``FAIL``/``n/a``, the verdict in words, and what was not measured and why.
  """
  classes = ", ".join(map(str, depth["classes"]))
  wrap = lambda text, first, rest: textwrap.wrap(text, 100, initial_indent=first,
                                                 subsequent_indent=rest)
  lines = wrap(f"depth of forgetting of class{'es' if len(depth['classes']) > 1 else ''} "
               f"{classes}: the attacks scored on {dataset} {split}, the attacker's labelled "
               f"images taken from {dataset} train ({train_size} images)", "", "  ")
  for entry in depth["forgotten_by"]:
    acts = f"; acts on the {entry['acts_on']}" if entry["acts_on"] else ""
    lines.append(f"forgotten by: {entry['by']!r} (class "
                 f"{', '.join(map(str, entry['classes']))}{acts})")
  for role in ("oracle", "original"):
    given = depth[role]
    lines.append(f"{role}: {_files.shown(given) if given else 'not given (--' + role + ')'}")
  columns = ["bundle"] + (["oracle", "gap"] if depth["oracle"] else []) + (
      ["original"] if depth["original"] else [])
  width = max(len(f["label"]) for f in depth["figures"])
  head = f"{'attack':<{width}}" + "".join(f"  {c:>11}" for c in columns)
  lines += ["", head, "-" * len(head)]
  for f in depth["figures"]:
    cells = [_depth_value(f["method"], f["unit"])]
    if depth["oracle"]:
      cells += [_depth_value(f["oracle"], f["unit"]), _depth_gap(f)]
    if depth["original"]:
      cells.append(_depth_value(f["original"], f["unit"]))
    lines.append(f"{f['label']:<{width}}" + "".join(f"  {c:>11}" for c in cells))
  lines.append("(%: forgotten-class test images right after the attack; gap: bundle - "
               "oracle, x: bundle / oracle)")
  if depth["goals"]:
    lines += ["", "depth goals (docs/depth.md), against the oracle:"]
    for g in depth["goals"]:
      mark = {True: "pass", False: "FAIL", None: "n/a"}[g["passed"]]
      lines += wrap(g["detail"], f"  {mark:<4}  {g['name']:<12}  ", " " * 22)
    passed = [g for g in depth["goals"] if g["passed"] is not None]
    lines.append(f"  {sum(g['passed'] for g in passed)} of {len(passed)} goals met")
  lines += [""] + wrap(depth["verdict"]["text"], "verdict: ", "  ")
  if depth["skipped"]:
    lines += ["", "not measured:"]
    for name, why in depth["skipped"].items():
      lines += wrap(why, f"  {name}: ", "    ")
  return lines

