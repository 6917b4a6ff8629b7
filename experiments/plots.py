"""Figures of a forgetting table (see :mod:`experiments.table`).

Agg canvas only, no pyplot state. ``write_all`` draws:

* ``<name>_per_class.png``: for each class, its test accuracy before forgetting and after
  forgetting it, per lambda choice (mean over seeds, min-max as error bars), with the
  remaining classes' accuracy A_R after forgetting as markers;
* ``<name>_multi_<mode>.png``: per-class accuracy before/after forgetting the multi-class
  set (seed 0 of the table), via :func:`mnemonic_jax.plotting.per_class_bars`;
* ``<name>_ar_ef.png``: change of A_R against E_F, one point per class x seed run;
* ``<name>_seconds.png``: seconds per stage (training, compilation, forgetting,
  evaluation, attacks), log scale.
"""

import pathlib
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from experiments import common

COLORS = {"before": "#4c72b0", "paper": "#dd8452", "auto": "#55a868", "none": "#8c8c8c"}


def _figure(width: float, height: float):
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig, fig.add_subplot()


def _group(records, forget_sets, mode):
  by = {}
  for r in records:
    if r["mode"] == mode:
      by.setdefault(tuple(r["classes"]), []).append(r)
  return [by.get(tuple(cs), []) for cs in forget_sets]


def per_class_chart(path, records, modes, forget_sets, class_names, title):
  singles = [cs for cs in forget_sets if len(cs) == 1]
  if not singles:
    return None
  fig, ax = _figure(max(6.0, 0.9 * len(singles) + 2.0), 4.2)
  x = np.arange(len(singles))
  series = [("before", "none", lambda r: 100 - r["E_F_before"])]
  series += [(m, m, lambda r: 100 - r["E_F"]) for m in modes]
  width = 0.8 / len(series)
  for i, (label, mode, value) in enumerate(series):
    groups = _group(records, singles, mode)
    vals = [np.array([value(r) for r in g]) if g else np.array([np.nan]) for g in groups]
    mean = np.array([v.mean() for v in vals])
    err = np.array([[m - v.min(), v.max() - m] for m, v in zip(mean, vals)]).T
    pos = x - 0.4 + width * (i + 0.5)
    ax.bar(pos, np.nan_to_num(mean), width, yerr=err, capsize=2, color=COLORS[label],
           label=f"class acc {'before' if label == 'before' else 'after, ' + label}")
    if label != "before":
      a_r = [np.mean([r["A_R"] for r in g]) if g else np.nan for g in groups]
      ax.plot(pos, a_r, "v", color="black", markersize=4,
              label="A_R after" if i == 1 else None)
  names = [str(cs[0]) if not class_names or class_names[cs[0]] == str(cs[0])
           else f"{cs[0]} {class_names[cs[0]]}" for cs in singles]
  ax.set_xticks(x, names, rotation=45 if max(map(len, names)) > 3 else 0,
                ha="right" if max(map(len, names)) > 3 else "center")
  ax.set_ylim(0, 115)
  ax.set_ylabel("test accuracy (%)")
  ax.set_xlabel("forgotten class")
  ax.set_title(title)
  ax.legend(loc="upper right", ncols=len(series) + 1, frameon=False, fontsize=7)
  ax.grid(axis="y", alpha=0.3)
  ax.set_axisbelow(True)
  fig.savefig(path, dpi=150)
  return path


