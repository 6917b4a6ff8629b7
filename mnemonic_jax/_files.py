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
:mod:`mnemonic_jax.errors`) and the fix that ends its one-line message. An operating
system refusal that is not about the file's contents (a permission denied, a symbolic link
loop) is named for what it is, with its own fix, never the caller's "re-create it"
(:func:`os_error_line`).

Also here, at the bottom of the package, how every message and report names a path:
:func:`shown` (control characters, newlines included, escaped by :func:`escape`, so that
a path is always one line; a byte that is not UTF-8 as ``\\xNN``), and which paths the
storage library cannot take at all (:func:`unstorable`: not UTF-8).
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import sys
from typing import BinaryIO, Callable

PathLike = str | os.PathLike
ErrorType = Callable[[str], Exception]

#: Operating-system refusals that are about access, not about the file's contents: their
#: words and the fix, which replaces the caller's (a bundle that cannot be read for lack
#: of permission is not corrupt; re-creating it would lose it for nothing).
_ACCESS = {
    errno.EACCES: ("permission denied", "check its permissions (ls -l) and those of the "
                   "folders above it, or run as a user who may read it"),
    errno.EPERM: ("operation not permitted", "check its permissions and attributes "
                  "(ls -l, lsattr), or run as a user who may read it"),
    errno.ELOOP: ("a symbolic link loop (the links lead back to themselves)",
                  "fix or remove the symbolic link"),
}


