"""The ``mnemonic-jax`` console script: a thin command line over :mod:`mnemonic_jax.workflow`.

Subcommands::

  mnemonic-jax train    --config digits_mlp[:variant]
                        [--config.FIELD=VALUE ...] --workdir DIR
  mnemonic-jax forget   --checkpoint IN --classes 3,7 --output OUT
                        [--lambda1 X] [--lambda2 Y] [--move M] [--dataset NAME] [--force]
  mnemonic-jax evaluate --checkpoint CKPT [--dataset NAME] [--split test] [--json]
  mnemonic-jax import   --params FILE_OR_DIR --codes codes.npy --model mlp
                        --num-classes 10 --input-shape 28,28,1
                        (--mean M --std S | --dataset NAME) --output OUT
  mnemonic-jax attach-codes --checkpoint IN --output OUT [--dataset NAME] [--epochs K]
                        [--t-mix 0.1] [--seed 0] [--force]
  mnemonic-jax demo     [--output-dir DIR] [--class N] [--epochs E] [--force]

The package, by concept: :mod:`~mnemonic_jax.cli.parser` (arguments, their types and
defaults; imports no JAX, so ``--help`` and ``--version`` answer at once),
:mod:`~mnemonic_jax.cli.commands` and :mod:`~mnemonic_jax.cli.demo` (what each command
does, through the library), :mod:`~mnemonic_jax.cli.paths` (an input is never modified,
an output never replaced without ``--force``, every path given UTF-8),
:mod:`~mnemonic_jax.cli.report` (the text printed), :mod:`~mnemonic_jax.cli.quiet` (the
libraries' logging kept off stderr) and
:mod:`~mnemonic_jax.cli.compilation_cache` (JAX's persistent compilation cache, in a
folder only the user can write: ``~/.cache/mnemonic-jax/compilation`` by default, another
with ``--compilation-cache DIR``, none with ``--no-compilation-cache``).

``--checkpoint`` takes a bundle or a ``train`` workdir (its ``bundle``). A user error (an
exception of the project's types, :mod:`mnemonic_jax.errors`, or an ``OSError`` naming a
path) prints one line ``mnemonic-jax: error: ...`` on stderr, exits with status 2 and
writes nothing; so does the machine refusing (a full disk, named with the output; JAX
unable to start the platform ``JAX_PLATFORMS`` asks for: :mod:`mnemonic_jax.environment`).
Ctrl-C, whenever it lands, prints ``mnemonic-jax: error: interrupted`` and exits with 130
(:mod:`~mnemonic_jax.cli.outcome`). A report that cannot be written to stdout after the
output was saved (a full disk, a closed pipe, a stdout closed before the program started)
exits with 3, naming the complete output. Any other exception is a bug and shows as one
(its traceback, exit status 1). Results go to stdout, warnings included (one line
``warning: ...`` each, Python's warnings too; ``evaluate --json`` puts them in its
object), with control characters escaped and every path on one line
(:func:`mnemonic_jax._files.shown`); stderr carries only progress bars (``--quiet`` hides
them) and that one error line, whole on one line (a stderr that cannot be written changes
nothing but the line: the exit status stays 2).

:func:`main` may be called in-process (tests, notebooks): it puts back every piece of
process-wide state it changes. :func:`entry_point` is the program itself.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import pathlib
import signal
import sys
import warnings
from collections.abc import Sequence

from mnemonic_jax import _files, distributed, environment, errors
from mnemonic_jax.cli import compilation_cache, outcome, quiet
from mnemonic_jax.cli.outcome import EXIT_REPORT_LOST
from mnemonic_jax.cli.parser import (
  EXIT_INTERRUPTED,
  EXIT_TERMINATED,
  EXIT_USAGE,
  PROG,
  UsageError,
  build_parser,
  print_error,
  show_progress,
  split_overrides,
)

__all__ = ["EXIT_INTERRUPTED", "EXIT_REPORT_LOST", "EXIT_USAGE", "UsageError", "entry_point",
           "main"]


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the ``mnemonic-jax`` command line, then puts back the process-wide state.

  What a command changes for its run is restored when it returns or raises: the logging
  levels, handlers and filters of existing loggers, the ``warnings`` filters,
  ``sys.unraisablehook``, ``threading.excepthook``, ``sys.stdout``/``sys.stderr`` and
  JAX's persistent compilation cache settings (the cache it opened included). Left as
  they are: modules imported, programs compiled in memory, and a multi-process JAX
  runtime the command started (``--coordinator``; it cannot be restarted in-process).
  Like :class:`warnings.catch_warnings`, which it uses, it is not thread-safe: run one
  command at a time in a process.

  Args:
    argv: the arguments (``sys.argv[1:]`` when None).

  Returns:
    The exit status: 0 on success, 2 on a user error or a refusing machine (reported as
    one line on stderr), 3 when the output was saved but its report could not be written
    to stdout, 130 when interrupted (Ctrl-C).

  Raises:
    SystemExit: ``--help``, ``--version`` (status 0) or an argument the parser refuses
      (status 2, one line on stderr), as argparse does.
    Exception: a bug (anything but a user error) propagates.
  """
  with contextlib.ExitStack() as undo:
    undo.enter_context(quiet.restored_global_state())
    return _run(argv, undo)


