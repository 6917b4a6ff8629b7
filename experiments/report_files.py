"""A report's files are replaced together or not at all: the staged report.

A runner's report is several files (``depth.md`` beside ``depth.json``, ``depth.csv`` and
its figures; a benchmark's table and its ratio rows). Written one after the other into
``--out``, a Ctrl-C, a SIGTERM or an exception half-way left the earlier report's files
mixed with new ones: a new ``.md`` whose figures were old, a new ``.json`` beside an old
``.md``. Under :func:`staged_report` a writer writes every file into a hidden staging
folder inside ``out`` (``.report-staging-<host>-<pid>-<id>``), under its final name; only
once the writer is done are the files moved into place (``os.replace``, same file system),
and while they move SIGINT and SIGTERM wait: a signal that arrives then is delivered right
after the last file is in place. Until then ``out`` holds the earlier report untouched; an
exception (``KeyboardInterrupt`` included) or a SIGTERM removes the staging folder and
leaves ``out`` as it was. A process killed outright (SIGKILL) leaves its staging folder,
which the next staged report of that folder removes once the process is known to be gone.

Signals are deferred by a Python handler, not by ``signal.pthread_sigmask``: JAX and
tqdm run threads, a signal sent to the process is delivered to any thread that does not
block it, and CPython runs the Python handler in the main thread whichever thread took it,
so a mask on the main thread alone would not hold a Ctrl-C back.

Reports are composed in steps: a runner reads the earlier report's notes and stamp and
writes its notes file (:func:`experiments.run_cache.prepare_report`), then calls the
report's writer. A :func:`staged_report` opened while another is open joins it: its files
are moved with the outer one's, so the runner opens one around both steps, and each writer
opens its own (which then joins), so that it is safe when called alone too.
:func:`target` is where to write a file that should join an open report (the notes file),
:func:`remove` a file of the earlier report that the new one no longer has.

Readers of the earlier report read ``out`` itself, never the staging folder. Per-run cache
records are not reports: they are written one by one (:mod:`experiments.run_cache`).

Standard library and :mod:`mnemonic_jax._files` only: every runner and benchmark can import
it cheaply.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Union

from mnemonic_jax import _files

PathLike = Union[str, os.PathLike]

_PREFIX = ".report-staging-"
_STAGING = re.compile(r"^\.report-staging-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$")
#: The signals held back while a report's files move into place.
_DEFERRED = (signal.SIGINT, signal.SIGTERM)


class _Terminated(BaseException):
  """SIGTERM arrived while a report was being written (the staging folder is removed, then
  the signal's default action ends the process)."""


def remove_stale_staging(out: PathLike) -> list[pathlib.Path]:
  """Removes the staging folders in ``out`` of processes of this machine that are gone.

  Args:
    out: a report's folder (it need not exist).

  Returns:
    The folders removed (a live process's, or another machine's, are never touched).
  """
  removed = []
  try:
    entries = list(pathlib.Path(out).iterdir())
  except OSError:
    return removed
  for entry in entries:
    match = _STAGING.match(entry.name)
    if match and match["host"] == _files.HOST_TAG and not _files.pid_alive(int(match["pid"])):
      shutil.rmtree(entry, ignore_errors=True)
      removed.append(entry)
  return removed


class _Report:
  """The files of one report being written: staging folders (final folder -> staging
  folder) and the earlier files to remove, all put in place by :meth:`commit`."""

  def __init__(self):
    self.folders: dict[pathlib.Path, pathlib.Path] = {}
    self.removals: list[pathlib.Path] = []

  def folder(self, out: PathLike) -> pathlib.Path:
    """The staging folder standing for ``out`` (created, with ``out``, if need be)."""
    final = pathlib.Path(os.path.abspath(out))
    for staging in self.folders.values():  # Already a staged folder: itself.
      if final == staging or staging in final.parents:
        final.mkdir(parents=True, exist_ok=True)
        return final
    for root, staging in self.folders.items():
      if final == root or root in final.parents:
        inner = staging / final.relative_to(root)
        inner.mkdir(parents=True, exist_ok=True)
        return inner
    final.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    staging = final / f"{_PREFIX}{_files.HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    self.folders[final] = staging
    return staging

  def commit(self) -> None:
    """Moves every staged file into place and removes what was asked, signals held back."""
    with _signals_deferred(), contextlib.ExitStack() as cleanup:
      cleanup.callback(self.abort)
      for root, staging in self.folders.items():
        # The Markdown last: killed outright half-way, no new page links a missing file.
        for path in sorted(staging.rglob("*"), key=lambda p: (p.suffix == ".md", p)):
          if path.is_dir() and not path.is_symlink():
            continue
          final = root / path.relative_to(staging)
          final.parent.mkdir(parents=True, exist_ok=True)
          os.replace(path, final)
      for path in self.removals:
        path.unlink(missing_ok=True)

  def abort(self) -> None:
    """Removes the staging folders (and whatever is still in them)."""
    for staging in self.folders.values():
      shutil.rmtree(staging, ignore_errors=True)


#: The staged report open in this process (one at most: a nested one joins it).
_OPEN: list[_Report] = []


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
  """SIGINT and SIGTERM are recorded, not acted on, inside; delivered again after."""
  if threading.current_thread() is not threading.main_thread():
    yield  # Signal handlers can only be set from the main thread.
    return
  caught: list[int] = []
  previous = {}
  for signum in _DEFERRED:
    handler = signal.getsignal(signum)
    if handler is not None:  # None: set outside Python, could not be restored.
      previous[signum] = signal.signal(signum, lambda s, frame: caught.append(s))
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    for signum in dict.fromkeys(caught):
      signal.raise_signal(signum)


class _SigtermWatch:
  """While armed, a SIGTERM raises :class:`_Terminated`; disarmed, it is only recorded."""

  def __init__(self):
    self.came = False
    self.armed = True

  def __call__(self, signum, frame) -> None:
    del signum, frame
    self.came = True
    if self.armed:
      self.armed = False
      raise _Terminated()


@contextlib.contextmanager
def _sigterm_watched() -> Iterator[_SigtermWatch | None]:
  """A SIGTERM with its default action (end the process at once, nothing cleaned up) is
  watched inside (:class:`_SigtermWatch`); None where SIGTERM has another handler (or
  outside the main thread), which then acts as before."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
    yield None
    return
  watch = _SigtermWatch()
  signal.signal(signal.SIGTERM, watch)
  try:
    yield watch
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def staged_files() -> Iterator[None]:
  """The files written to :func:`target` paths inside are put in place together, or none.

  As :func:`staged_report` (which opens one), for files that are not in one folder (a
  benchmark's table and its ratio rows). Opened inside another, it joins that one.

  Raises:
    Whatever the body raised, once the staged files are removed.
  """
  if _OPEN:
    yield
    return
  report, watch = _Report(), None
  _OPEN.append(report)
  try:
    with _sigterm_watched() as watch:
      try:
        try:
          yield
        finally:
          _OPEN.remove(report)
          if watch is not None:
            watch.armed = False
      except BaseException:
        with _signals_deferred():
          report.abort()
        if watch is None or not watch.came:
          raise
      else:
        report.commit()
  finally:
    if watch is not None and watch.came:
      signal.raise_signal(signal.SIGTERM)  # Its default action again: the process ends.


@contextlib.contextmanager
def staged_report(out: PathLike) -> Iterator[pathlib.Path]:
  """Writes a report's files so that they replace the earlier ones together or not at all.

  Write every file of the report into the yielded folder under its final name (figures
  too: a Markdown link by that name is right once the files are in place). On a normal
  exit each file is moved to ``out`` (subfolders kept), with SIGINT and SIGTERM held back
  until the last one is in place; on an exception (``KeyboardInterrupt`` included) or a
  SIGTERM, nothing in ``out`` changes and the staging folder is removed. Opened while
  another staged report is open, it joins that one (its files move with the outer's).

  Args:
    out: the report's folder (created if absent; a hidden staging folder is made in it).

  Yields:
    The folder standing for ``out`` until the report is complete.

  Raises:
    Whatever the body raised, after removing the staging folder. A SIGTERM with its default
    action still ends the process, once the staging folder is removed.

  Example::

    with staged_report(out) as stage:
      (stage / "depth.md").write_text(markdown)
      figure.savefig(stage / "depth_mlp.png")
  """
  with staged_files():
    yield _OPEN[0].folder(out)


def target(path: PathLike) -> pathlib.Path:
  """Where to write the file ``path`` now: in the open staged report (placed with its
  files), or ``path`` itself when none is open."""
  path = pathlib.Path(path)
  return _OPEN[0].folder(path.parent) / path.name if _OPEN else path


def remove(path: PathLike) -> None:
  """Removes ``path`` (a file of an earlier report that the new one does not have) when the
  open staged report's files are put in place; at once when none is open."""
  path = pathlib.Path(path)
  if _OPEN:
    _OPEN[0].removals.append(path)
  else:
    path.unlink(missing_ok=True)


def write_text(path: PathLike, text: str) -> None:
  """Writes one file of a report whole or not at all (with the open staged report's files
  if one is open, else on its own; see :func:`staged_files`)."""
  with staged_files():
    target(path).write_text(text)
