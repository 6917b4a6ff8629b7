"""``python -m cli_under [SETUP ...] -- ARGS``: the real ``mnemonic-jax ARGS`` program, run
after changing what the process starts with, for the command-line tests.

Run as a case of :func:`cli_support.run_commands` (``"module": "cli_under"``, run from
this folder, ``"cwd"``, so that it is found first on ``sys.path``): the command is
``mnemonic_jax.cli``'s own ``__main__``, run by ``runpy`` as ``python -m`` runs it, once
the setup is done. SETUP, in order:

* ``--close-stdout`` / ``--close-stderr``: the descriptor closed and ``sys.stdout`` /
  ``sys.stderr`` None, as Python starts under ``>&-`` / ``2>&-``.
* ``--stderr-to PATH``: stderr written to PATH (``/dev/full``: every write fails).
* ``--without-file-override``: the process meets file modes as any user does: root's
  capabilities that bypass them (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``,
  ``CAP_FOWNER``) are dropped from this process (effective, permitted, inheritable), so a
  ``chmod 000`` file may not be read and a read-only folder not changed, as for the user
  who met the fault. It stays uid 0, so the interpreter and packages still load.
* ``--check-denied PATH``: instead of a command, exits 0 if opening PATH for reading is
  refused with ``EACCES``, else 77 (the test then skips: file modes are not met here).
"""

import ctypes
import errno
import os
import runpy
import sys

#: ``_LINUX_CAPABILITY_VERSION_3`` and the capabilities that bypass file modes.
_CAP_VERSION_3 = 0x20080522
_FILE_OVERRIDES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


class _Header(ctypes.Structure):
  _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
  _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
              ("inheritable", ctypes.c_uint32)]


def drop_file_overrides() -> bool:
  """Drops :data:`_FILE_OVERRIDES` from this thread's capabilities (the only thread of a
  freshly forked process; threads started later inherit it). Returns whether it could."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(_CAP_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
      return False
    mask = 0xFFFFFFFF & ~sum(1 << cap for cap in _FILE_OVERRIDES)
    for field in ("effective", "permitted", "inheritable"):
      setattr(data[0], field, getattr(data[0], field) & mask)
    return libc.capset(ctypes.byref(header), data) == 0
  except (OSError, AttributeError):
    return False


def main() -> None:
  args = sys.argv[1:]
  while args and args[0] != "--":
    option = args.pop(0)
    if option == "--close-stdout":
      sys.stdout.flush()
      os.close(1)
      sys.stdout = sys.__stdout__ = None
    elif option == "--close-stderr":
      sys.stderr.flush()
      os.close(2)
      sys.stderr = sys.__stderr__ = None
    elif option == "--stderr-to":
      target = os.open(args.pop(0), os.O_WRONLY)
      os.dup2(target, 2)
      os.close(target)
    elif option == "--without-file-override":
      if not drop_file_overrides():
        sys.exit(77)
    elif option == "--check-denied":
      try:
        os.close(os.open(args.pop(0), os.O_RDONLY))
      except PermissionError as e:
        sys.exit(0 if e.errno == errno.EACCES else 77)
      sys.exit(77)
    else:
      raise SystemExit(f"cli_under: unknown option {option}")
  sys.argv = ["mnemonic-jax", *args[1:]]
  runpy.run_module("mnemonic_jax.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