def ar_ef_scatter(path, records, modes, title):
  fig, ax = _figure(6.0, 4.5)
  for mode in modes:
    rs = [r for r in records if r["mode"] == mode]
    if not rs:
      continue
    d = [r["A_R"] - r["A_R_before"] for r in rs]
    ef = [r["E_F"] for r in rs]
    ax.scatter(ef, d, s=18, alpha=0.7, color=COLORS.get(mode), label=mode)
    for r, xv, yv in zip(rs, ef, d):
      ax.annotate(",".join(map(str, r["classes"])), (xv, yv), fontsize=5, alpha=0.7,
                  xytext=(2, 2), textcoords="offset points")
  ax.axhline(-1.0, color="gray", linestyle="--", linewidth=0.8)
  ax.axvline(100.0, color="gray", linestyle="--", linewidth=0.8)
  ax.set_xlabel("E_F (%)  (100 = forgotten class never predicted)")
  ax.set_ylabel("A_R after - A_R before (points)")
  ax.set_title(title)
  ax.legend(frameon=False)
  ax.grid(alpha=0.3)
  fig.savefig(path, dpi=150)
  return path


def seconds_chart(path, records, modes, title):
  stages = [("training (per seed)", "train_seconds"), ("forget: compile", "forget_compile_seconds"),
            ("forget", "forget_seconds"), ("evaluate", "eval_seconds"), ("attacks", "mia_seconds")]
  fig, ax = _figure(7.0, 4.0)
  x = np.arange(len(stages))
  width = 0.8 / len(modes)
  for i, mode in enumerate(modes):
    rs = [r for r in records if r["mode"] == mode]
    vals = []
    for label, key in stages:
      if key == "train_seconds":
        per_seed = {r["seed"]: r[key] for r in rs if r.get(key) is not None}
        v = list(per_seed.values())
      else:
        v = [r[key] for r in rs if r.get(key) is not None]
      vals.append(np.mean(v) if v else np.nan)
    bars = ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(vals, nan=0.0), width,
                  color=COLORS.get(mode), label=mode)
    ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.3g}" for v in vals], fontsize=7)
  ax.set_yscale("log")
  ax.set_xticks(x, [s for s, _ in stages], fontsize=8)
  ax.set_ylabel("seconds (mean over runs)")
  ax.set_title(title)
  ax.legend(frameon=False)
  fig.savefig(path, dpi=150)
  return path


def write_all(out: pathlib.Path, name: str, records: list[dict[str, Any]],
              modes: Sequence[str], forget_sets: Sequence[tuple[int, ...]],
              class_names: Sequence[str]) -> list[pathlib.Path]:
  """Draws every figure of a table; returns the paths written."""
  out = pathlib.Path(out)
  paths = []
  p = per_class_chart(out / f"{name}_per_class.png", records, modes, forget_sets, class_names,
                      f"{name}: accuracy of each class before and after forgetting it")
  if p:
    paths.append(p)
  multis = [cs for cs in forget_sets if len(cs) > 1]
  if multis:
    try:
      from mnemonic_jax.plotting import per_class_bars
    except ImportError:  # The library's plotting module is optional here.
      per_class_bars = None
    cs = multis[0]
    seed = min(r["seed"] for r in records)
    pick = lambda mode: next((r for r in records if r["mode"] == mode and r["seed"] == seed
                              and tuple(r["classes"]) == cs), None)
    before = pick("none")
    for mode in modes:
      after = pick(mode)
      if per_class_bars and before and after:
        paths.append(per_class_bars(
            before["per_class"], after["per_class"], class_names, cs,
            out / f"{name}_multi_{mode}.png",
            title=f"{name}, seed {seed}: forgetting {set(cs)} with {mode} lambdas"))
  paths.append(ar_ef_scatter(out / f"{name}_ar_ef.png", records, modes,
                             f"{name}: A_R change vs E_F, every class x seed"))
  paths.append(seconds_chart(out / f"{name}_seconds.png", records, modes,
                             f"{name}: seconds per stage"))
  return paths


# ----------------------------------------------------------------------------------------
# Methods side by side (experiments.compare).

METHOD_MARKERS = "osD^vP<>XhpdH"  # No star: the oracle has it.


