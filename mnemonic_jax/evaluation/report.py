"""What :func:`mnemonic_jax.evaluation.depth_report` returns, and how it is judged.

:class:`DepthReport` holds one :class:`Figure` per attack (the method's value, the
oracle's, the original's, the gap and the oracle's seed-to-seed spread) and a
:class:`Verdict` in words; :func:`depth_goals` scores a report against the depth goals of
docs/depth.md (from DEPTH.md), one :class:`Goal` each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from mnemonic_jax import errors


class Figure(NamedTuple):
  """One attack's figure for the method, the oracle and the original.

  Attributes:
    name: key, e.g. ``"one_constant_half"``.
    label: what it measures, in words.
    unit: ``"%"``, ``"steps"``, ``"CKA"`` or ``"distance"``.
    method, oracle, original: the attack's value on each model (``None``: not measured;
      ``inf`` relearning steps: not reached within the run; NaN: undefined).
    gap: ``method - oracle``, or ``method / oracle`` when ``ratio``.
    spread: the oracle's seed-to-seed standard deviation (``None`` with one oracle).
    ratio: whether ``gap`` is a ratio.
  """

  name: str
  label: str
  unit: str
  method: float | None
  oracle: float | None
  original: float | None
  gap: float | None
  spread: float | None
  ratio: bool = False


class Verdict(NamedTuple):
  """Whether the forgetting is output-level only, and why, in words."""

  output_level_only: bool
  text: str


class Goal(NamedTuple):
  """One depth goal: ``passed`` is ``None`` when it does not apply or was not measured."""

  name: str
  passed: bool | None
  detail: str


@dataclasses.dataclass(frozen=True)
class DepthReport:
  """What :func:`depth_report` measured.

  Attributes:
    classes: the forgotten classes.
    figures: one :class:`Figure` per attack, in a fixed order.
    skipped: attack -> why it was not measured.
    verdict: :class:`Verdict`.
    oracles: how many oracles the spread is over (1: no spread).
  """

  classes: tuple[int, ...]
  figures: tuple[Figure, ...]
  skipped: dict[str, str]
  verdict: Verdict
  oracles: int = 1

  def __getitem__(self, name: str) -> Figure:
    for f in self.figures:
      if f.name == name:
        return f
    raise KeyError(f"no figure {name!r}; measured: {[f.name for f in self.figures]}")

  def get(self, name: str) -> Figure | None:
    """The figure ``name``, or ``None`` when it was not measured."""
    return next((f for f in self.figures if f.name == name), None)

  def to_dict(self) -> dict[str, Any]:
    """JSON-able: numbers as floats, ``inf`` and ``nan`` as the strings ``"inf"``, ``"nan"``
    (relearning steps ``"inf"``: not reached within the run)."""
    def num(v):
      if v is None or math.isfinite(v):
        return None if v is None else float(v)
      return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")

    return {"classes": list(self.classes), "oracles": self.oracles,
            "verdict": {"output_level_only": self.verdict.output_level_only,
                        "text": self.verdict.text},
            "skipped": dict(self.skipped),
            "figures": [{"name": f.name, "label": f.label, "unit": f.unit,
                         "method": num(f.method), "oracle": num(f.oracle),
                         "original": num(f.original), "gap": num(f.gap),
                         "spread": num(f.spread), "ratio": f.ratio}
                        for f in self.figures]}

  def to_markdown(self) -> str:
    """A table: attack, method, oracle, gap, oracle spread, original; then the verdict."""
    rows = ["| attack | method | oracle | gap | oracle spread | original |",
            "|---|---:|---:|---:|---:|---:|"]
    for f in self.figures:
      gap = "" if f.gap is None else (f"x{_fmt(f.gap, 2)}" if f.ratio else _signed(f.gap, f.unit))
      rows.append(f"| {f.label} | {_fmt_unit(f.method, f.unit)} | {_fmt_unit(f.oracle, f.unit)}"
                  f" | {gap} | {_fmt_unit(f.spread, f.unit)} | "
                  f"{_fmt_unit(f.original, f.unit)} |")
    text = "\n".join(rows) + f"\n\n{self.verdict.text}\n"
    if self.skipped:
      text += "\nNot measured: " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items()) + "\n"
    return text


def _fmt(v: float | None, digits: int = 1) -> str:
  if v is None:
    return ""
  if math.isnan(v):
    return "n/a"
  if math.isinf(v):
    return "inf" if v > 0 else "-inf"
  return f"{v:.{digits}f}"


def _fmt_unit(v: float | None, unit: str) -> str:
  if v is None:
    return ""
  if unit == "steps" and math.isinf(v):
    return "not reached"
  return _fmt(v, {"CKA": 3, "distance": 3, "steps": 0}.get(unit, 1))


def _signed(v: float, unit: str) -> str:
  s = _fmt_unit(v, unit)
  return s if s.startswith("-") or not math.isfinite(v) else "+" + s


#: Goal margins (points above the oracle allowed; docs/depth.md).
MARGINS = {"A_R": 1.0, "one_constant": 10.0, "input_scale": 5.0, "probe": 5.0,
           "prototype": 10.0, "distinct": 10.0}


def verdict(report: DepthReport) -> Verdict:
  """Output-level only: suppressed in the logits while the inside is the original's.

  The forgotten classes are suppressed at the output when E_F >= 99 (or within 1 of the
  oracle's). The features of the forgotten images are then read against the oracle's,
  which moved away from the original's by retraining: they count as the original's when
  ``1 - CKA`` to the original's is under a tenth of the oracle's, or when the linear probe
  still recalls within 5 points of the original where the original and the oracle differ
  by more than 10. Suppressed with the original's features: output-level only. Where the
  oracle's features are the original's too (``1 - CKA < 1e-9``, probe alike), or the
  model has none, the features cannot tell. Either way, suppression that one constant
  added to the forgotten logits undoes (more than 10 points above the oracle) is
  output-level, however far the features moved.

  Raises:
    BadRequestType: ``report`` is not a :class:`DepthReport`.
  """
  _check_report(report, "verdict")
  e_f = report["E_F"]
  one = report.get("one_constant_half")
  cka, probe = report.get("cka_to_original"), report.get("probe_recall")
  suppressed = e_f.method >= 99.0 or e_f.method >= e_f.oracle - 1.0
  undone = one is not None and one.method > one.oracle + MARGINS["one_constant"]
  shift = ("" if one is None else f"one constant added to the forgotten logits brings back "
           f"{_fmt(one.method)}% of the forgotten test images (oracle {_fmt(one.oracle)}%)")
  gone = f"forgotten test accuracy {_fmt(100 - e_f.method)}%"
  if not suppressed:
    return Verdict(False, f"Not forgotten at the output: {gone} (oracle "
                   f"{_fmt(100 - e_f.oracle)}%).")
  same = None
  if cka is not None and probe is not None:
    moved, moved_oracle = 1.0 - cka.method, 1.0 - cka.oracle
    distinct = abs(probe.original - probe.oracle) > MARGINS["distinct"]
    if moved_oracle > 1e-9:
      same = moved <= 0.1 * moved_oracle
    if distinct:
      same = bool(same) or probe.method >= probe.original - 5
    detail = (f"1 - CKA of the forgotten images' features to the original's {moved:.2g} "
              f"(oracle {moved_oracle:.2g}); linear probe recall {_fmt(probe.method)}% "
              f"(original {_fmt(probe.original)}%, oracle {_fmt(probe.oracle)}%)")
  elif probe is not None:  # The probe was read; the CKA to the original was not.
    why = report.skipped.get("cka_to_original") or "the CKA to the original was not measured"
    detail = (f"the linear probe was read, recall {_fmt(probe.method)}% against the oracle's "
              f"{_fmt(probe.oracle)}%, but {why}")
  else:
    why = report.skipped.get("probe_recall") or report.skipped.get("cka_to_original")
    detail = "the features were not read" + (f": {why}" if why else "")
  if same:
    return Verdict(True, f"Output-level only: suppressed in the logits ({gone}) but the "
                   f"features are the original's: {detail}; {shift}.")
  if undone:  # Whatever the features did, one constant undoes the suppression.
    features = ("the features moved from the original's as the oracle's did, but not the "
                "class out of them" if same is False else "the features cannot tell")
    return Verdict(True, f"Output-level: suppressed in the logits ({gone}) and {shift}; "
                   f"{features}: {detail}.")
  if same is False:
    return Verdict(False, f"Deeper than the output layer: suppressed in the logits ({gone}) "
                   f"and the forgotten images' features moved from the original's as the "
                   f"oracle's did: {detail}; {shift}.")
  shift = f": {shift}" if shift else ": the one-constant attack was not measured"
  return Verdict(False, f"Suppressed in the logits ({gone}) and not undone by one constant "
                 f"more than the oracle's{shift}. The features cannot tell: {detail}.")


def depth_goals(report: DepthReport) -> tuple[Goal, ...]:
  """The depth goals (docs/depth.md) for one run, against its oracle.

  * ``forgetting``: E_F >= 99 and A_R >= oracle - 1;
  * ``one_constant``: recovery, both ways, <= oracle + 10;
  * ``input_scale``: recovery at every scale <= oracle + 5;
  * ``probe``: linear-probe and nearest-class-mean recall <= oracle + 5, each only where
    the original's and the oracle's differ by more than 10 (``None`` where neither does);
  * ``prototype``: prototype-attack recall <= oracle + 10;
  * ``relearning``: no faster than the oracle at both levels (not reached = never).

  Args:
    report: a :class:`DepthReport`.

  Returns:
    One :class:`Goal` per goal, in that order; ``passed`` is ``None`` when not measured.

  Raises:
    BadRequestType: ``report`` is not a :class:`DepthReport` (its ``to_dict()`` or a
      path given by mistake).
  """
  _check_report(report, "depth_goals")
  def within(names: Sequence[str], margin: float) -> tuple[bool | None, str]:
    figs = [report.get(n) for n in names]
    figs = [f for f in figs if f is not None]
    if not figs:
      return None, "not measured"
    ok = all(f.method <= f.oracle + margin for f in figs)
    return ok, "; ".join(f"{f.name} {_fmt(f.method)} vs oracle {_fmt(f.oracle)} + {margin:g}"
                         for f in figs)

  goals = []
  e_f, a_r = report["E_F"], report["A_R"]
  goals.append(Goal("forgetting", bool(e_f.method >= 99.0
                                        and a_r.method >= a_r.oracle - MARGINS["A_R"]),
                    f"E_F {_fmt(e_f.method)} (>= 99), A_R {_fmt(a_r.method)} vs oracle "
                    f"{_fmt(a_r.oracle)} - 1"))
  goals.append(Goal("one_constant", *within(("one_constant_half", "one_constant_shots"),
                                            MARGINS["one_constant"])))
  goals.append(Goal("input_scale", *within(
      [f.name for f in report.figures if f.name.startswith("input_scale_")],
      MARGINS["input_scale"])))
  applicable = [n for n in ("probe_recall", "ncm_recall") if report.get(n) is not None
                and abs(report[n].original - report[n].oracle) > MARGINS["distinct"]]
  if applicable:
    goals.append(Goal("probe", *within(applicable, MARGINS["probe"])))
  else:
    measured = report.get("probe_recall") is not None
    goals.append(Goal("probe", None, "the original and the oracle differ by <= 10 points"
                      if measured else "not measured"))
  goals.append(Goal("prototype", *within(("prototype",), MARGINS["prototype"])))
  levels = [report.get(n) for n in ("relearn_50", "relearn_90")]
  if any(f is None for f in levels):
    goals.append(Goal("relearning", None, "not measured"))
  else:
    ok = all(f.method >= f.oracle for f in levels)
    goals.append(Goal("relearning", ok, "; ".join(
        f"{f.name} {_fmt(f.method, 0)} vs oracle {_fmt(f.oracle, 0)} steps" for f in levels)))
  return tuple(goals)


def _check_report(report: Any, caller: str) -> None:
  if not isinstance(report, DepthReport):
    raise errors.BadRequestType(f"{caller} takes a DepthReport (what depth_report returns), "
                                f"got {type(report).__name__}")
