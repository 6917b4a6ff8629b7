"""How a command ends, whatever happens on the way: Ctrl-C, a lost report, the machine.

One run of a command (:func:`running`) keeps what decides its ending:

* **Ctrl-C.** A SIGINT handler records every interrupt. While the program starts (imports,
  JAX's backend) it only records: an import cut by ``KeyboardInterrupt`` can leave an
  extension half-initialised. Once the work begins, a recorded interrupt raises
  ``KeyboardInterrupt`` at once, and the handler raises it for each new Ctrl-C. An
  interrupt that a library swallows (raised inside a garbage-collection callback, which
  Python reports as unraisable, or caught by an ``except BaseException``) is raised again:
  the unraisable report is dropped and the signal delivered once more right after, and
  :func:`check_interrupt` (before every save and after the command) raises what was
  recorded. Whatever the moment, an interrupted command ends with one line and status 130,
  and an output is either absent or complete (saves are atomic). What the interrupt left
  half-done reports nothing more: once interrupted, the run drops unraisable reports,
  thread exceptions and warnings (:func:`_thread_filter`).
* **Outputs written.** :func:`wrote` records each output once it is complete, so that a
  failure after it (a lost report, an interrupt) can say that it is there and complete.
* **The report's stream.** While the command runs, ``sys.stdout`` is a
  :class:`ReportStream`: text is made printable (:func:`mnemonic_jax.cli.report.printable`,
  keeping newlines) and a failed write (a full disk, a closed pipe, a stdout closed before
  the program started) raises :class:`ReportNotWritten`.
* **Encodings.** Both streams write a character their encoding cannot carry as a
  backslash escape (:func:`escaping_streams`), never a ``UnicodeEncodeError``.
* **Warnings.** A Python warning given during the run (an older bundle loaded without
  every checksum, ...) is one line ``warning: TEXT`` of the report (:func:`show_warning`),
  never the ``warnings`` module's dump of a source file and line; ``evaluate --json``
  keeps them for its object instead (:attr:`Run.hold_warnings`).

:mod:`mnemonic_jax.cli` turns these into exit statuses; nothing here prints.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import errno
import gc
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

#: The exit status of a command whose output was written and is complete, but whose
#: report on stdout could not be written (a full disk, a closed pipe).
EXIT_REPORT_LOST = 3
#: The exit status when the reader of stdout went away (``evaluate ... | head``) and the
#: command wrote nothing else: 128 + SIGPIPE, no line, as other Unix tools end.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE

_STARTING, _WORKING, _SAVING, _ENDING = "starting", "working", "saving", "ending"
#: Seconds before a swallowed interrupt is delivered again.
_REDELIVER_S = 0.01


class ReportNotWritten(Exception):
  """Writing the report on stdout failed; ``error`` is the ``OSError`` behind it."""

  def __init__(self, error: OSError):
    super().__init__(f"cannot write the report to stdout: {error.strerror or error}")
    self.error = error


#: What a report written to a stdout that was closed before the program started meets.
_STDOUT_CLOSED = "stdout is closed"


class ReportStream:
  """``sys.stdout`` while a command runs: printable text, failures as ReportNotWritten.

  Args:
    stream: the stream written to (the original ``sys.stdout``); None when the program
      started with its stdout closed (``>&-``), where every write fails as
      ``stdout is closed``.
  """

  def __init__(self, stream: TextIO | None):
    self._stream = stream

  def _open(self) -> TextIO:
    if self._stream is None:
      raise ReportNotWritten(OSError(errno.EBADF, _STDOUT_CLOSED))
    return self._stream

  def write(self, text: str) -> int:
    """Writes ``text`` with its control characters escaped (newlines kept)."""
    from mnemonic_jax.cli import report  # pylint: disable=import-outside-toplevel

    stream = self._open()
    try:
      return stream.write(report.printable(text, keep="\n"))
    except UnicodeError:  # A bug, not a stream that failed.
      raise
    except (OSError, ValueError) as e:  # ValueError: a stream closed meanwhile.
      raise _not_written(e) from e

  def flush(self) -> None:
    """Flushes the stream, raising :class:`ReportNotWritten` if it cannot."""
    stream = self._open()
    try:
      stream.flush()
    except UnicodeError:
      raise
    except (OSError, ValueError) as e:
      raise _not_written(e) from e

  def __getattr__(self, name: str) -> Any:
    if self._stream is None:  # Nothing to ask (isatty, fileno, ...): as Python's None.
      raise AttributeError(name)
    return getattr(self._stream, name)


@contextlib.contextmanager
def escaping_streams() -> Iterator[None]:
  """``sys.stdout`` and ``sys.stderr`` write a character their encoding cannot carry as a
  backslash escape (``\\xe9``, ``\\u4e00``), for the whole run; put back on leaving.

  Python's stdout is strict (and a C locale's ``surrogateescape``), so a report holding a
  path or a class name its encoding lacks (``PYTHONIOENCODING=ascii``, ``LC_ALL=C``
  without UTF-8 mode) raised ``UnicodeEncodeError``: a traceback after the output was
  saved, the report cut off; ``PYTHONIOENCODING=ascii:strict`` lost the error line on
  stderr. Changing the streams' ``errors`` once covers every writer: the report, the
  warnings, ``--json``, the error line, progress bars and the libraries. A stream that
  cannot be reconfigured (not a text file, already closed) is left as it is.

  Yields:
    None.
  """
  changed: list[tuple[Any, str]] = []
  for stream in (sys.stdout, sys.stderr):
    errors = getattr(stream, "errors", None)
    if (errors in (None, "backslashreplace") or not hasattr(stream, "reconfigure")
        or any(stream is done for done, _ in changed)):
      continue
    try:
      stream.reconfigure(errors="backslashreplace")
    except (OSError, ValueError):  # Closed, or its pending text cannot be flushed.
      continue
    changed.append((stream, errors))
  try:
    yield
  finally:
    for stream, errors in reversed(changed):
      try:
        stream.reconfigure(errors=errors)
      except (OSError, ValueError):
        pass


def _not_written(error: Exception) -> ReportNotWritten:
  """:class:`ReportNotWritten` for a failed write: an ``OSError``, or the ``ValueError`` of
  a closed stream (as ``stdout is closed``)."""
  if not isinstance(error, OSError):
    error = OSError(errno.EBADF, _STDOUT_CLOSED)
  return ReportNotWritten(error)


def warning_text(message: Warning | str, category: type[Warning] = UserWarning) -> str:
  """A warning in one printable line: the project's own as they are, another library's
  after its category (``DeprecationWarning: ...``), control characters and newlines
  escaped (:func:`mnemonic_jax._files.escape`)."""
  from mnemonic_jax import _files  # pylint: disable=import-outside-toplevel

  text = str(message).strip() or category.__name__
  if not category.__module__.startswith("mnemonic_jax"):
    text = f"{category.__name__}: {text}"
  return _files.escape(text)


def show_warning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
  """``warnings.showwarning`` while a command runs: one line ``warning: TEXT``.

  The line goes to the report (stdout), as the command's other warnings do, in the
  tool's words (:func:`warning_text`), without the ``warnings`` module's source file,
  line number and line of code; with :attr:`Run.hold_warnings` (``evaluate --json``) it
  is only kept in :attr:`Run.warnings`, for the command to report. Once the run was
  interrupted, warnings are dropped (the report ends there; see :func:`_thread_filter`).
  A report that cannot be written is left to fail where the command writes or flushes it.

  Args: as :func:`warnings.showwarning` (``filename``, ``lineno``, ``file`` and ``line``
    are not shown).
  """
  del filename, lineno, file, line
  run = current()
  if run.interrupted:  # A consequence of the cut (a coroutine never awaited): see
    return  # _thread_filter. The report stops at the interrupt, and says only that.
  text = warning_text(message, category)
  run.warnings.append(text)
  if run.hold_warnings:
    return
  try:
    sys.stdout.write(f"warning: {text}\n")
  except (ReportNotWritten, OSError, ValueError, AttributeError):
    pass  # The command's own writes and last flush meet the same failure and say it.


@dataclasses.dataclass(eq=False)  # Runs are compared by identity.
class Run:
  """What one command run has done so far.

  Attributes:
    interrupted: a Ctrl-C (or, one process, SIGTERM) arrived.
    signal: the first of them (``SIGINT`` or ``SIGTERM``), which decides the last line
      and the exit status (130 or 143).
    phase: ``"starting"`` (interrupts recorded only), ``"working"`` (raised),
      ``"saving"`` (recorded, raised once the save returns) or ``"ending"`` (the outcome
      is decided; recorded only).
    written: outputs written and complete.
    saving: ``(output, existed before)`` of a save in progress.
    report_lost: the report could not be written to stdout.
    warnings: the Python warnings given during the run, one printable line each
      (:func:`show_warning`).
    hold_warnings: keep them for the command's report (``evaluate --json``) instead of
      printing them as they come.
  """
  interrupted: bool = False
  signal: int = signal.SIGINT
  phase: str = _STARTING
  written: list[pathlib.Path] = dataclasses.field(default_factory=list)
  saving: tuple[pathlib.Path, bool] | None = None
  report_lost: bool = False
  warnings: list[str] = dataclasses.field(default_factory=list)
  hold_warnings: bool = False

  def begin_work(self) -> None:
    """Ctrl-C raises from now on; one recorded while starting is raised now."""
    self.phase = _WORKING
    check_interrupt()

  def settle(self) -> None:
    """The outcome is decided: later interrupts are only recorded."""
    self.phase = _ENDING

  def completed(self) -> list[pathlib.Path]:
    """Outputs that are complete: written, or a save cut short that had already landed.

    A save is atomic (:func:`mnemonic_jax.checkpointing.save_bundle`): an output that did
    not exist before and exists now is complete.
    """
    done = list(self.written)
    if self.saving is not None:
      output, existed = self.saving
      if not existed and os.path.lexists(output):
        done.append(output)
    return done


_RUNS: list[Run] = []
#: Held while an interrupt is delivered again, and while a run stops taking them.
_DELIVERY = threading.Lock()


def current() -> Run:
  """The innermost run (a detached one outside :func:`running`)."""
  return _RUNS[-1] if _RUNS else Run(phase=_WORKING)


def on_interrupt(signum: int, frame: Any) -> None:  # pylint: disable=unused-argument
  """The SIGINT (and SIGTERM) handler of a run: records the interrupt and its signal (the
  first one); raises ``KeyboardInterrupt`` once the work began."""
  run = current()
  if not run.interrupted:
    run.signal = signum
  run.interrupted = True
  if run.phase == _WORKING:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
  """SIGTERM (a scheduler's or ``kill``'s) ends the command as Ctrl-C does: one line, no
  output half-written, nothing left beside it, status 143. Its default action killed the
  process at once, with no line, and a save cut short left its hidden temporary folder.

  Installed from the start, as the SIGINT handler: while the program starts it only
  records. With several processes, ``jax.distributed.initialize`` then installs the
  preemption service's own SIGTERM handler in its place (a training run saves and stops
  on it). Left alone outside the main thread or when SIGTERM is not at its default; put
  back on leaving.
  """
  previous = None
  if (threading.current_thread() is threading.main_thread()
      and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
    previous = signal.signal(signal.SIGTERM, on_interrupt)
  try:
    yield
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)


def _unraisable_filter(previous: Any) -> Any:
  """A ``sys.unraisablehook`` that drops swallowed interrupts and delivers them again, and
  drops every other report once the run was interrupted (see :func:`_thread_filter`)."""

  def hook(unraisable: Any) -> None:
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
      if not current().interrupted:
        previous(unraisable)
      return
    run = current()
    if run.phase == _WORKING:  # Swallowed (in a gc callback, a __del__): again, once
      # this hook and the callback have returned (delivered now, the signal would be
      # handled inside them). Swallowed again, it comes back again.
      timer = threading.Timer(_REDELIVER_S, _deliver_again, args=(run,))
      timer.daemon = True
      timer.start()

  return hook


def _thread_filter(previous: Any) -> Any:
  """A ``threading.excepthook`` that drops what a thread raises once the run was
  interrupted.

  An interrupt cuts the main thread wherever it is, and what it leaves half-done fails
  later where no one can catch it: a Ctrl-C inside the constructor of the asyncio event
  loop Orbax makes for each save (``asyncio_utils._run_sync_via_new_loop``) left a loop
  without its self-pipe, whose ``__del__`` then printed a 12-line "Exception ignored ...
  no attribute '_ssock'" after the error line (once in ~70 Ctrl-Cs of a training run);
  coroutines it never awaited warn (:func:`show_warning` drops those); a background
  save thread may fail on what was cut. The run has already said what happened, in one
  line, so these reports are dropped (:func:`_unraisable_filter` likewise).
  """

  def hook(args: Any) -> None:
    if not current().interrupted:
      previous(args)

  return hook


def _deliver_again(run: Run) -> None:
  """SIGINT to the main thread's handler, if ``run`` is still at work."""
  with _DELIVERY:  # Not while the run ends (see running()).
    if run.phase == _WORKING:
      _thread.interrupt_main(signal.SIGINT)