#: What :func:`entry_point` keeps until the process ends.
_PROGRAM_STATE: list[contextlib.ExitStack] = []


def entry_point() -> int:
  """The ``mnemonic-jax`` program: runs a command, then takes a quick way out.

  Keeps what the command changed (the process ends), and after a failure drops whatever
  the libraries' background threads would print at shutdown
  (:func:`mnemonic_jax.cli.quiet.silence_the_rest`). After Ctrl-C it exits at once: a
  background checkpoint thread would otherwise wait (Orbax's barrier, up to 300 s) for
  the save the interrupt cut off, and print warnings at shutdown; the workdir lock goes
  with the process, and a resume removes the unfinished save. One process leaves at once
  after any command (its outputs are complete and closed); several processes go through
  the interpreter's shutdown, which JAX's multi-process runtime needs, with every object
  first moved to the collector's permanent generation (:func:`gc.freeze`), skipping about
  0.4 s of garbage collection (an earlier ``experiments/bench_cli.py`` run). Only the
  program does either, never a caller of :func:`main` that keeps running.

  Returns:
    The exit status (see :func:`main`).
  """
  _occupy_closed_standard_streams()
  # Never closed, and kept to the end of the process: what it holds (the run's SIGINT
  # handler and record) must outlive this function.
  _PROGRAM_STATE.append(contextlib.ExitStack())
  status = _run(None, _PROGRAM_STATE[-1])
  if outcome.current().report_lost:  # The interpreter's last flush of stdout would fail.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
  if status != 0:
    quiet.silence_the_rest()
  if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
    _exit_now(status)
  jax = sys.modules.get("jax")
  if jax is None or not jax.distributed.is_initialized():
    # One process: every output is complete and closed, and what the interpreter's
    # shutdown would run (atexit: logging, JAX's backend clean-up) is not needed. Leaving
    # now saves about 50 ms, and a Ctrl-C can no longer land once the shutdown has put
    # the default SIGINT handler back (killing the process with no line, as it did).
    _exit_now(status)
  # Several processes: JAX's shutdown must run. The outcome is decided: a Ctrl-C while
  # the interpreter shuts down ends it at once.
  if signal.getsignal(signal.SIGINT) is outcome.on_interrupt:
    signal.signal(signal.SIGINT, lambda signum, frame: _exit_now(status))
  gc.freeze()
  return status


def _occupy_closed_standard_streams() -> None:
  """Puts ``/dev/null`` on a standard descriptor (0, 1, 2) the program started without.

  Started with ``>&-`` or ``2>&-``, Python leaves ``sys.stdout`` (``sys.stderr``) None and
  the descriptor free: the first file the command opens would get it, and whatever a
  library writes to "stdout" or "stderr" (absl's C++ logging, a native library) would go
  into that file, a bundle's included. ``sys.stdout`` stays None, so the
  report still fails as ``stdout is closed`` (exit status 3 once an output is written).
  A ``sys.stderr`` of None becomes ``/dev/null``: what would go there (the error line,
  progress bars) has nowhere to go, and nothing that writes it may fail for that.
  """
  for fd in (0, 1, 2):
    try:
      os.fstat(fd)
    except OSError:
      null = os.open(os.devnull, os.O_RDWR)
      if null != fd:
        os.dup2(null, fd)
        os.close(null)
  if sys.stderr is None:
    sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # For the process.


