"""A training run's logged metrics: JSON lines, and TensorBoard summaries when CLU is there.

:func:`mnemonic_jax.workflow.train` writes, every ``config.log_every`` steps and at the
last step, the mean of each step metric over the steps since the previous line
(``loss``, ``image_loss``, ``code_loss``, ``accuracy``, ``code_fraction``) to
``WORKDIR/metrics.jsonl``, one JSON object per line::

  {"step": 100, "epoch": 9.09, "seconds": 3.2, "loss": 0.41, "accuracy": 0.88, ...}

A resumed run first drops the lines of steps after the checkpoint it resumes from (the
killed run logged them, the resumed run takes those steps again), so the file holds each
step once. When CLU (``pip install clu``, with TensorFlow for its summary writer) can be
imported, the same scalars also go to TensorBoard event files in ``WORKDIR/tensorboard``
through ``clu.metric_writers.SummaryWriter``; without it nothing else is needed or
written.

Example:
  >>> import tempfile
  >>> workdir = tempfile.mkdtemp()
  >>> log = MetricsLog(workdir, resume_step=None)
  >>> log.write(100, {"loss": 0.41, "accuracy": 0.88}, epoch=9.1, seconds=3.2)
  >>> log.close()
  >>> read_metrics(workdir)
  [{'step': 100, 'epoch': 9.1, 'seconds': 3.2, 'loss': 0.41, 'accuracy': 0.88}]
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping

from mnemonic_jax import _files, _validate, errors

#: The JSON-lines file, inside the run's workdir.
METRICS_FILE = "metrics.jsonl"
#: TensorBoard event files (only written when CLU's summary writer is available).
TENSORBOARD_DIR = "tensorboard"


def _summary_writer(logdir: pathlib.Path) -> Any | None:
  """CLU's TensorBoard writer for ``logdir`` (asynchronous), or None without CLU/TensorFlow."""
  try:
    # pylint: disable-next=import-outside-toplevel
    from clu import metric_writers
  except ImportError:  # CLU, or the TensorFlow its summary writer needs, is not installed.
    return None
  return metric_writers.AsyncWriter(metric_writers.SummaryWriter(os.fspath(logdir)))


def _number(value: Any) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None  # JSON has no NaN.


#: The largest metrics log read (a line is ~200 bytes: a million logged steps).
MAX_METRICS_BYTES = 256 * 2**20


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The lines of a run's ``metrics.jsonl`` (empty if there is none).

  A line cut off by a crash (the last, not valid JSON) is skipped.

  Args:
    workdir: the run directory.

  Returns:
    One dict per complete line, in file order.
  """
  path = _validate.path(workdir, "workdir") / METRICS_FILE
  if not os.path.lexists(path):
    return []
  text = _files.read_regular(
      path, max_bytes=MAX_METRICS_BYTES, error=errors.BadCheckpoint,
      fix="remove it or give another workdir", what="a metrics log").decode("utf-8", "replace")
  lines = []
  for line in text.splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(record, dict):
      lines.append(record)
  return lines


class MetricsLog:
  """Appends step metrics to ``WORKDIR/metrics.jsonl`` (and TensorBoard through CLU).

  Attributes:
    path: the JSON-lines file.
    tensorboard: the TensorBoard directory, or None when CLU is not installed.
  """

  def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None,
               hparams: Mapping[str, Any] | None = None):
    """Opens the log of a run starting at step 0 or resuming after ``resume_step``.

    Args:
      workdir: the run directory (it exists: the run holds its lock).
      resume_step: the step the run resumes from; lines of later steps are dropped. None
        for a fresh run (an old file is replaced).
      hparams: the run's config, recorded as TensorBoard hyper-parameters on a fresh run.
    """
    workdir = _validate.path(workdir, "workdir")
    self.path = workdir / METRICS_FILE
    kept = []
    if resume_step is not None:
      kept = [r for r in read_metrics(workdir)
              if isinstance(r.get("step"), int) and r["step"] <= resume_step]
    tmp = self.path.with_name(f".{METRICS_FILE}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, self.path)
    self._file = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    self.tensorboard = workdir / TENSORBOARD_DIR
    self._writer = _summary_writer(self.tensorboard)
    if self._writer is None:
      self.tensorboard = None
    elif hparams is not None and resume_step is None:
      self._writer.write_hparams(_flat(hparams))

  def write(self, step: int, metrics: Mapping[str, Any], **extra: Any) -> None:
    """Appends one line: ``{"step": step, **extra, **metrics}`` (non-finite values as null).

    Args:
      step: the training step.
      metrics: name -> scalar (Python or numpy/jax scalar).
      **extra: further fields (e.g. ``epoch``, ``seconds``), written first.
    """
    scalars = {k: _number(v) for k, v in metrics.items()}
    record = {"step": int(step), **extra, **scalars}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._writer is not None:
      self._writer.write_scalars(int(step), {k: v for k, v in scalars.items() if v is not None})

  def close(self) -> None:
    """Flushes and closes the file and the TensorBoard writer."""
    self._file.close()
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """A nested config as ``{"model_kwargs.hidden": "(1000,)", "epochs": 200, ...}``."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(_flat(value, name + "."))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = str(value)
  return out