@contextlib.contextmanager
def running() -> Iterator[Run]:
  """One command run: the SIGINT handler, the unraisable filter, and the run's record.

  Outside the main thread, or when SIGINT is ignored (a job a shell started in the
  background) or handled by something other than Python, the signal is left alone. What
  is changed is put back on leaving.

  Yields:
    The :class:`Run`.
  """
  run = Run()
  previous_hook, previous_thread_hook = sys.unraisablehook, threading.excepthook
  previous_handler = None
  if threading.current_thread() is threading.main_thread():
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler:
      previous_handler = signal.signal(signal.SIGINT, on_interrupt)
  sys.unraisablehook = _unraisable_filter(previous_hook)
  threading.excepthook = _thread_filter(previous_thread_hook)
  _RUNS.append(run)
  try:
    yield run
  finally:
    with _DELIVERY:  # No interrupt is delivered again from now on...
      run.settle()
    for _ in range(2):  # ...and one delivered just before is handled here (recorded).
      pass
    if run.interrupted:  # What the interrupt left half-built goes while its reports drop.
      gc.collect()
    _RUNS.remove(run)
    sys.unraisablehook, threading.excepthook = previous_hook, previous_thread_hook
    if previous_handler is not None:
      signal.signal(signal.SIGINT, previous_handler)