def escape(text: object, keep: str = "") -> str:
  """``text`` safe for a terminal: every character that is not printable is escaped.

  Control characters (escape sequences, bells, carriage returns, newlines), C1 controls,
  bidirectional overrides and other invisible or non-printing characters
  (``str.isprintable`` false) are written as Python escapes (``\\x1b``, ``\\n``,
  ``\\u202e``); letters of any script are kept. Escaping twice changes nothing more.

  Args:
    text: anything; ``str(text)`` is escaped.
    keep: characters left as they are (``"\\n"`` for whole lines of a report).

  Returns:
    The text, printable but for the characters of ``keep``.

  Example:
    >>> escape("no\\nsuch")
    'no\\\\nsuch'
  """
  text = str(text)
  if text.isprintable():
    return text
  return "".join(ch if ch.isprintable() or ch in keep else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
  """One character as a Python escape; a byte that ``os.fsdecode`` could not decode (a
  surrogate U+DC80-U+DCFF) as that byte (``\\xe9``), the name on disk as a shell's
  ``$'...'`` writes it."""
  if "\udc80" <= ch <= "\udcff":
    return f"\\x{ord(ch) - 0xdc00:02x}"
  return ch.encode("unicode_escape").decode("ascii")


def shown(path: PathLike | bytes) -> str:
  """A path as every message and report names it: one line, nothing hidden.

  Its control characters, newlines included, are escaped (:func:`escape`): a newline in a
  path would otherwise cut an error line in two (the reason lost) and a report's line.

  Args:
    path: a ``str``, ``bytes`` or ``os.PathLike`` path.

  Returns:
    The printable text.
  """
  return escape(os.fsdecode(path))


def unstorable(path: PathLike | bytes) -> str | None:
  """Why the storage library cannot take ``path``, in words, or None when it can.

  TensorStore (which Orbax writes and reads every array with) takes a path as UTF-8
  text; a path holding bytes that are not UTF-8 (a Latin-1 file name such as
  ``caf\\xe9``), which Python carries as surrogate escapes (:func:`os.fsdecode`), cannot
  be handed to it (pybind11 refuses the cast). So is a UTF-8 name that Python read with
  a file-system encoding that is not UTF-8 (a C locale without UTF-8 mode): the same
  escapes.

  Args:
    path: a ``str``, ``bytes`` or ``os.PathLike`` path.

  Returns:
    None if the path's text is UTF-8; else the reason and its fix, to follow the path
    in a message.
  """
  text = os.fsdecode(path)
  try:
    text.encode("utf-8")
    utf8 = True
  except UnicodeEncodeError:
    utf8 = False
  try:
    raw = os.fsencode(text)  # A str given in-process may not fit the file-system encoding.
  except UnicodeEncodeError:
    raw = None
  if utf8 and raw is not None:
    return None
  utf8_names = sys.getfilesystemencoding().lower().replace("-", "").replace("_", "") == "utf8"
  if utf8_names or not (utf8 if raw is None else _decodes_as_utf8(raw)):
    return ("its name (or a folder's above it) is not valid UTF-8, and mnemonic-jax takes "
            "only UTF-8 paths (its storage library, TensorStore, cannot open others); rename "
            "it (or that folder) to a UTF-8 name")
  return (f"its name is UTF-8 but Python reads file names as {sys.getfilesystemencoding()} "
          "here (the locale), and mnemonic-jax takes only UTF-8 paths (its storage library, "
          "TensorStore, cannot open others); run with a UTF-8 locale (LC_ALL=C.UTF-8) or "
          "PYTHONUTF8=1")


def _decodes_as_utf8(raw: bytes) -> bool:
  try:
    raw.decode("utf-8")
    return True
  except UnicodeDecodeError:
    return False


def os_error_line(verb: str, path: PathLike, error: OSError, fix: str) -> str:
  """``cannot VERB PATH ...; FIX``: one line for an operating-system refusal.

  A refusal about access (:data:`_ACCESS`: permission denied, operation not permitted, a
  symbolic link loop) is named in words with its own fix, in place of ``fix`` (which
  speaks of the file's contents); any other keeps its reason and ``fix``.

  Args:
    verb: what failed (``"open"``, ``"read"``).
    path: the path, escaped here (:func:`shown`).
    error: the ``OSError``.
    fix: the caller's fix, for refusals not about access.

  Returns:
    The message.
  """
  words = _ACCESS.get(error.errno)
  if words is not None:
    return f"cannot {verb} {shown(path)}: {words[0]}; {words[1]}"
  return f"cannot {verb} {shown(path)} ({error.strerror or error}); {fix}"


def reason(error: OSError, fix: bool = True) -> str:
  """An ``OSError``'s reason in words: a refusal about access with its fix (``permission
  denied; check its permissions ...``; without it if ``fix`` is False), any other as the
  system says it."""
  words = _ACCESS.get(error.errno)
  if words is None:
    return str(error.strerror or error)
  return f"{words[0]}; {words[1]}" if fix else words[0]


def is_access_error(error: BaseException) -> bool:
  """Whether ``error`` is an ``OSError`` about access (permission, a link loop)."""
  return isinstance(error, OSError) and error.errno in _ACCESS


def missing_line(path: PathLike, fix: str) -> str:
  """One line for a path that ``os.stat`` cannot reach, named for what it is.

  ``PATH does not exist; FIX`` when nothing is there; ``PATH is a symbolic link to
  'TARGET', which does not exist; FIX`` for a dangling link; ``PATH: a symbolic link
  loop ...`` or ``PATH: permission denied ...`` with their own fix (:func:`reason`: a
  folder on the way that may not be searched), and a part of the path that is not a
  folder, in words.

  Args:
    path: the path.
    fix: what the user should do about a missing path.

  Returns:
    The message (``os.stat`` succeeding gives ``PATH exists``: the caller asks only
    after it failed).
  """
  try:
    os.stat(path)
  except OSError as e:
    if e.errno in _ACCESS:
      return f"{shown(path)}: {reason(e)}"
    if e.errno == errno.ENOTDIR:
      return f"{shown(path)}: a part of the path is not a folder; {fix}"
    if os.path.islink(path):
      try:
        target = os.readlink(path)
      except OSError:
        target = "?"
      return (f"{shown(path)} is a symbolic link to '{shown(target)}', which does not "
              f"exist; {fix}")
    return f"{shown(path)} does not exist; {fix}"
  return f"{shown(path)} exists"


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
    raise error(f"{escape(shown)} is not a regular file (it is {_kind(st.st_mode)}); {fix}")
  if st.st_size > max_bytes:
    raise error(f"{escape(shown)} holds {st.st_size} bytes, more than the {max_bytes} {what} may "
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
  name = os.fspath(path) if shown is None else shown
  try:
    fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
  except OSError as e:
    raise error(os_error_line("open", name, e, fix)) from None
  try:
    check_stat(os.fstat(fd), name, max_bytes=max_bytes, error=error, fix=fix, what=what)
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
  name = os.fspath(path) if shown is None else shown
  with open_regular(path, max_bytes=max_bytes, error=error, fix=fix, dir_fd=dir_fd,
                    shown=name, what=what) as f:
    try:
      data = f.read(max_bytes + 1)
    except OSError as e:
      raise error(os_error_line("read", name, e, fix)) from None
  if len(data) > max_bytes:
    raise error(f"{escape(name)} holds more than the {max_bytes} bytes {what} may have; {fix}")
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
    error: a file is not regular, a link points at a directory, a folder cannot be
      listed or a file reached (named as :func:`os_error_line` does), or the files are
      too many or too large together.
  """
  root = os.fspath(root)
  total, count = 0, 0

  def listable(folder: str) -> None:  # os.walk skips, silently, a folder it may not list.
    if not os.access(folder, os.R_OK | os.X_OK):
      denied = OSError(errno.EACCES, os.strerror(errno.EACCES), folder)
      raise error(os_error_line("read", folder, denied, fix))

  if os.path.isdir(root):
    listable(root)
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames:
      full = os.path.join(dirpath, name)
      if os.path.islink(full):
        raise error(f"{shown(full)} is a symbolic link to a directory; {fix}")
      listable(full)
    for name in filenames:
      full = os.path.join(dirpath, name)
      try:
        st = os.stat(full)
      except FileNotFoundError:
        if not os.path.lexists(full):
          continue  # Removed since it was listed (e.g. Orbax dropping an old step): unread.
        raise error(f"{shown(full)} is a symbolic link to nothing; {fix}") from None
      except OSError as e:
        raise error(os_error_line("read", full, e, fix)) from None
      check_stat(st, full, max_bytes=max_bytes, error=error, fix=fix)
      total, count = total + st.st_size, count + 1
      if count > max_files:
        raise error(f"{shown(root)} holds more than the {max_files} files it may have "
                    f"here; {fix}")
      if total > max_bytes:
        raise error(f"{shown(root)} holds more than the {max_bytes} bytes it may have here "
                    f"(its files together); {fix}")


#: This machine, in the names of hidden staging folders (a save's, a report's): only this
#: machine's processes' leftovers are ever removed.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
  """Whether process ``pid`` of this machine exists (one we may not signal counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError):
    return True
  return True
