"""Safe outputs: the checks before a save, the staging directory and the atomic install.

A bundle is first written (by Orbax, itself atomically) to a hidden sibling
``.<name>.saving-<host>-<pid>-<id>`` and then renamed into place; replacing an existing
bundle swaps the new directory with the old one in a single
``renameat2(RENAME_EXCHANGE)`` call on Linux, so at every instant ``<bundle>`` is either
the complete old or the complete new bundle. A save killed half-way only leaves a hidden
``.<name>.saving-*`` directory behind, which the next save of that bundle removes once
its process is gone (:func:`remove_stale_staging`).

:func:`check_output` refuses, before any work, an empty path, an output that exists
(without ``force``), that ``force`` may not replace (anything but an empty directory, a
bundle holding only what a save writes or a dangling symbolic link, and never the current
directory or one holding it; said so with or without ``force``, so that the advice to
pass ``force`` is given only where it would help), that lies inside a folder the project
manages (a bundle, a train workdir's checkpoint folder ``WORKDIR/train``) or whose
directory cannot be written;
given the inputs of the same command, also one that anything an input reads (through
symbolic links too) is, holds or lies inside (:func:`input_overlap`): a save replaces the
output as a whole, and must never delete or change what the command reads.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import re
import shutil
import stat
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence

from mnemonic_jax import _files
from mnemonic_jax.checkpointing._common import (
    CheckpointError, OldBundleLeftWarning, PathLike, _abs, _abs_output, _remove)
from mnemonic_jax.checkpointing.bundle_format import _BUNDLE_ENTRIES, _marked_bundle_meta
from mnemonic_jax.checkpointing.bundle_format import _META as _BUNDLE_META
from mnemonic_jax.checkpointing.train_checkpoints import LOCK_FILE


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
  """Atomically swaps two paths with Linux ``renameat2(RENAME_EXCHANGE)``.

  Returns:
    True if swapped, False where the platform or filesystem does not support it.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
  except (OSError, AttributeError):
    return False
  renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                        ctypes.c_uint]
  renameat2.restype = ctypes.c_int
  if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
    return False
  raise OSError(err, os.strerror(err), os.fspath(a))



def _fsync_dir(path: pathlib.Path) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _install(staging: pathlib.Path, output: pathlib.Path, replace: bool) -> None:
  """Moves a complete ``staging`` directory to ``output``, atomically replacing it."""
  if not replace:
    try:
      os.rename(staging, output)  # Fails if output appeared meanwhile and is not empty.
    except OSError as e:
      raise CheckpointError(
          f"{output} appeared while saving ({e.strerror}); nothing written there; "
          "pass --force (force=True in Python) to replace it") from None
  elif _exchange(staging, output):
    _remove_old(staging, output)  # Now holds the old bundle.
  else:
    # No atomic exchange here: for an instant only the two hidden siblings exist; both
    # are complete bundles and load_bundle's error message points at the old one.
    old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(output, old)
    os.rename(staging, output)
    _remove_old(old, output)
  _fsync_dir(output.parent)


def _remove_old(old: pathlib.Path, output: pathlib.Path) -> None:
  """Removes the replaced bundle, now at ``old``; warns if some of it cannot be removed.

  :func:`check_output` refused beforehand a bundle whose folders may not be changed; what
  still fails (an immutable file, a permission changed meanwhile) leaves part of the old
  bundle behind, which an
  :class:`~mnemonic_jax.checkpointing.OldBundleLeftWarning` names, never in silence.
  """
  if old.is_symlink():  # The output was a link: the link alone is replaced and removed.
    old.unlink()
    return
  failed: list[tuple[str, BaseException]] = []

  def note(function, path, exc_info):  # pylint: disable=unused-argument
    failed.append((path, exc_info[1]))

  shutil.rmtree(old, onerror=note)
  if failed and os.path.lexists(old):
    where, first = failed[0]
    why = _files.reason(first, fix=False) if isinstance(first, OSError) else str(first)
    warnings.warn(OldBundleLeftWarning(
        f"{_files.shown(output)} was replaced, but the old bundle could not be removed "
        f"entirely ({_files.shown(where)}: {why}); what is left of it is "
        f"{_files.shown(old)}: remove it yourself"), stacklevel=2)


# --------------------------------------------------------------------------------------
# Staging directories: where a save is written before it is renamed into place.