def _exit_now(status: int) -> None:
  """Flushes what can be flushed and leaves the process at once with ``status``."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # pylint: disable=broad-except  # Nothing more can be said.
      pass
  os._exit(status)  # pylint: disable=protected-access


def _run(argv: Sequence[str] | None, undo: contextlib.ExitStack) -> int:
  """Parses ``argv`` and runs its command; ``undo`` receives what puts state back.

  The run (:func:`mnemonic_jax.cli.outcome.running`) starts first: a Ctrl-C from here on
  ends the command with one line and status 130, whenever it lands.
  """
  undo.enter_context(outcome.escaping_streams())  # No UnicodeEncodeError on either stream.
  run = undo.enter_context(outcome.running())
  undo.enter_context(outcome.terminate_as_interrupt())  # SIGTERM as Ctrl-C, status 143.
  try:
    return _run_command(argv, undo, run)
  except KeyboardInterrupt:  # One that landed while another error was being reported.
    run.settle()
    print_error(outcome.interrupted_line(run))
    return outcome.interrupted_status(run)
  finally:
    run.settle()


def _run_command(argv: Sequence[str] | None, undo: contextlib.ExitStack,
                 run: outcome.Run) -> int:
  """:func:`_run` once the run has started."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    argv, overrides = split_overrides(argv)
  except errors.MnemonicJaxError as e:  # An override without a value or field.
    print_error(e)
    return EXIT_USAGE
  args = build_parser().parse_args(argv)
  if overrides and args.command != "train":
    print_error(f"--config.{overrides[0][0]} only applies to 'train' "
                f"(see '{PROG} {args.command} --help')")
    return EXIT_USAGE
  args.overrides = overrides
  quiet.quiet_libraries()
  # Warnings as one line of the report each (evaluate --json: in its object).
  run.hold_warnings = bool(getattr(args, "json", False))
  warnings.showwarning = outcome.show_warning
  created: list[pathlib.Path] = []  # Folders made for the compilation cache.
  try:
    # Every path given, read or written, one the storage library can take (UTF-8),
    # before any work (a train run would otherwise train, then fail at its save).
    from mnemonic_jax.cli import paths  # pylint: disable=import-outside-toplevel
    given = paths.given_paths(args)
    paths.check_storable(given)
    cache = compilation_cache.compilation_cache_dir(args.compilation_cache,
                                                    args.no_compilation_cache)
    paths.check_cache_apart(cache, compilation_cache.source(args.compilation_cache), given)
    if args.command == "train" and getattr(args, "coordinator", None) is not None:
      # A config that does not load is refused before waiting for the other processes
      # (which takes up to 5 minutes when they never come).
      from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel
      configs.load_config(args.config, overrides)
    def connecting(launch: distributed.Launch) -> None:
      if launch.coordinator is not None and show_progress(args):
        print(f"{PROG}: connecting to the coordinator {launch.coordinator} as process "
              f"{launch.process_id} of {launch.num_processes} (JAX waits up to 5 minutes "
              "for every process to join)", file=sys.stderr, flush=True)

    try:  # Before anything touches JAX's devices.
      several = distributed.initialize_from_args(args, on_connect=connecting)
    except errors.BadRequest as e:  # A bad --coordinator, --num-processes or --process-id.
      print_error(e)
      return EXIT_USAGE
    if several and not distributed.is_main_process():  # Process 0 prints the report.
      sys.stdout = undo.enter_context(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    sys.stdout = outcome.ReportStream(sys.stdout)  # Printable; a failed write is named.
    undo.callback(compilation_cache.restore_settings, compilation_cache.current_settings())
    named = compilation_cache.source(args.compilation_cache)  # A folder the user named:
    created += compilation_cache.configure_compilation_cache(  # refused if it is unusable.
        cache, None if named == "the default" else named)[1]
    # JAX's strictness switches for the user's own code (JAX_NUMPY_RANK_PROMOTION=raise,
    # JAX_NUMPY_DTYPE_PROMOTION=strict) would stop the tool's programs: they run under
    # JAX's defaults, as they were written and tested.
    import jax  # pylint: disable=import-outside-toplevel  # Imported by the cache already.
    undo.enter_context(jax.numpy_rank_promotion("allow"))
    undo.enter_context(jax.numpy_dtype_promotion("standard"))
    environment.check_backend()  # JAX_PLATFORMS naming a platform this machine lacks.
    from mnemonic_jax.cli import commands  # pylint: disable=import-outside-toplevel

    run.begin_work()  # Ctrl-C raises from here; one that came while starting, now.
    status = commands.COMMANDS[args.command](args) or 0
    sys.stdout.flush()  # The whole report is out, or ReportNotWritten.
    outcome.check_interrupt()  # One that a library swallowed: never a silent exit 0.
    return status
  except KeyboardInterrupt:
    run.settle()
    print_error(outcome.interrupted_line(run))
    return outcome.interrupted_status(run)
  except outcome.ReportNotWritten as e:
    run.settle()
    run.report_lost = True
    status, line = outcome.report_lost_line(run, e)
    if line is not None:
      print_error(line)
    return status
  except Exception as e:  # pylint: disable=broad-except  # Bugs are raised again below.
    run.settle()
    if run.interrupted:  # The interrupt surfaced as another error (an import cut short).
      print_error(outcome.interrupted_line(run))
      return outcome.interrupted_status(run)
    line = outcome.environment_line(e, args.command, _output_of(args), run)
    if line is None and not _is_user_error(e):
      raise  # A bug: its traceback, exit status 1.
    print_error(line or _describe(_with_cli_fix(e, args)))
    return EXIT_USAGE
  finally:  # A cache folder made for a command that compiled nothing (refused) goes again.
    compilation_cache.remove_if_empty(created)


def _output_of(args: argparse.Namespace) -> pathlib.Path | None:
  """What the command writes (``--output``, ``--workdir``, ``--output-dir``), if anything."""
  for name in ("output", "workdir", "output_dir"):
    value = getattr(args, name, None)
    if value is not None:
      return pathlib.Path(value).absolute()
  return None


def _is_user_error(error: BaseException) -> bool:
  """Whether the command line reports ``error`` as one line and exit status 2.

  The project's own errors (:class:`mnemonic_jax.errors.MnemonicJaxError`) are; so is an
  ``OSError`` naming a path (a missing file, a permission denied, a full disk): the
  user's environment, not a bug. Anything else is a bug and keeps its traceback.
  """
  if isinstance(error, errors.MnemonicJaxError):
    return True
  return isinstance(error, OSError) and error.filename is not None


def _with_cli_fix(error: BaseException, args: argparse.Namespace) -> BaseException:
  """A tfds dataset that is not prepared, its fix named in this command's own options."""
  not_prepared = getattr(sys.modules.get("mnemonic_jax.data.sources"), "DatasetNotPrepared",
                         None)
  if not_prepared is None or not isinstance(error, not_prepared):
    return error
  if args.command == "train":
    return error.with_fix(
        "set --config.download=True to let tfds download it (needs internet and "
        "TensorFlow), or --config.data_dir=DIR to read a prepared copy")
  return error.with_fix("pass --download to let tfds download it (needs internet and "
                        "TensorFlow), or --data-dir DIR to read a prepared copy")


def _describe(error: BaseException) -> str:
  """The error line's text for an exception: an ``OSError`` its path and its reason in
  words (:func:`mnemonic_jax._files.reason`: a permission denied or a symbolic link loop
  with its fix), others their message (:func:`~mnemonic_jax.cli.parser.print_error` makes
  it one line)."""
  if isinstance(error, OSError) and error.filename is not None and error.strerror:
    return f"{_files.shown(error.filename)}: {_files.reason(error)}"
  return str(error).strip() or type(error).__name__