def check_interrupt() -> None:
  """Raises ``KeyboardInterrupt`` if a Ctrl-C was recorded (and perhaps swallowed).

  Raises:
    KeyboardInterrupt: an interrupt arrived during the run.
  """
  run = current()
  if run.interrupted and run.phase != _ENDING:
    raise KeyboardInterrupt


@contextlib.contextmanager
def saving(output: pathlib.Path) -> Iterator[None]:
  """Around one save of ``output``: an interrupt first stops it, one during it is raised
  once it returns, and once it is written it is recorded (see :func:`wrote`). A save that
  fails stays recorded as in progress, so that :meth:`Run.completed` can tell whether it
  landed.

  Raises:
    KeyboardInterrupt: an interrupt arrived before (or, swallowed, during) the save.
  """
  check_interrupt()
  run = current()
  run.saving = (pathlib.Path(output), os.path.lexists(output))
  # An interrupt waits for the save to return: cut short inside Orbax, its own threads
  # could still create a temporary beside the output after the cleanup had run.
  run.phase = _SAVING
  try:
    yield
  finally:
    if run.phase == _SAVING:
      run.phase = _WORKING
  run.saving = None
  wrote(output)
  check_interrupt()


def wrote(output: os.PathLike | str) -> None:
  """Records that ``output`` is written and complete."""
  current().written.append(pathlib.Path(output))


