"""Keeping the libraries' logging and warnings off the command's stderr, and undoing it.

stderr belongs to the command line: progress bars and, on failure, one error line. The
libraries it drives log and warn on their own (Orbax logs dozens of absl INFO lines per
save, tfds warns before failing, a failed tensorstore read reports stray callbacks through
``sys.unraisablehook``). :func:`quiet_libraries` drops those; the library itself changes
none of this. Everything here changes process-wide state, so :func:`restored_global_state`
records that state and puts it back: :func:`mnemonic_jax.cli.main` runs inside it, and only
the program (:func:`mnemonic_jax.cli.entry_point`, which exits) keeps the changes, and then
adds :func:`silence_the_rest` after a failure.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from mnemonic_jax import errors

#: Libraries whose absl records the command drops (Orbax logs dozens of INFO lines per
#: save; tfds warns "Variant folder ... has no ..." before failing with an error).
QUIET_LIBRARIES = ("orbax", "tensorstore", "tensorflow_datasets")
#: The loggers :func:`quiet_libraries` and :func:`silence_the_rest` add filters to.
_LOGGERS = ("absl",)
#: Modules whose Python warnings the command drops (JAX's compilation-cache misses too).
_QUIET_WARNINGS = (r"orbax(\..*)?$", r"tensorstore(\..*)?$",
                   r"jax\._src\.(compiler|compilation_cache|lru_cache)$")


def quiet_libraries() -> None:
  """Keeps Orbax's, tensorstore's and tfds' logging and warnings off stderr.

  Drops their absl records (at any level), Python warnings from their modules and the
  stray tensorstore callbacks of a failed read. Their failures still reach the user as
  exceptions, which become the command's one error line. Changes the ``absl`` logger's
  filters, the ``warnings`` filters and ``sys.unraisablehook`` (see
  :func:`restored_global_state`).
  """
  try:  # absl's own logger class first: its records name the library that logs.
    importlib.import_module("absl.logging")
  except ImportError:
    pass
  logging.getLogger("absl").addFilter(_drop_library_records)
  for module in _QUIET_WARNINGS:
    warnings.filterwarnings("ignore", module=module)
  # The report says it in its own words ("its rule: not met on the codes").
  warnings.filterwarnings("ignore", category=errors.RuleNotMetWarning)
  _drop_stray_tensorstore_callbacks()


def _drop_library_records(record: logging.LogRecord) -> bool:
  """False for absl records emitted from the sources of :data:`QUIET_LIBRARIES`."""
  path = record.pathname or ""
  return not any(f"{os.sep}{lib}{os.sep}" in path for lib in QUIET_LIBRARIES)


def _drop_stray_tensorstore_callbacks() -> None:
  """Hides the 'Event loop is closed' tracebacks a failed Orbax read prints later.

  When a tensorstore read fails (a truncated or deleted array file), Orbax's restore
  raises and closes its event loop while the other reads are still completing; their
  callbacks then report ``RuntimeError: Event loop is closed`` through
  ``sys.unraisablehook``, before or after the one error line. This chains a filter in
  front of the current hook that drops exactly those reports; everything else goes
  through to the previous hook.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    error = unraisable.exc_value
    tb, frames = unraisable.exc_traceback, []
    while tb is not None:
      frames.append(tb.tb_frame.f_code.co_name)
      tb = tb.tb_next
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
            and "call_soon_threadsafe" in frames):
      previous(unraisable)

  sys.unraisablehook = hook


def silence_the_rest() -> None:
  """After the one error line, nothing else reaches stderr (for a program about to exit).

  An interrupted or refused command may leave Orbax's background threads (an asynchronous
  save being finalised, tensorstore callbacks) to fail while the interpreter shuts down;
  their tracebacks ("Exception in thread", "Exception ignored in") would follow the error
  line. The command has already failed and said why, so they are dropped: every thread
  exception, unraisable exception and absl record from now on.
  """
  try:
    sys.stderr.flush()
  except (AttributeError, OSError, ValueError):  # None, or a stderr that cannot be written.
    pass
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda unraisable: None
  logging.getLogger("absl").addFilter(lambda record: False)


def _logger_state(logger: logging.Logger) -> tuple[Any, ...]:
  return (logger.level, list(logger.filters), list(logger.handlers), logger.propagate,
          logger.disabled)


def global_state() -> dict[str, Any]:
  """The process-wide state a command may change, as comparable values.

  Every existing logger's level, filters, handlers, ``propagate`` and ``disabled`` (the
  root logger and those of :data:`_LOGGERS` included, created if need be), the logging
  module's ``disable`` level and logger class, the ``warnings`` filters and
  ``showwarning``, ``sys.unraisablehook``, ``sys.excepthook``, ``threading.excepthook``,
  ``sys.stdout`` and ``sys.stderr``.

  Returns:
    A dict of plain values and references (``==`` compares two moments).
  """
  for name in _LOGGERS:
    logging.getLogger(name)
  manager = logging.Logger.manager
  loggers = {name: _logger_state(logger) for name, logger in list(manager.loggerDict.items())
             if isinstance(logger, logging.Logger)}
  loggers[""] = _logger_state(logging.getLogger())
  return {"loggers": loggers, "logging.disable": manager.disable,
          "logger class": logging.getLoggerClass(),
          "warnings.filters": list(warnings.filters), "showwarning": warnings.showwarning,
          "sys.unraisablehook": sys.unraisablehook, "sys.excepthook": sys.excepthook,
          "threading.excepthook": threading.excepthook, "sys.stdout": sys.stdout,
          "sys.stderr": sys.stderr}


def _restore_logger(logger: logging.Logger, state: tuple[Any, ...]) -> None:
  level, filters, handlers, propagate, disabled = state
  logger.setLevel(level)
  logger.filters[:] = filters
  logger.handlers[:] = handlers
  logger.propagate, logger.disabled = propagate, disabled


@contextlib.contextmanager
def restored_global_state() -> Iterator[None]:
  """Puts back, on leaving, the process-wide state :func:`global_state` describes.

  Loggers created inside (by libraries imported there) are left as their libraries set
  them up, except for what this module adds to :data:`_LOGGERS`, which exist before.

  Yields:
    None.
  """
  saved = global_state()
  with warnings.catch_warnings():
    try:
      yield
    finally:
      for name, state in saved["loggers"].items():
        logger = logging.getLogger(name or None)
        if _logger_state(logger) != state:
          _restore_logger(logger, state)
      if logging.Logger.manager.disable != saved["logging.disable"]:
        logging.disable(saved["logging.disable"])
      if logging.getLoggerClass() is not saved["logger class"]:
        logging.setLoggerClass(saved["logger class"])
      sys.unraisablehook, sys.excepthook = saved["sys.unraisablehook"], saved["sys.excepthook"]
      threading.excepthook = saved["threading.excepthook"]
      sys.stdout, sys.stderr = saved["sys.stdout"], saved["sys.stderr"]