def methods_scatter(path, records, variants, title):
  """A_R against E_F per method: the mean over runs as a large marker whose area grows with
  the log of the method's seconds, each run as a faint dot; the retrain oracle is a black
  star. Left: the whole range; right: zoomed on the oracle's corner."""
  fig = Figure(figsize=(12.0, 5.0), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  colors = matplotlib_colors(len(variants))
  seconds = [r["seconds"] for r in records if r["variant"] in variants and r["seconds"] > 0]
  lo = np.log10(max(min(seconds, default=1e-3), 1e-4))
  size = lambda s: 30 + 90 * (np.log10(max(s, 1e-4)) - lo)
  oracle_point = None
  for i, v in enumerate(variants):
    rs = [r for r in records if r["variant"] == v]
    if not rs:
      continue
    ef, ar = np.array([r["E_F"] for r in rs]), np.array([r["A_R"] for r in rs])
    sec = float(np.mean([r["seconds"] for r in rs]))
    oracle = v == "retrain"
    if oracle:
      oracle_point = (ef.mean(), ar.mean())
    color = "black" if oracle else colors[i]
    for ax in axes:
      ax.scatter(ef, ar, s=8, alpha=0.25, color=color)
      ax.scatter([ef.mean()], [ar.mean()], s=size(sec) * (2.5 if oracle else 1),
                 marker="*" if oracle else METHOD_MARKERS[i % len(METHOD_MARKERS)],
                 color=color, edgecolor="white", linewidth=0.5, zorder=6 if oracle else 3,
                 alpha=1.0 if oracle else 0.85,
                 label=f"{v} ({sec:.3g} s)" + (" = oracle" if oracle else ""))
  for ax in axes:
    ax.set_xlabel("E_F (%): error on the forgotten classes (100 = forgotten)")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("A_R (%): accuracy on the remaining classes")
  axes[0].set_title(title, fontsize=9)
  if oracle_point is not None:
    axes[1].set_xlim(80, 101)
    axes[1].set_ylim(oracle_point[1] - 6, oracle_point[1] + 2)
    axes[1].set_title("zoom on the oracle's corner", fontsize=9)
  axes[1].legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                 title="method (mean seconds;\nmarker area ~ log s)", title_fontsize=7)
  fig.savefig(path, dpi=150)
  return path