_STAGING = re.compile(r"^\.(?P<name>.+)\.saving-(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?"
                      r"[0-9a-f]{8}(?:\.orbax-checkpoint-tmp.*)?$")
#: Staging directories named without a process (older releases) are removed past this age.
_UNOWNED_STAGING_AGE_S = 3600.0
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def _staging_path(output: pathlib.Path) -> pathlib.Path:
  """A hidden sibling naming this machine and process: ``.<name>.saving-<host>-<pid>-<id>``."""
  return output.parent / (f".{output.name}.saving-{_files.HOST_TAG}-{os.getpid()}-"
                          f"{uuid.uuid4().hex[:8]}")


def remove_stale_staging(output: PathLike) -> list[pathlib.Path]:
  """Removes what killed saves of ``output`` left beside it, when that is safe.

  A save writes ``.<name>.saving-<host>-<pid>-<id>`` (and Orbax its own
  ``...orbax-checkpoint-tmp*``) next to ``output`` and renames it into place; a save killed
  half-way leaves them behind. One is removed only if its process is known to be gone: it
  was started on this machine by a process that no longer runs (a live save of another
  process is never touched). Leftovers of older releases, which name no process, are
  removed once they are an hour old.

  Args:
    output: a bundle path (it need not exist).

  Returns:
    The paths removed.
  """
  output = _abs(output)
  removed = []
  try:
    entries = list(output.parent.iterdir())
  except OSError:
    return removed
  for entry in entries:
    match = _STAGING.match(entry.name)
    if not match or match["name"] != output.name:
      continue
    if match["pid"] is None:
      try:
        stale = time.time() - entry.lstat().st_mtime > _UNOWNED_STAGING_AGE_S
      except OSError:
        continue
    else:
      stale = match["host"] == _files.HOST_TAG and not _files.pid_alive(int(match["pid"]))
    if stale:
      _remove(entry)
      removed.append(entry)
  return removed


def _check_writable(output: pathlib.Path) -> None:
  """Refuses an output whose nearest existing ancestor is not a writable directory.

  Probes by creating (and at once removing) a hidden directory there, which also catches
  read-only file systems and pseudo-file systems where permissions say yes (e.g. as root).
  """
  ancestor = output.parent
  while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
    ancestor = ancestor.parent
  if not ancestor.is_dir():
    raise CheckpointError(f"cannot write {output}: {ancestor} is not a directory; choose "
                          "another output")
  try:
    probe = tempfile.mkdtemp(prefix=".mnemonic-jax-probe-", dir=ancestor)
  except OSError as e:
    raise CheckpointError(
        f"cannot write {output}: {ancestor} is not writable ({e.strerror or e}); choose an "
        "output in a writable directory") from None
  os.rmdir(probe)



def _holds_cwd(output: pathlib.Path) -> bool:
  """Whether ``output`` is the current directory or one of its ancestors.

  A symlink at ``output`` is not: replacing it leaves what it points to alone.
  """
  if output.is_symlink():
    return False
  try:
    target, cwd = os.stat(output), pathlib.Path(os.getcwd())
  except OSError:
    return False
  for directory in (cwd, *cwd.parents):
    try:
      st = os.stat(directory)
    except OSError:
      continue
    if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
      return True
  return False


