"""Figures of forgetting results, drawn with Matplotlib's Agg canvas (no display needed).

Uses :class:`matplotlib.figure.Figure` directly, never ``pyplot``, so importing or calling
this module changes no global Matplotlib state (backend, current figure) of the caller.

Example:
  >>> from mnemonic_jax import plotting, workflow
  >>> before = workflow.evaluate(bundle, images, labels)
  >>> after = workflow.evaluate(workflow.forget_bundle(bundle, [3])[0], images, labels)
  >>> _ = plotting.per_class_bars(before.per_class, after.per_class, bundle.class_names,
  ...                             forgotten=[3], path=tmp / "per_class.png", title="Forgetting 3")
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnemonic_jax import _validate, errors

BEFORE_COLOR = "#4c72b0"
AFTER_COLOR = "#dd8452"
FORGOTTEN_COLOR = "#c44e52"


def per_class_bars(
    before: Sequence[float],
    after: Sequence[float],
    class_names: Sequence[str],
    forgotten: Sequence[int],
    path: str | os.PathLike,
    title: str = "Per-class accuracy before and after forgetting",
    *,
    dpi: int = 150,
) -> pathlib.Path:
  """Writes a grouped bar chart of per-class accuracy before vs after forgetting.

  Each class gets two bars (before, after) labelled with their value; forgotten classes
  are shaded and their names drawn in red, so the drop reads at a glance.

  Args:
    before: accuracy (%) of each class before forgetting; NaN for a class without
      examples (drawn as no bar).
    after: accuracy (%) of each class after forgetting, same length.
    class_names: one name per class (the class ids are used where empty).
    forgotten: ids of the forgotten classes.
    path: the image to write; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
      Parent directories are created.
    title: the figure title.
    dpi: resolution of raster formats.

  Returns:
    The path written.

  Raises:
    ValueError: ``before`` and ``after`` differ in length, ``class_names`` has another
      length, a forgotten id is out of range, or ``path`` is empty.
  """
  if isinstance(path, (str, os.PathLike)) and not os.fspath(path):  # Not '.': a directory.
    raise errors.BadRequest("path is empty (an unset shell variable?); give the image file "
                            "to write, e.g. 'per_class.png'")
  path = _validate.path(path)
  before = np.asarray(before, dtype=float)
  after = np.asarray(after, dtype=float)
  n = len(before)
  if after.shape != before.shape or before.ndim != 1:
    raise errors.BadRequest(f"before and after must be 1-D of the same length, got {before.shape} "
                     f"and {after.shape}")
  names = [str(c) for c in class_names] if len(class_names) else [str(i) for i in range(n)]
  if len(names) != n:
    raise errors.BadRequest(f"{len(names)} class names for {n} classes")
  forgotten = sorted({int(c) for c in forgotten})
  if any(not 0 <= c < n for c in forgotten):
    raise errors.BadRequest(f"forgotten classes {forgotten} are out of range 0..{n - 1}")

  fig = Figure(figsize=(max(6.0, 0.75 * n + 2.0), 4.2), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  x = np.arange(n)
  width = 0.38
  for c in forgotten:
    ax.axvspan(c - 0.5, c + 0.5, color=FORGOTTEN_COLOR, alpha=0.10, linewidth=0)
  bars_before = ax.bar(x - width / 2, np.nan_to_num(before), width, label="before",
                       color=BEFORE_COLOR)
  bars_after = ax.bar(x + width / 2, np.nan_to_num(after), width, label="after",
                      color=AFTER_COLOR)
  small = n > 12  # Keep value labels legible on wide charts.
  for bars, values in ((bars_before, before), (bars_after, after)):
    labels = ["" if np.isnan(v) else f"{v:.0f}" for v in values]
    ax.bar_label(bars, labels=labels, padding=1.5, fontsize=6 if small else 7.5)
  ax.set_xticks(x, names, rotation=45 if max(map(len, names)) > 3 else 0,
                ha="right" if max(map(len, names)) > 3 else "center")
  for c in forgotten:
    ax.get_xticklabels()[c].set_color(FORGOTTEN_COLOR)
    ax.get_xticklabels()[c].set_fontweight("bold")
  ax.set_xlim(-0.6, n - 0.4)
  ax.set_ylim(0, 122)  # Headroom above 100 for the value labels and the legend.
  ax.set_yticks(range(0, 101, 20))
  ax.set_ylabel("test accuracy (%)")
  ax.set_xlabel("class" + ("  (forgotten in red)" if forgotten else ""))
  ax.set_title(title)
  ax.spines[["top", "right"]].set_visible(False)
  ax.grid(axis="y", alpha=0.3)
  ax.set_axisbelow(True)
  ax.legend(loc="upper right", ncols=2, frameon=False, bbox_to_anchor=(1.0, 1.0))

  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi)
  return path


__all__ = ["per_class_bars"]