def _resumes(workdir: Any) -> str:
  """What a rerun of ``train`` on ``workdir`` starts from: its last checkpoint, if a step
  folder (a number) is in ``WORKDIR/train``, else the beginning."""
  try:
    steps = [p for p in pathlib.Path(workdir, "train").iterdir() if p.name.isdigit()]
  except OSError:
    steps = []
  return ("it resumes from its last complete checkpoint" if steps
          else "it has no checkpoint yet: it starts from the beginning")


def _listed(paths: list[pathlib.Path]) -> str:
  """``A``, ``A and B was/were written and is/are complete``."""
  names = " and ".join(str(p) for p in paths)
  return (f"{names} was written and is complete" if len(paths) == 1
          else f"{names} were written and are complete")


def interrupted_line(run: Run) -> str:
  """The error line of an interrupted run (outputs completed before it are named)."""
  what = "terminated (SIGTERM)" if run.signal == signal.SIGTERM else "interrupted"
  done = run.completed()
  return f"{what}; {_listed(done)}" if done else what


def interrupted_status(run: Run) -> int:
  """130 after Ctrl-C, 143 after SIGTERM (128 + the signal, as a shell reports them)."""
  return 128 + int(run.signal)


def report_lost_line(run: Run, error: ReportNotWritten) -> tuple[int, str | None]:
  """``(exit status, error line or None)`` when the report could not be written to stdout.

  With an output written, the command did its work: status :data:`EXIT_REPORT_LOST`, and
  the line names the output (complete and valid: its history records what was done).
  Without one, nothing was done that lasts: a reader that closed the pipe gets
  :data:`EXIT_PIPE_CLOSED` and no line; any other failure (a full disk) status 2.
  """
  why = error.error.strerror or str(error.error)
  done = run.completed()
  if not done and isinstance(error.error, BrokenPipeError):
    return EXIT_PIPE_CLOSED, None
  if not done:
    return 2, f"cannot write the report to stdout: {why}"
  bundles = [path for path in done if path.is_dir()]  # Not the demo's chart.
  history = "" if not bundles else (
      f" ({'its' if len(bundles) == 1 else 'their'} history records what was done; "
      f"'mnemonic-jax evaluate --checkpoint {bundles[-1]}' reads it)")
  return EXIT_REPORT_LOST, (
      f"the report could not be written to stdout ({why}), but {_listed(done)}{history}")