def relearn_chart(path, records, variants, title):
  """Median steps to relearn to 90% of the original accuracy, per method.

  A run that never relearned within the budget counts as infinite; a median that is
  infinite is drawn hatched at the top of the chart and labelled "never".
  """
  shown = [v for v in variants if any(r["variant"] == v and r.get("relearn") for r in records)]
  if not shown:
    return None
  medians = [common.relearn_median([r for r in records if r["variant"] == v], "90") for v in shown]
  finite = [m for m, _ in medians if np.isfinite(m)]
  top = 1.15 * max(finite, default=1.0) + 1.0
  fig, ax = _figure(max(7.0, 0.55 * len(shown) + 2.0), 3.8)
  x = np.arange(len(shown))
  heights = [m if np.isfinite(m) else top for m, _ in medians]
  bars = ax.bar(x, heights, color=["black" if v == "retrain" else "#4c72b0" for v in shown])
  for bar, (m, _) in zip(bars, medians):
    if not np.isfinite(m):
      bar.set_hatch("//")
      bar.set_alpha(0.5)
  ax.bar_label(bars, labels=[("never" if not np.isfinite(m) else f"{m:.0f}")
                             + (f" ({n} never)" if n else "") for m, n in medians], fontsize=7)
  ax.set_xticks(x, shown, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("median steps to 90% of the\noriginal accuracy (higher = deeper)")
  ax.set_title(title, fontsize=10)
  fig.savefig(path, dpi=150)
  return path


def matplotlib_colors(n: int):
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel
  cmap = colormaps["tab10" if n <= 10 else "tab20"]
  return [cmap(i % cmap.N) for i in range(n)]


def methods_figures(out: pathlib.Path, base: str, records, variants) -> list[pathlib.Path]:
  """The comparison's figures: A_R vs E_F per method, and relearning steps."""
  out = pathlib.Path(out)
  methods = [v for v in variants if "@" not in v]
  # The codes ablation: only when some mnemonic method ran with other inputs (--inputs).
  ablation = ([v for v in variants if v.startswith("mnemonic")]
              if any("@" in v for v in variants) else [])
  paths = []
  if methods:
    paths.append(methods_scatter(
        out / f"{base}_ar_ef.png", records, methods,
        f"{base}: A_R vs E_F per method (mean of runs"
        + ("; star = retrain oracle)" if "retrain" in methods else ")")))
  if len(ablation) > 2:
    paths.append(methods_scatter(
        out / f"{base}_ablation.png", records, ["retrain"] * ("retrain" in variants) + ablation,
        f"{base}: the mnemonic methods with Fishers from other inputs (method@inputs)"))
  p = relearn_chart(out / f"{base}_relearn.png", records, variants,
                    f"{base}: relearning (median steps to 90% of original accuracy)")
  return paths + ([p] if p else [])


# ----------------------------------------------------------------------------------------
# Depth against the oracle (experiments.compare_depth).


def depth_gaps_chart(path, methods: Sequence[str], attacks: Sequence[str], gaps: np.ndarray,
                     title: str):
  """A grid of each method's (row) gap to the retrain oracle on each attack (column).

  The gap is the method's recovered or recalled accuracy on the forgotten classes minus
  the oracle's, in points: red where an attack finds more of the class than in a model
  that never saw it, blue where less, white at the oracle; each cell is labelled, an
  attack not measured is grey.

  Args:
    path: the PNG written.
    methods: row labels.
    attacks: column labels.
    gaps: ``(len(methods), len(attacks))`` float, NaN where not measured.
    title: the figure's title.

  Returns:
    ``path``.
  """
  gaps = np.asarray(gaps, dtype=float).reshape(len(methods), len(attacks))
  finite = np.abs(gaps[np.isfinite(gaps)])
  top = max(10.0, float(finite.max()) if finite.size else 10.0)
  fig, ax = _figure(max(6.0, 1.0 * len(attacks) + 2.5), max(2.5, 0.45 * len(methods) + 1.6))
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel
  cmap = colormaps["RdBu_r"].with_extremes(bad="#d0d0d0")
  image = ax.imshow(np.ma.masked_invalid(gaps), cmap=cmap, vmin=-top, vmax=top, aspect="auto")
  for i in range(len(methods)):
    for j in range(len(attacks)):
      v = gaps[i, j]
      ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:+.0f}", ha="center", va="center",
              fontsize=8, color="white" if np.isfinite(v) and abs(v) > 0.6 * top else "black")
  ax.set_xticks(np.arange(len(attacks)), attacks, rotation=30, ha="right", fontsize=8)
  ax.set_yticks(np.arange(len(methods)), methods, fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, label="gap to the oracle (points)")
  fig.savefig(path, dpi=150)
  return path


DATA_COLORS = {"none": "#2ca02c", "forget": "#ff7f0e", "retain": "#1f77b4", "all": "#d62728"}


