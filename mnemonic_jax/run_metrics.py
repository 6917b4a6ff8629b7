"""A training run's logged metrics: JSON lines, TensorBoard summaries when CLU is there, and
the :class:`MetricsWindow` that averages step metrics without waiting on every step.

:func:`mnemonic_jax.workflow.train` writes, every ``config.log_every`` steps and at the
last step, the mean of each step metric over the steps since the previous line
(``loss``, ``image_loss``, ``code_loss``, ``accuracy``, ``code_fraction``) to
``WORKDIR/metrics.jsonl``, one JSON object per line::

  {"step": 100, "epoch": 9.09, "seconds": 3.2, "loss": 0.41, "accuracy": 0.88, ...}

The log is part of the run's record: each checkpoint records the lines logged up to its
step (:meth:`MetricsLog.record`: their number, bytes and SHA-256), and a run resumed from
it first checks that the file still starts with exactly those bytes. Lines missing, torn,
emptied, edited or deleted up to the checkpoint's step cannot be rebuilt (the checkpoint
carries only the sums since the last line), so the resume is refused in one line
(:class:`~mnemonic_jax.errors.BadCheckpoint`) rather than end with a log that looks whole
and is not. The lines after the checkpoint's step are dropped (the killed run logged them,
the resumed run takes those steps again), so the file holds each step once; a torn last
line among them (an append the kill cut off) is dropped with a :class:`MetricsLogWarning`
saying so. Each checkpoint carries the window of steps it ends in the middle of
(:meth:`MetricsWindow.snapshot`), so the resumed run writes those lines again exactly as an
uninterrupted run writes them (the ``seconds`` aside), never a mean over only the steps
since the checkpoint; from a checkpoint without it (an older release's, which records no
lines either) the killed run's later lines are kept instead (``keep_later``), unchecked.

When CLU (``pip install clu``, with TensorFlow for its summary writer) can be
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

import hashlib
import json
import math
import os
import pathlib
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _files, _validate, errors

#: A step's metrics: name -> scalar array (on the device).
Metrics = dict[str, jax.Array]
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


class MetricsLogWarning(UserWarning):
  """A resumed run dropped a torn last line of its ``metrics.jsonl`` (after the step it
  resumes from: the run logs those steps again)."""


def _read_log(path: pathlib.Path) -> bytes | None:
  """The bytes of a metrics log, or None if there is none (a regular file, checked)."""
  if not os.path.lexists(path):
    return None
  return _files.read_regular(path, max_bytes=MAX_METRICS_BYTES, error=errors.BadCheckpoint,
                             fix="remove it or give another workdir", what="a metrics log")


def _digest(data: bytes) -> dict[str, Any]:
  """What a checkpoint records of the log lines ``data`` (:meth:`MetricsLog.record`)."""
  return {"lines": data.count(b"\n"), "bytes": len(data),
          "sha256": hashlib.sha256(data).hexdigest()}


def _valid_record(record: Any) -> bool:
  return (isinstance(record, Mapping) and set(record) == {"lines", "bytes", "sha256"}
          and all(isinstance(record[k], int) and not isinstance(record[k], bool)
                  and record[k] >= 0 for k in ("lines", "bytes"))
          and isinstance(record["sha256"], str) and len(record["sha256"]) == 64)


def _logged_prefix(path: pathlib.Path, data: bytes | None, step: int,
                   record: Any, finished: bool = False) -> bytes:
  """The lines logged up to ``step`` that a checkpoint of it recorded, checked in ``data``
  (of a resume, or of a rerun of a run that ``finished`` at ``step``).

  Raises:
    BadCheckpoint: ``data`` does not start with them (one line saying what is wrong).
  """
  if not _valid_record(record):
    raise errors.BadCheckpoint(
        f"the checkpoint of step {step} records its metrics log as {str(record)[:80]}, not "
        "as lines, bytes and a SHA-256 (corrupt); resume from an earlier step, or train in "
        "a new workdir")
  size, lines = record["bytes"], record["lines"]
  prefix = (data or b"")[:size]
  if len(prefix) == size and _digest(prefix) == dict(record):
    return prefix
  logged = f"the {lines} line{'s' * (lines != 1)} logged up to step {step}"
  if data is None:
    what = f"is missing; it held {logged}"
  elif not data:
    what = f"is empty; it held {logged}"
  elif len(data) < size:
    what = (f"holds {len(data)} bytes, fewer than the {size} of {logged} (cut short, lines "
            "removed, or edited)")
  else:
    what = f"does not hold {logged} as they were written (edited or replaced since)"
  them = "them" if lines != 1 else "it"
  if finished:  # Nothing is resumed: the log would be named as the finished run's.
    raise errors.BadCheckpoint(
        f"{path} {what}; it is not the log the finished run wrote, and its checkpoint holds "
        f"only a digest of {them}: {_OWN_LOG}")
  raise errors.BadCheckpoint(
      f"{path} {what}; the checkpoint holds only a digest, it cannot rebuild {them}, and a "
      f"resume would end with a log that lacks {them}: put the run's own metrics.jsonl back, "
      "or train from the start in a new --workdir")


def check_resumable_log(workdir: str | os.PathLike, resume_step: int,
                        record: Mapping[str, Any] | None) -> None:
  """Checks that a run's ``metrics.jsonl`` holds the lines its checkpoint of
  ``resume_step`` recorded, as :class:`MetricsLog` does when it resumes; only reads.

  For the processes of a run that write no log: every process refuses alike.

  Args:
    workdir: the run directory.
    resume_step: the step the run resumes from.
    record: the checkpoint's :meth:`MetricsLog.record`; None (an older release's
      checkpoint) checks only that each complete line is a logged step.

  Raises:
    BadCheckpoint: the lines up to ``resume_step`` are missing, torn or changed, or
      (without a record) a complete line is not a logged step.
  """
  path = _validate.path(workdir, "workdir") / METRICS_FILE
  if record is not None:
    _logged_prefix(path, _read_log(path), resume_step, record)
  else:
    _refuse_junk(path, _read_log(path) or b"")


def check_finished_log(workdir: str | os.PathLike, step: int | None,
                       record: Mapping[str, Any] | None, *, epochs: int | None = None) -> None:
  """Checks the ``metrics.jsonl`` of a run that finished at ``step``; only reads.

  A finished run's rerun writes nothing and names the log as the run's metrics, so the log
  must be the one the run wrote: exactly the lines its final checkpoint recorded (nothing
  appended, edited or cut), or, without that record (the checkpoints removed, or an older
  release's), lines that each are a logged step (a JSON object with an int ``step``), the
  steps positive and strictly increasing, and, given the run's ``epochs``, each line's
  ``epoch`` the one the run logs with its step (``round(step / steps_per_epoch, 4)``), the
  last line the run's last step (at epoch ``epochs``: every run logs it), so that no line
  lies past it. No log at all is left alone: the rerun names none (a log may be removed to
  save room). An empty file is refused, with or without the record: the run logged at
  least its last step, and the rerun would name the file as the run's metrics.

  Args:
    workdir: the run directory.
    step: the run's last step, or None where it is not known (no final checkpoint).
    record: the final checkpoint's :meth:`MetricsLog.record`, or None.
    epochs: the run's ``config.epochs``: without ``record``, the run's steps per epoch and
      last step are read from the log's last line, and every line checked against them.

  Raises:
    BadCheckpoint: the log is not a regular file, is empty, lacks or changed recorded
      lines, or holds anything else (one line naming the first wrong line and the fix).
  """
  path = _validate.path(workdir, "workdir") / METRICS_FILE
  data = _read_log(path)
  if data is None:
    return
  if not data:
    raise errors.BadCheckpoint(
        f"{path} is empty; it is not the log of the finished run, which logged at least its "
        f"last step: {_OWN_LOG}")
  if record is not None:
    prefix = _logged_prefix(path, data, step, record, finished=True)
    if len(prefix) == len(data):
      return
    wrong = (record["lines"] + 1, f"the run logged {record['lines']} lines, up to its last "
             f"step, {step}")
  else:
    wrong = _first_bad_line(data, step) or _off_epoch_line(data, epochs)
    if wrong is None:
      return
  line = data.split(b"\n")[wrong[0] - 1].decode("utf-8", "replace")
  raise errors.BadCheckpoint(
      f"{path} line {wrong[0]} ({line[:40]!r}) is not a line the run logged ({wrong[1]}): the "
      "log was changed after the run; remove that line or put the run's own metrics.jsonl back")


_OWN_LOG = ("put the run's own metrics.jsonl back, or remove the file (the rerun then names no "
            "log)")


def _whole_lines(data: bytes) -> list[bytes]:
  """The lines of ``data`` (a last line without its newline counts as one)."""
  lines = data.split(b"\n")
  return lines[:-1] if not lines[-1] else lines


def _first_bad_line(data: bytes, last: int | None) -> tuple[int, str] | None:
  """The number (from 1) of the first line of ``data`` that is not a logged step, after
  the previous line's and of at most ``last`` (if given), and why; or None."""
  previous = 0
  for number, line in enumerate(_whole_lines(data), 1):
    step = _step_of(line)
    if step is None:
      return number, "not a JSON object with an int 'step'"
    if step <= previous:
      return number, (f"step {step} after step {previous}: a run logs each step once, in "
                      "order" if previous else f"step {step}: a run's steps start at 1")
    if last is not None and step > last:
      return number, f"step {step} is past the run's last step, {last}"
    previous = step
  return None


def _off_epoch_line(data: bytes, epochs: int | None) -> tuple[int, str] | None:
  """The first line of a finished run's log (its steps checked increasing) whose ``epoch``
  is not the one its step has in a run of ``epochs`` epochs ending at the last line's
  step, and why; or None (also without ``epochs``)."""
  lines = [_records(line.decode("utf-8", "replace"))[0] for line in _whole_lines(data)]
  if epochs is None or not lines:
    return None
  total = lines[-1]["step"]
  if lines[-1].get("epoch") != epochs or total % epochs:
    return len(lines), (f"a finished run's last line is its last step's, at epoch {epochs} "
                        f"(config.epochs); this one logs step {total} at epoch "
                        f"{lines[-1].get('epoch')!r}")
  for number, record in enumerate(lines, 1):
    epoch, expected = record.get("epoch"), round(record["step"] / (total // epochs), 4)
    if epoch != expected or isinstance(epoch, bool):
      return number, (f"step {record['step']} at epoch {epoch!r}; in {epochs} epochs "
                      f"ending at step {total} (the last line's) it is at epoch {expected}")
  return None


def _refuse_junk(path: pathlib.Path, data: bytes) -> None:
  """Refuses a complete line of ``data`` (up to its last newline) that is not a logged step
  or does not follow the previous line's step.

  Raises:
    BadCheckpoint: naming the line, and the fix.
  """
  wrong = _first_bad_line(data[:data.rfind(b"\n") + 1], None)
  if wrong is not None:
    line = data.split(b"\n")[wrong[0] - 1].decode("utf-8", "replace")
    raise errors.BadCheckpoint(
        f"{path} line {wrong[0]} ({line[:40]!r}) is not a logged step ({wrong[1]}): the log "
        "was changed since the run wrote it; remove that line")


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The lines of a run's ``metrics.jsonl`` (empty if there is none).

  A last line cut off by a crash (no newline at its end) is skipped; any other line that
  is not a logged step is refused, and so is a step that does not follow the previous
  line's (a duplicated, reordered or non-positive one): :class:`MetricsLog` writes each
  step once, in order, from step 1 (a resume drops the lines it logs again), so such a log
  was changed by hand, and its lines are not returned as the run's.

  Args:
    workdir: the run directory.

  Returns:
    One dict per complete line, in file order (steps strictly increasing).

  Raises:
    BadCheckpoint: the log is not a regular file, or a complete line in it is not a JSON
      object with an int ``step`` above the previous line's (the message names the line).
  """
  path = _validate.path(workdir, "workdir") / METRICS_FILE
  data = _read_log(path) or b""
  _refuse_junk(path, data)
  # A torn last line (an append a crash cut off) is left out.
  return _records(data[:data.rfind(b"\n") + 1].decode("utf-8", "replace"))


def _step_of(line: bytes) -> int | None:
  """The step of a log line (a JSON object with an int ``step``), or None."""
  records = _records(line.decode("utf-8", "replace"))
  step = records[0].get("step") if records else None
  return step if isinstance(step, int) and not isinstance(step, bool) else None


def _records(text: str) -> list[dict[str, Any]]:
  """The JSON objects of ``text``'s lines (other lines skipped)."""
  lines = []
  for line in text.splitlines():
    try:
      record = json.loads(line)
    except (ValueError, RecursionError):
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
               hparams: Mapping[str, Any] | None = None, keep_later: bool = False,
               record: Mapping[str, Any] | None = None):
    """Opens the log of a run starting at step 0 or resuming after ``resume_step``.

    Args:
      workdir: the run directory (it exists: the run holds its lock).
      resume_step: the step the run resumes from; lines of later steps are dropped. None
        for a fresh run (an old file is replaced).
      hparams: the run's config, recorded as TensorBoard hyper-parameters on a fresh run.
      keep_later: keep the lines of steps after ``resume_step`` too, and write no line for
        a step up to the last of them (a resume that cannot compute them again whole).
      record: what the checkpoint of ``resume_step`` recorded of the log
        (:meth:`record`): the file must start with exactly those lines, which are kept as
        they are. None (an older release's checkpoint): the lines of steps up to
        ``resume_step`` are kept as found.

    Raises:
      BadCheckpoint: the lines ``record`` holds are missing, torn or changed, or (without
        a record) a complete line is not a logged step (nothing is written then); or the
        file is not a regular file.

    Warns:
      MetricsLogWarning: a torn last line after them (an interrupted append) is dropped.
    """
    workdir = _validate.path(workdir, "workdir")
    self.path = workdir / METRICS_FILE
    if self.path.is_dir() and not self.path.is_symlink():
      raise errors.BadCheckpoint(f"{self.path} is a directory, not the run's metrics log; "
                                 "move it out of the workdir, or use another --workdir")
    kept = b""
    if resume_step is not None:
      kept = self._resumed(resume_step, record, keep_later)
    steps = [s for s in map(_step_of, kept.splitlines()) if s is not None]
    self._written = max(steps, default=-1) if keep_later else -1
    tmp = self.path.with_name(f".{METRICS_FILE}.tmp")
    if os.path.lexists(tmp):  # A leftover, or a link: removed, never written through.
      os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(tmp, flags, 0o644), "wb") as f:
      f.write(kept)
    os.replace(tmp, self.path)
    self._data = hashlib.sha256(kept)
    self._lines, self._bytes = kept.count(b"\n"), len(kept)
    self._file = open(self.path, "ab")  # pylint: disable=consider-using-with
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
    if int(step) <= self._written:
      return  # Kept from the run this one resumes (keep_later).
    scalars = {k: _number(v) for k, v in metrics.items()}
    line = (json.dumps({"step": int(step), **extra, **scalars}) + "\n").encode("utf-8")
    self._file.write(line)
    self._file.flush()
    self._data.update(line)
    self._lines, self._bytes = self._lines + 1, self._bytes + len(line)
    if self._writer is not None:
      self._writer.write_scalars(int(step), {k: v for k, v in scalars.items() if v is not None})

  def _resumed(self, step: int, record: Mapping[str, Any] | None, keep_later: bool) -> bytes:
    """What a run resumed after ``step`` keeps of the log: the lines the checkpoint
    recorded (checked), or (without a record) the lines of steps up to ``step``; and with
    ``keep_later`` the whole lines after them."""
    data = _read_log(self.path)
    if record is None:  # Unrecorded: the whole lines of steps up to ``step`` (or all),
      _refuse_junk(self.path, data or b"")  # each a logged step (no junk dropped silently).
      return b"".join(line for line in (data or b"").splitlines(keepends=True)
                      if line.endswith(b"\n") and _step_of(line) is not None
                      and (keep_later or _step_of(line) <= step))
    prefix = _logged_prefix(self.path, data, step, record)
    *whole, last = data[len(prefix):].split(b"\n")  # last: what follows the last newline.
    if last:
      warnings.warn(MetricsLogWarning(
          f"{self.path}: its last line, after the lines logged up to step {step}, is cut off "
          f"(an append the run's stop interrupted); dropped: the run logs the steps after "
          f"{step} again"), stacklevel=3)
    if not keep_later:
      return prefix
    return prefix + b"".join(line + b"\n" for line in whole if _step_of(line) is not None)

  def record(self) -> dict[str, Any]:
    """What a checkpoint records of the lines written so far (a JSON dict): ``lines``,
    ``bytes`` and ``sha256`` (hex) of the file's contents, which are first synced to disk
    (a checkpoint never records lines a crash of the machine could still lose)."""
    if not self._file.closed:
      os.fsync(self._file.fileno())
    return {"lines": self._lines, "bytes": self._bytes, "sha256": self._data.hexdigest()}

  def close(self) -> None:
    """Flushes and closes the file and the TensorBoard writer."""
    self._file.close()
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()


#: Steps a :class:`MetricsWindow` sums in one dispatch (a fixed length: one program).
WINDOW_CHUNK = 16


class MetricsWindow:
  """Means of step metrics over a window of steps, read without waiting on every step.

  The step metrics stay on the device; every :data:`WINDOW_CHUNK` steps one jitted
  program sums them (a fixed number of steps, a shorter chunk padded and masked, so any
  window length reuses one compiled program). :meth:`mean` reads the window's means,
  waiting for them; :meth:`ready_mean` reads only the sums already computed, never
  waiting. Either starts a new window.

  Example:
    >>> window = MetricsWindow()
    >>> for v in (1.0, 2.0, 6.0):
    ...   window.add({"loss": jnp.float32(v)})
    >>> window.mean()
    {'loss': 3.0}
  """

  def __init__(self):
    self._steps: list[Metrics] = []
    self._sums: list[tuple[Metrics, int]] = []

  def add(self, step_metrics: Metrics) -> None:
    """Adds one step's metrics (scalars, on the device); sums a full chunk."""
    self._steps.append(step_metrics)
    if len(self._steps) == WINDOW_CHUNK:
      self.flush()

  def add_sums(self, sums: Metrics, steps: int) -> None:
    """Adds the sums of ``steps`` steps' metrics (scalars, on the device)."""
    self.flush()
    self._sums.append((sums, steps))

  def add_means(self, means: Metrics, steps: int) -> None:
    """Adds the means over ``steps`` steps (scalars, on the device): ``fit``'s
    ``on_step`` metrics with ``on_step_every > 1``."""
    if steps == 1:
      self.add(means)
    else:
      self.add_sums(_times(means, np.float32(steps)), steps)

  def flush(self) -> None:
    """Dispatches the sum of the steps added since the last chunk (no wait)."""
    if not self._steps:
      return
    n, steps = len(self._steps), self._steps
    steps = steps + [steps[-1]] * (WINDOW_CHUNK - n)  # Padding, masked out in the sum.
    self._sums.append((_sum_steps(steps, np.int32(n)), n))
    self._steps = []

  def mean(self) -> dict[str, float]:
    """The means over the window (waits for them); ``{}`` for an empty window."""
    self.flush()
    sums, self._sums = self._sums, []
    return _means(sums)

  def snapshot(self) -> dict[str, Any]:
    """The window so far as JSON, ``{"steps": n, "sums": {name: float}}`` (waits for it).

    The window is unchanged but for its unfinished chunk, summed now (so a run that saves
    a snapshot sums the same chunks whether or not it is resumed from one). A fresh
    window given it by :meth:`resume` has means bitwise equal to this one's, whatever is
    added to both afterwards: the sums are folded in the order :meth:`mean` folds them.
    """
    self.flush()
    steps = sum(n for _, n in self._sums)
    if not steps:
      return {"steps": 0, "sums": {}}
    return {"steps": steps,
            "sums": {k: sum(float(s[k]) for s, _ in self._sums) for k in self._sums[0][0]}}

  def resume(self, snapshot: Mapping[str, Any]) -> None:
    """Starts this (empty) window where :meth:`snapshot` of another one left it.

    Raises:
      BadCheckpoint: ``snapshot`` is not what :meth:`snapshot` returns (a damaged record).
    """
    steps, sums = (snapshot.get("steps"), snapshot.get("sums")) if isinstance(
        snapshot, Mapping) else (None, None)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0
            and isinstance(sums, Mapping) and bool(sums) == bool(steps)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    for v in sums.values())):
      raise errors.BadCheckpoint(
          f"the checkpoint's metrics window {str(snapshot)[:80]} is not a window of step "
          "metrics (corrupt); resume from an earlier step, or train in a new workdir")
    self._steps, self._sums = [], ([(dict(sums), steps)] if steps else [])

  def ready_mean(self) -> dict[str, float] | None:
    """The means over the chunks whose sums are computed, never waiting; None if none is.

    Those chunks start the next window; later steps stay in it.
    """
    ready = 0
    while ready < len(self._sums) and all(
        v.is_ready() for v in jax.tree.leaves(self._sums[ready][0])):
      ready += 1
    if not ready:
      return None
    sums, self._sums = self._sums[:ready], self._sums[ready:]
    return _means(sums)


def _means(sums: list[tuple[Metrics, int]]) -> dict[str, float]:
  count = sum(n for _, n in sums)
  if not count:
    return {}
  return {k: sum(float(s[k]) for s, _ in sums) / count for k in sums[0][0]}


_times = jax.jit(lambda means, n: jax.tree.map(lambda v: v * n, means))


@jax.jit
def _sum_steps(steps: list[Metrics], count: jax.Array) -> Metrics:
  """The sums of ``steps[:count]`` (the rest is padding)."""
  keep = jnp.arange(len(steps)) < count
  return jax.tree.map(
      lambda *v: jnp.sum(jnp.where(keep, jnp.stack(v), jnp.zeros((), v[0].dtype))), *steps)


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