def _why_not_replaceable(path: pathlib.Path) -> str | None:
  """Why ``force`` may not replace ``path``, or None if it may.

  Replaceable: an empty directory, a bundle (any version) holding nothing but what
  :func:`save_bundle` writes, or a dangling symbolic link (replacing a link deletes only
  the link, never what it points to; one that points nowhere points to nothing to lose).
  A bundle with anything else in it (a file, a nested bundle or dataset put there by
  hand) is refused, since replacing it would delete that too.
  """
  if path.is_symlink() and not path.exists():
    return None
  if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
    return None
  if not path.is_dir() or _marked_bundle_meta(path) is None:
    return "is not a mnemonic-jax bundle"
  foreign = sorted(p.name for p in path.iterdir() if p.name not in _BUNDLE_ENTRIES)
  if foreign:
    shown = ", ".join(repr(name) for name in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    return f"is a bundle but also holds {shown}, which replacing it would delete"
  return None


def _why_not_removable(path: pathlib.Path) -> str | None:
  """Why replacing the bundle at ``path`` would leave part of it behind, or None.

  Once replaced, the old bundle is removed: every entry of every folder in it is deleted,
  so each folder must be one this process may list, search and change (``os.access``: a
  read-only folder, a read-only file system or an immutable folder says no). Otherwise the
  replacement would leave a half-deleted copy of the old bundle beside the new one. A
  symbolic link is replaced itself: nothing behind it is removed.

  Returns:
    One line naming the first such folder and the fix, or None.
  """
  if path.is_symlink() or not path.is_dir():
    return None

  def check(folder: str) -> str | None:
    if os.access(folder, os.R_OK | os.W_OK | os.X_OK):
      return None
    try:
      read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
      read_only = False
    if read_only:
      return (f"{_files.shown(path)} exists on a read-only file system ({_files.shown(folder)}"
              "), so it cannot be replaced; choose an output on a writable file system")
    return (f"{_files.shown(path)} exists but its folder {_files.shown(folder)} may not be "
            "changed (permission denied): replacing the bundle would leave the old one "
            f"half-deleted beside the new; make it writable (chmod -R u+w "
            f"{_files.shown(path)}) or choose another output")

  for dirpath, dirnames, _ in os.walk(path):
    found = check(dirpath)
    if found:
      return found
    for name in dirnames:  # os.walk would skip one it may not list.
      full = os.path.join(dirpath, name)
      if stat.S_ISDIR(os.lstat(full).st_mode):
        found = check(full)
        if found:
          return found
  return None


def enclosing_bundle(path: PathLike) -> pathlib.Path | None:
  """The bundle that ``path`` is or lies inside, symbolic links followed, or None.

  What a train workdir or the demo's output folder may not be: a run writes its
  checkpoints, logs and bundle into its workdir, which would change a bundle there (and
  ``--checkpoint`` on the folder would still read the bundle's old model). A directory is
  taken for a bundle when its metadata carries the bundle marker (any format version), or
  when it holds both a bundle's ``arrays/`` and ``meta/`` folders (a damaged bundle is
  still someone's). Only reads.

  Args:
    path: any path (it need not exist).

  Returns:
    The resolved path of the bundle directory, or None.
  """
  resolved = pathlib.Path(os.path.realpath(_abs(path)))
  for candidate in (resolved, *resolved.parents):
    if not os.path.isdir(candidate / _BUNDLE_META):
      continue
    if os.path.isdir(candidate / "arrays"):
      return candidate
    try:
      if _marked_bundle_meta(candidate) is not None:
        return candidate
    except CheckpointError:  # Its metadata is a special file or too large: damaged.
      return candidate
  return None


#: The most entries :func:`input_overlap` looks at under one input before it stops.
MAX_INPUT_ENTRIES = 1_000_000

_Id = tuple[int, int]


def _identity(path: str, follow: bool = True) -> tuple[_Id | None, bool]:
  """``((device, inode), is a folder)`` of ``path``, or ``(None, False)`` if it is not
  there (or cannot be reached)."""
  try:
    st = os.stat(path, follow_symlinks=follow)
  except (OSError, ValueError):
    return None, False
  return (st.st_dev, st.st_ino), stat.S_ISDIR(st.st_mode)


def _written_path(output: pathlib.Path) -> str:
  """Where a save of ``output`` writes, resolved: a symbolic link at ``output`` is
  replaced itself (what it points to is left alone), so its own path, parent resolved."""
  if output.is_symlink():
    return os.path.join(os.path.realpath(output.parent), output.name)
  return os.path.realpath(output)


def _changed_by_save(output: pathlib.Path) -> tuple[str, _Id | None, set[_Id]]:
  """What a save of ``output`` removes, replaces or writes into, resolved.

  Returns:
    ``(real path, its (device, inode) or None, those of its existing ancestors)``: a
    symbolic link at ``output`` has no identity of its own (:func:`_written_path`).
  """
  real = _written_path(output)
  own = None if output.is_symlink() else _identity(real)[0]
  above = set()
  parent = os.path.dirname(real)
  while True:
    found = _identity(parent)[0]
    if found is not None:
      above.add(found)
    if os.path.dirname(parent) == parent:
      return real, own, above
    parent = os.path.dirname(parent)


def _overlaps(real: str, own: _Id | None, changed: tuple[str, _Id | None, set[_Id]]) -> bool:
  """Whether ``real`` (resolved, identity ``own``) is, holds or lies inside ``changed``:
  by path, then by device and inode (one folder reached two ways, a bind mount)."""
  target, target_id, above = changed
  if os.path.commonpath([real, target]) in (real, target):
    return True
  if own is not None and (own == target_id or own in above):
    return True
  if target_id is None:
    return False
  parent = os.path.dirname(real)
  while True:
    if _identity(parent)[0] == target_id:
      return True
    if os.path.dirname(parent) == parent:
      return False
    parent = os.path.dirname(parent)


def input_overlap(output: PathLike, inputs: Sequence[PathLike]) -> tuple[str, str] | None:
  """The first thing an input reads that a save of ``output`` would delete or change.

  A save writes ``output`` as a whole (replacing a bundle there deletes every file of the
  old one) and its hidden staging folder beside it. So a file or folder an input reads
  must not be ``output``, lie inside it or hold it. Each input is compared, then every
  symbolic link found under it (the files and folders it reaches, followed until each
  folder is seen once): a link inside an input may lead into the output even though the
  input itself lies elsewhere. Compared resolved, then by device and inode. Only reads.

  Args:
    output: the bundle to be written.
    inputs: every file or folder the same command reads (a bundle, a params file or
      directory, a dataset folder); missing ones are compared by their path alone.

  Returns:
    ``(input, what in it)``: the input and the path under it (the input itself, or a
    symbolic link in it) that reaches the output; None if none does. At most
    :data:`MAX_INPUT_ENTRIES` entries of each input are looked at.
  """
  changed = _changed_by_save(_abs(output))
  for given in inputs:
    source = _abs(given)
    found = _reaches(os.fspath(source), changed)
    if found is not None:
      return os.fspath(source), found
  return None


def _reaches(root: str, changed: tuple[str, _Id | None, set[_Id]]) -> str | None:
  """``root`` or the first link under it (links followed, each folder walked once) whose
  resolved path overlaps ``changed`` (:func:`_overlaps`), or None."""
  seen: set[_Id] = set()
  left = MAX_INPUT_ENTRIES
  pending = [root]  # The input, then each link found: compared resolved, then walked.
  while pending:
    named = pending.pop()
    real = os.path.realpath(named)
    own, is_folder = _identity(real)
    if _overlaps(real, own, changed):
      return named
    if not is_folder or own in seen:
      continue
    seen.add(own)
    for folder, dirnames, filenames in os.walk(real):  # Links are listed, not followed.
      for name in dirnames + filenames:
        left -= 1
        if left < 0:
          return None
        full = os.path.join(folder, name)
        if os.path.islink(full):
          pending.append(os.path.join(named, os.path.relpath(full, real)))
          continue
        if name in dirnames:  # A mount point inside the input: compared by identity.
          inner = _identity(full, follow=False)[0]
          if inner is not None and (inner == changed[1] or inner in changed[2]):
            return os.path.join(named, os.path.relpath(full, real))
          if inner is not None:
            seen.add(inner)
  return None


#: Where a train workdir keeps its checkpoints (one folder per step): ``WORKDIR/train``.
TRAIN_FOLDER = "train"


def enclosing_train_checkpoints(path: PathLike) -> tuple[pathlib.Path, pathlib.Path] | None:
  """The checkpoint folder of a train workdir that ``path`` is or lies inside, or None.

  A ``train`` run keeps one folder per step in ``WORKDIR/train``; its resume reads every
  folder there as one of its steps (and Orbax deletes old ones), so nothing else may be
  written there. A folder named ``train`` is taken for one when its parent is a workdir:
  it holds the lock file every run takes
  (:data:`~mnemonic_jax.checkpointing.LOCK_FILE`), or the folder holds a step (a folder
  named by a number, with a ``state/`` folder). Symbolic links are followed, but a link
  at ``path`` itself is what a save replaces, so its own place counts. Only reads.

  Args:
    path: any path (it need not exist).

  Returns:
    ``(workdir, its checkpoint folder)``, resolved; or None.
  """
  resolved = pathlib.Path(_written_path(_abs(path)))
  for candidate in (resolved, *resolved.parents):
    if candidate.name == TRAIN_FOLDER and _is_train_workdir(candidate.parent):
      return candidate.parent, candidate
  return None


def _is_train_workdir(folder: pathlib.Path) -> bool:
  """Whether ``folder`` is a train workdir: the run's lock file, or a step in ``train/``."""
  if os.path.lexists(folder / LOCK_FILE):
    return True
  try:
    with os.scandir(folder / TRAIN_FOLDER) as scan:
      return any(entry.name.isascii() and entry.name.isdigit()
                 and os.path.isdir(os.path.join(entry.path, "state")) for entry in scan)
  except OSError:
    return False


def check_output(path: PathLike, *, force: bool = False,
                 inputs: Sequence[PathLike] = ()) -> pathlib.Path:
  """Checks that :func:`save_bundle` may write ``path``, before any work is done.

  Args:
    path: the bundle directory to be written.
    force: whether an existing bundle there may be replaced.
    inputs: every file or folder the same command reads; the output may not be, hold or
      lie inside any of them, nor anything a symbolic link inside one leads to
      (:func:`input_overlap`): the save would delete or change what the command read.

  Returns:
    The absolute path.

  Raises:
    BadRequest: ``path`` is empty (an unset shell variable must not mean the current
      directory).
    CheckpointError: ``path`` lies inside another bundle, or is or lies inside a train
      workdir's checkpoint folder (:func:`enclosing_train_checkpoints`); something an
      input reads is ``path``, holds it or lies inside it; ``path`` is the current
      directory or holds it (an empty ``--output`` reaches here as ``.``); ``path`` exists
      and is not a bundle that may be replaced (see :func:`save_bundle`; said so whether
      or not ``force`` is given); it holds a folder this process may not change (so
      removing the old bundle would fail half-way; said so whether or not ``force`` is
      given); it may be replaced but ``force`` is False; or its nearest existing ancestor
      is not a directory this process can write in. Nothing is
      left behind (the writability probe is a directory created and removed at once).
  """
  output = _abs_output(path)
  exists = output.exists() or output.is_symlink()
  if exists and _holds_cwd(output):
    raise CheckpointError(
        f"{output} is the current directory or holds it; refusing to replace it (an empty "
        "--output, e.g. an unset shell variable, or '.' names the current directory); "
        "choose another output")
  run = enclosing_train_checkpoints(output)
  if run is not None:  # The run's resume would meet it as a step (and may delete it).
    workdir, folder = run
    where = ("is" if os.fspath(folder) == _written_path(output) else
             f"lies inside {folder},")
    raise CheckpointError(
        f"{output} {where} the checkpoint folder of the train workdir {workdir}: its run "
        "reads every folder there as a training step (and deletes old ones), so writing "
        f"there would stop its resume; choose an output outside {folder}")
  around = enclosing_bundle(output.parent)
  if around is not None:  # Writing there would change that bundle.
    raise CheckpointError(
        f"{output} lies inside the bundle {around}; writing there would change that bundle "
        "(and --checkpoint on it would still read its old model); choose an output outside it")
  overlap = input_overlap(output, inputs)
  if overlap is not None:  # Said so with or without force: replacing it would change an input.
    source, via = overlap
    how = "" if via == source else (
        f" through {_files.shown(via)}, which leads to {_files.shown(os.path.realpath(via))}")
    raise CheckpointError(
        f"{output} overlaps the input {_files.shown(source)}{how}: writing the output would "
        "delete or change what this command reads, which is never modified; choose an "
        "output outside every input")
  if not exists:
    _check_writable(output)
    return output
  reason = _why_not_replaceable(output)
  if reason is not None:  # Said so with or without force: --force would not help.
    raise CheckpointError(
        f"{output} exists and {reason}; refusing to replace it, even with --force; "
        "remove it yourself or choose another output")
  unremovable = _why_not_removable(output)
  if unremovable is not None:  # Likewise.
    raise CheckpointError(unremovable)
  if not force:
    if output.is_symlink():
      dangling = "" if output.exists() else (
          ", part of a symbolic link loop" if _loops(output) else ", which does not exist")
      raise CheckpointError(
          f"{output} already exists (a symbolic link to {os.readlink(output)!r}{dangling}); "
          "pass --force (force=True in Python) to replace the link, which leaves what it "
          "points to alone, or choose another output")
    raise CheckpointError(
        f"{output} already exists; pass --force (force=True in Python) to replace it, "
        "or choose another output")
  _check_writable(output)
  return output


def _loops(path: pathlib.Path) -> bool:
  """Whether following ``path``'s symbolic links leads back to themselves."""
  try:
    os.stat(path)
  except OSError as e:
    return e.errno == errno.ELOOP
  return False