def environment_line(error: BaseException, command: str, output: pathlib.Path | None,
                     run: Run) -> str | None:
  """The error line when the machine refused a write (a full disk, ...), else None.

  Args:
    error: the exception (an ``OSError``, or tensorstore's ``ValueError``, see
      :func:`mnemonic_jax.environment.os_error`).
    command: the subcommand.
    output: its output (``--output``, ``--workdir``, ``--output-dir``), if any.
    run: the run (outputs already complete are named).

  Returns:
    One line naming the output and the cause, or None if ``error`` is not the machine's.
  """
  from mnemonic_jax import environment  # pylint: disable=import-outside-toplevel

  if not environment.is_environment_error(error):
    return None
  os_error = environment.os_error(error)
  why = os_error.strerror
  if os_error.errno == errno.ENOMEM:  # Reading or computing as much as writing.
    done = run.completed()
    kept = f"; {_listed(done)}" if done else ("; nothing was written" if output else "")
    return (f"out of memory ({why}){kept}: free memory, or raise this process's limit "
            "(ulimit -v), and run the same command again")
  if output is None:
    where = getattr(os_error, "filename", None)
    return f"environment: {where + ': ' if where else ''}{why}"
  # A full disk or quota wants room; a read-only file system, another place.
  if os_error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
    fix = "make room and run the same command again"
  elif os_error.errno in (errno.EMFILE, errno.ENFILE):  # Orbax opens many files at once.
    fix = "raise the open-files limit (ulimit -n) and run the same command again"
  elif os_error.errno == errno.EROFS:
    fix = ("make the workdir writable and run the same command again" if command == "train"
           else "choose an output in a writable place")
  else:  # EIO, ENOMEM: the machine's trouble.
    fix = "check the machine and run the same command again"
  if command == "train":
    return f"cannot write {output}: {why}; the run stopped: {fix} ({_resumes(output)})"
  done = [p for p in run.completed() if p != output]
  kept = f"{_listed(done)}, {output} was not" if done else "nothing was written"
  return f"cannot write {output}: {why}; {kept}: {fix}"


__all__ = ["EXIT_REPORT_LOST", "ReportNotWritten", "ReportStream", "Run", "check_interrupt",
           "current", "environment_line", "escaping_streams", "interrupted_line",
           "interrupted_status", "on_interrupt", "report_lost_line", "running", "saving",
           "show_warning", "terminate_as_interrupt", "warning_text", "wrote"]
