"""What every runner's and benchmark's command line shares: its help and its recorded form.

* :class:`HelpFormatter`: ``--help`` shows each option's default, so that a reader sees
  what a command runs without the options it leaves out (``experiments.table``'s
  ``--multi`` adds the set {0,1,2} and ``--seeds`` three seeds unless told otherwise).
* :func:`command_line`: the command a report records, every argument shell-quoted
  (:func:`shlex.join`), so that pasted back into a shell it runs the same command (an
  empty value written bare, ``--models  --torch-threads 1``, made the next option its
  value).
* :func:`module_name`: a runner's name as the docs write it, ``experiments.table``, the
  ``prog`` of its usage and error lines (argparse's default is the file name, ``table.py``).
* :data:`REUSE_KEYLESS`: the option with which a runner reuses cached run files written
  before runs recorded their key (:class:`experiments.run_cache.RunCache`).

Standard library only: the benchmarks, which import neither JAX nor torch at module level,
use it too.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, Mapping, Sequence

#: Reuse run files written before runs recorded their key (the code that computed them is
#: not recorded): by default such runs are computed again.
REUSE_KEYLESS = "--reuse-keyless"
REUSE_KEYLESS_HELP = (
    "reuse cached run files written before runs recorded their key, as they are: the code "
    "that computed them is not recorded and may not be today's (without this option they "
    "are computed again; the report says how many were reused)")


class HelpFormatter(argparse.HelpFormatter):
  """``--help`` with each option's default, ``(default: X)``, after its help.

  Left out where it says nothing: a flag (``store_true``), a default of ``None`` (the help
  says what happens then), a help that already names its default, a suppressed option.
  An option given no help gets a line with its default alone.
  """

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ""
    if not self._shows_default(action) or "default" in text:
      return text
    return f"{text} (default: {self._default_text(action)})"

  def _format_action(self, action: argparse.Action) -> str:
    if action.help is not None or not self._shows_default(action):
      return super()._format_action(action)
    action.help = f"default: {self._default_text(action)}"  # For this help only.
    try:
      return super()._format_action(action)
    finally:
      action.help = None

  @staticmethod
  def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return bool(action.option_strings) and action.help is not argparse.SUPPRESS and not (
        default is None or default is argparse.SUPPRESS or isinstance(default, bool)
        or default == [])

  @staticmethod
  def _default_text(action: argparse.Action) -> str:
    return "''" if action.default == "" else "%(default)s"


def command_line(module: str, argv: Sequence[str]) -> str:
  """``python -m <module> ARGS``, every argument shell-quoted (:func:`shlex.join`).

  Args:
    module: the runner's module, e.g. ``experiments.table``.
    argv: its arguments, as given.

  Returns:
    One line that a POSIX shell runs as the same command.
  """
  return shlex.join(["python", "-m", module, *argv])


def module_name(module_globals: Mapping[str, Any]) -> str | None:
  """The dotted name of the module whose globals are ``module_globals``, also when it runs
  as ``python -m experiments.<name>`` (``__name__`` is then ``__main__``; its
  ``__spec__`` keeps the name): a runner's ``prog``. ``None`` when neither names it (argparse
  then uses the script's file name).
  """
  spec = module_globals.get("__spec__")
  name = getattr(spec, "name", None) or module_globals.get("__name__")
  return None if name in (None, "__main__") else name