def depth_vs_seconds(path, methods: Sequence[str], seconds: Sequence[float],
                     gaps: np.ndarray, attacks: Sequence[str], data: Sequence[str],
                     every_goal: Sequence[bool], title: str):
  """Each method's depth gaps to the retrain oracle against its seconds, one point a method.

  Left: the mean of the method's gaps over the attacks; right: its largest gap (the attack
  that finds the most of the forgotten classes beyond the oracle). The gap is recovered or
  recalled accuracy on the forgotten classes minus the oracle's, in points (0 = as deep as
  a model that never saw them; the depth goals allow +5 or +10, drawn dashed). The colour
  says what training data the method reads; a filled marker met every depth goal in every
  run, a hollow one missed at least one; the x axis is seconds of the method with
  compilation apart (log; anything faster than a millisecond at 1 ms).

  Args:
    path: the PNG written.
    methods: point labels.
    seconds: ``(len(methods),)`` mean seconds per run.
    gaps: ``(len(methods), len(attacks))`` float, each attack's mean gap; NaN where not
      measured.
    attacks: the column names of ``gaps``.
    data: each method's training data kind (``none``, ``forget``, ``retain``, ``all``).
    every_goal: whether the method met every depth goal in every run.
    title: the figure's title.

  Returns:
    ``path``.
  """
  gaps = np.asarray(gaps, dtype=float).reshape(len(methods), len(attacks))
  with np.errstate(all="ignore"):
    mean = np.array([np.nanmean(g) if np.isfinite(g).any() else np.nan for g in gaps])
    worst = np.array([np.nanmax(g) if np.isfinite(g).any() else np.nan for g in gaps])
  x = np.maximum(np.asarray(seconds, dtype=float), 1e-3)
  fig = Figure(figsize=(13.0, 5.5), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2, sharex=True)
  for ax, y, label in ((axes[0], mean, "mean gap over the attacks (points)"),
                       (axes[1], worst, "largest gap, the worst attack (points)")):
    shown = [i for i in range(len(methods)) if np.isfinite(y[i])]
    for i in shown:
      color = DATA_COLORS.get(data[i], "#7f7f7f")
      ax.scatter([x[i]], [y[i]], s=46, color=color if every_goal[i] else "white",
                 edgecolor=color, linewidth=1.5, zorder=3)
    ax.axhline(0.0, color="black", linewidth=0.8)
    for margin in (5.0, 10.0):
      ax.axhline(margin, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xscale("log")  # Whole decades, labelled at the decades only.
    ax.set_xlim(10 ** np.floor(np.log10(x.min() if len(x) else 1e-3) - 0.05),
                10 ** np.ceil(np.log10(x.max() if len(x) else 1.0) + 0.05))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("seconds of the method, compilation apart (log)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  handles = [axes[0].scatter([], [], s=46, color=c, edgecolor=c, label=f"reads {k}")
             for k, c in DATA_COLORS.items() if k in data]
  handles.append(axes[0].scatter([], [], s=46, color="white", edgecolor="black",
                                 label="hollow: missed a depth goal"))
  axes[1].legend(handles=handles, frameon=False, fontsize=7, loc="center left",
                 bbox_to_anchor=(1.0, 0.5))
  fig.suptitle(title, fontsize=9)
  fig.set_dpi(150)
  fig.canvas.draw()  # The layout first: the labels are placed in display units.
  for ax, y in zip(axes, (mean, worst)):
    shown = [i for i in range(len(methods)) if np.isfinite(y[i])]
    _labels(ax, [methods[i] for i in shown], x[shown], y[shown])
  fig.savefig(path, dpi=150)
  return path


def _labels(ax, names: Sequence[str], x: np.ndarray, y: np.ndarray, fontsize: float = 6.5):
  """Labels each point, moving a label up or down in steps of one line where it would
  cover a label already placed (greedy, in display units; no extra dependency)."""
  if not len(names):
    return
  points = ax.transData.transform(np.column_stack([x, y]))
  scale = ax.figure.dpi / 72.0
  height, char = 1.2 * fontsize * scale, 0.55 * fontsize * scale
  placed = []  # (x0, x1, y0, y1) in display units.
  order = sorted(range(len(names)), key=lambda i: (-points[i][1], points[i][0]))
  for i in order:
    (px, py), width = points[i], char * len(names[i])
    for step in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6):
      x0, y0 = px + 4 * scale, py + 2 * scale + step * height
      box = (x0, x0 + width, y0, y0 + height)
      if not any(box[0] < b[1] and b[0] < box[1] and box[2] < b[3] and b[2] < box[3]
                 for b in placed):
        break
    placed.append(box)
    ax.annotate(names[i], (x[i], y[i]), xytext=((x0 - px) / scale, (y0 - py) / scale),
                textcoords="offset points", fontsize=fontsize, annotation_clip=False,
                arrowprops=None if step == 0 else {"arrowstyle": "-", "lw": 0.4,
                                                   "color": "grey"})
