"""Opening the files a user names: regular files only, never blocking, reads capped.

Every file mnemonic-jax reads from a path it was given (bundle metadata and array files,
imported parameters and codes, idx datasets, training checkpoints) goes through this
module, so that a path naming something else is refused with one line instead of hanging
or eating memory:

* :func:`open_regular` opens with ``O_NONBLOCK`` (opening a FIFO does not wait for a
  writer), then checks with ``fstat`` on the open descriptor that it is a regular file
  (a symlink to ``/dev/zero``, a FIFO, a socket, a directory or a device is refused; a
  symlink to a regular file is followed) of at most ``max_bytes``.
* :func:`read_regular` reads such a file whole, never more than ``max_bytes``.
* :func:`check_tree` checks every file under a directory that another library (Orbax,
  tensorstore) will read by path: regular, within a total size and a file count.

The caller chooses the exception type (the project's user errors,
:mod:`mnemonic_jax.errors`) and the fix that ends its one-line message.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Callable

PathLike = str | os.PathLike
ErrorType = Callable[[str], Exception]

_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))


def _kind(mode: int) -> str:
  """What a file of ``mode`` is, in words (for the messages)."""
  for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                     (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISSOCK, "a socket")):
    if test(mode):
      return name
  return "not a plain file"


def check_stat(st: os.stat_result, shown: str, *, max_bytes: int, error: ErrorType,
               fix: str, what: str = "a file here") -> None:
  """Refuses what is not a regular file of at most ``max_bytes``.

  Args:
    st: the file's status (``fstat`` of an open descriptor, or ``stat`` following links).
    shown: the path, as messages name it.
    max_bytes: the largest size accepted.
    error: the exception type raised, given the one-line message.
    fix: what the user should do, ending the message.
    what: what may hold ``max_bytes`` at most, in the message.

  Raises:
    error: the file is not regular, or larger than ``max_bytes``.
  """
  if not stat.S_ISREG(st.st_mode):
    raise error(f"{shown} is not a regular file (it is {_kind(st.st_mode)}); {fix}")
  if st.st_size > max_bytes:
    raise error(f"{shown} holds {st.st_size} bytes, more than the {max_bytes} {what} may "
                f"have; {fix}")


def open_regular(path: PathLike, *, max_bytes: int, error: ErrorType, fix: str,
                 dir_fd: int | None = None, shown: str | None = None,
                 what: str = "a file here") -> BinaryIO:
  """Opens a regular file for reading, without blocking, checked after opening.

  Args:
    path: the file (relative to ``dir_fd`` if given).
    max_bytes: the largest size accepted.
    error: the exception type raised, given the one-line message.
    fix: what the user should do, ending the message.
    dir_fd: a directory descriptor ``path`` is relative to (reads from one opened
      directory even if its path is meanwhile replaced).
    shown: the path as messages name it (default ``path``).
    what: what may hold ``max_bytes`` at most, in the message.

  Returns:
    The file, opened in binary mode (blocking reads restored: a regular file never
    blocks); the caller closes it.

  Raises:
    error: the file cannot be opened, is not a regular file or is larger than
      ``max_bytes``.
  """
  shown = os.fspath(path) if shown is None else shown
  try:
    fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
  except OSError as e:
    raise error(f"cannot open {shown} ({e.strerror or e}); {fix}") from None
  try:
    check_stat(os.fstat(fd), shown, max_bytes=max_bytes, error=error, fix=fix, what=what)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
  except BaseException:
    os.close(fd)
    raise


def read_regular(path: PathLike, *, max_bytes: int, error: ErrorType, fix: str,
                 dir_fd: int | None = None, shown: str | None = None,
                 what: str = "a file here") -> bytes:
  """The bytes of a regular file, read whole but never more than ``max_bytes``.

  Args: as :func:`open_regular`.

  Returns:
    The file's contents.

  Raises:
    error: as :func:`open_regular`, or the file grew past ``max_bytes`` while read, or
      reading failed.
  """
  shown = os.fspath(path) if shown is None else shown
  with open_regular(path, max_bytes=max_bytes, error=error, fix=fix, dir_fd=dir_fd,
                    shown=shown, what=what) as f:
    try:
      data = f.read(max_bytes + 1)
    except OSError as e:
      raise error(f"cannot read {shown} ({e.strerror or e}); {fix}") from None
  if len(data) > max_bytes:
    raise error(f"{shown} holds more than the {max_bytes} bytes {what} may have; {fix}")
  return data


def check_tree(root: PathLike, *, max_bytes: int, max_files: int, error: ErrorType,
               fix: str) -> None:
  """Checks every file under a directory that another library will read by path.

  Links are followed for files (a link to a regular file is fine) but a link to a
  directory or to nothing is refused (what lies behind it would not be checked). A file
  removed between the listing and its check (another thread or process cleaning up) is
  skipped: no one will read it.

  Args:
    root: the directory.
    max_bytes: the most bytes all its files may hold together (and each one).
    max_files: the most files it may hold.
    error: the exception type raised, given the one-line message.
    fix: what the user should do, ending the message.

  Raises:
    error: a file is not regular, a link points at a directory, or the files are too
      many or too large together.
  """
  root = os.fspath(root)
  total, count = 0, 0
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames:
      full = os.path.join(dirpath, name)
      if os.path.islink(full):
        raise error(f"{full} is a symbolic link to a directory; {fix}")
    for name in filenames:
      full = os.path.join(dirpath, name)
      try:
        st = os.stat(full)
      except FileNotFoundError:
        if not os.path.lexists(full):
          continue  # Removed since it was listed (e.g. Orbax dropping an old step): unread.
        raise error(f"{full} is a symbolic link to nothing; {fix}") from None
      except OSError as e:
        raise error(f"cannot read {full} ({e.strerror or e}); {fix}") from None
      check_stat(st, full, max_bytes=max_bytes, error=error, fix=fix)
      total, count = total + st.st_size, count + 1
      if count > max_files:
        raise error(f"{root} holds more than the {max_files} files it may have here; {fix}")
      if total > max_bytes:
        raise error(f"{root} holds more than the {max_bytes} bytes it may have here (its "
                    f"files together); {fix}")
