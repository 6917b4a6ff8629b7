"""A bundle's checksums: what they cover, how they are verified, what they do not protect.

Coverage (format version 3, :data:`~mnemonic_jax.checkpointing.BUNDLE_VERSION`): every
file a save writes, recorded in the metadata by :func:`seal` when the bundle is saved:

* ``array_sha256``: the SHA-256 of every file under ``arrays/``.
* ``bookkeeping_sha256``: the SHA-256 of Orbax's bookkeeping files, every other file the
  save wrote but the metadata (``_CHECKPOINT_METADATA``, ``commit_success.txt``,
  ``meta/commit_success.txt``). Loading does not need them, but a damaged one means a
  damaged copy of the bundle, and Orbax logs errors on reading one.
* ``meta_sha256``: the SHA-256 of the metadata itself, over its canonical JSON form
  without this one field (:func:`meta_checksum`: keys sorted, no spaces, ASCII). It covers
  every other field, ``array_sha256`` included, so a metadata edit of any kind (a history
  entry added by hand, a class name changed, the array checksums deleted) is refused.

Every file is checked: one that is missing, changed (truncated, altered) or extra in
``arrays/`` or ``meta/`` is refused. What is added by hand at the top of a bundle directory
(a README, a folder) is not part of the bundle: loading ignores it, and replacing the
bundle with ``force`` refuses to, since that would delete it
(:func:`~mnemonic_jax.checkpointing.check_output`).

A bundle of the current format whose record lacks any of the checksums is refused. Only a
bundle that declares an older format version
(:data:`~mnemonic_jax.checkpointing.bundle_format.OLDER_BUNDLE_VERSIONS`, written before
this coverage existed) loads with whatever it can verify, and an
:class:`~mnemonic_jax.checkpointing.UnverifiedBundleWarning` names what it could not.

What the checksums protect against: accidental damage. A flipped bit, a truncated,
missing, extra or swapped file, files of two bundles mixed, a metadata file changed by
hand or by a careless tool. What they do NOT protect against: deliberate tampering. The
checksums live inside the bundle, so anyone who can write its files can recompute them;
they are not signatures and involve no key. Load bundles only from sources you trust, and
keep a record of a bundle's provenance outside it if that matters.

The same functions record and verify a training checkpoint's steps
(:mod:`~mnemonic_jax.checkpointing.train_records`): a :class:`Coverage` says which folders
a record covers and how messages name its files and the fix.

Reading files: every file is opened relative to one descriptor of the bundle directory
(:func:`open_dir`), checked to be a regular file after opening and read within a size cap
(:mod:`mnemonic_jax._files`); the files Orbax reads by path are checked first
(:func:`verify_arrays`, :func:`verify_bookkeeping`).

Symbolic links: a save writes none, and every entry of a bundle or of a training step is
listed by one function, :func:`entries`, which refuses a link anywhere (``meta/``,
``arrays/``, Orbax's bookkeeping files, any file or folder below) rather than follow it.
Resolving a link and accepting it where it stays inside the directory was the other
choice; refusing is the safer one: a link that leaves the directory makes another
directory's files part of this one (replacing that other bundle, even with ``--force``,
would silently change this one), and one that stays inside gives one file two names
(one checksum would vouch for both) and can be re-pointed between the check and Orbax's
read by path. Only the path given to the loader (and its parents) may be a link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import stat
import warnings
from typing import Any, Iterable, Iterator, Mapping

from mnemonic_jax import _files
from mnemonic_jax.checkpointing._common import (
    CheckpointError, PathLike, UnverifiedBundleWarning, _abs)
from mnemonic_jax.checkpointing.bundle_format import (
    _ARRAYS, _BOOKKEEPING_CHECKSUMS, _BUNDLE_ENTRIES, _CHECKSUMS, _META, _META_CHECKSUM,
    _META_FILE, BUNDLE_VERSION, MAX_META_BYTES, _load_meta_json)

#: The most array files a bundle of an older format without checksums may hold.
MAX_UNVERIFIED_FILES = 100_000
_DIR_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NONBLOCK", 0)
              | getattr(os, "O_CLOEXEC", 0))
_CORRUPT = "the bundle is truncated or corrupt; re-create it or restore it from a copy"
#: A folder inside a checkpoint is opened without following a link (one put there since
#: it was listed makes the open fail).
_SUBDIR_FLAGS = _DIR_FLAGS | getattr(os, "O_NOFOLLOW", 0)
#: What a message about a symbolic link inside a bundle advises.
LINK_FIX = ("a bundle holds no links (a save writes none; through one, replacing what it "
            "points to would change this bundle); replace the link with a copy of what it "
            "points to (cp -rL), or re-create the bundle")


@dataclasses.dataclass(frozen=True)
class Coverage:
  """Which files of a directory a checksum record covers, and how messages name them.

  The bundle's array files (:data:`BUNDLE_ARRAYS`) and a training checkpoint's step
  (:mod:`~mnemonic_jax.checkpointing.train_checkpoints`) are recorded and verified by the
  same functions (:func:`covered_checksums`, :func:`verify_covered`).

  Attributes:
    folders: the folders (relative to the directory) whose every file is recorded.
    item: what one file is called in messages (``"array file"``).
    what: what the files are, in size messages (``"a bundle's array files"``).
    saved: when the record was made (``"the bundle was saved"``).
    fix: the advice that ends a message about a damaged file.
    extra_fix: the advice for a file that is not recorded.
    skip: files in those folders that are not recorded (the metadata holding the record).
  """

  folders: tuple[str, ...]
  item: str
  what: str
  saved: str
  fix: str
  extra_fix: str
  skip: tuple[str, ...] = ()


#: What a bundle's ``array_sha256`` covers: every file under ``arrays/``.
BUNDLE_ARRAYS = Coverage(folders=(_ARRAYS,), item="array file", what="a bundle's array files",
                         saved="the bundle was saved", fix=_CORRUPT,
                         extra_fix="remove it, or re-create the bundle")


def meta_checksum(meta: Mapping[str, Any]) -> str:
  """The SHA-256 a bundle's metadata records of itself (its ``meta_sha256``).

  Computed over the canonical JSON form of every field but ``meta_sha256``:
  ``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``, so it
  does not depend on how the file is laid out, only on what it says.

  Args:
    meta: the metadata, a JSON object.

  Returns:
    64 lowercase hex digits.
  """
  fields = {k: v for k, v in meta.items() if k != _META_CHECKSUM}
  text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
  return hashlib.sha256(text.encode("ascii")).hexdigest()


def open_dir(path: pathlib.Path) -> int:
  """A descriptor of a bundle directory: every file of one load is read through it.

  Raises:
    CheckpointError: it cannot be opened as a directory.
  """
  try:
    return os.open(path, _DIR_FLAGS)
  except OSError as e:
    raise CheckpointError(f"cannot open {path} ({e.strerror or e}); check the path") from None


def _covered_files(path: pathlib.Path, dir_fd: int, limit: int | None,
                   coverage: Coverage = BUNDLE_ARRAYS) -> list[str]:
  """``folder/...`` paths of the files under ``coverage``'s folders, sorted, but its
  ``skip``; at most ``limit + 1`` (every one if ``limit`` is None).

  Raises:
    CheckpointError: a folder is missing or not a directory, or there is a symbolic link
      anywhere in them (:func:`entries`: what lies behind it is not covered).
  """
  found = []
  for folder in coverage.folders:
    try:
      top = os.stat(folder, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
      why = ("is missing" if isinstance(e, FileNotFoundError)
             else f"cannot be read ({e.strerror or e})")
      raise CheckpointError(f"{path}: its {folder}/ folder {why}; {coverage.fix}") from None
    if not stat.S_ISDIR(top.st_mode) and not stat.S_ISLNK(top.st_mode):
      raise CheckpointError(f"{path}: its {folder} is not a folder (a file); {coverage.fix}")
    with contextlib.closing(entries(path, dir_fd, (folder,), coverage.fix)) as listed:
      for rel, is_folder in listed:
        if is_folder or rel in coverage.skip:
          continue
        found.append(rel)
        if limit is not None and len(found) > limit:
          return sorted(found)
  return sorted(found)


def entries(path: pathlib.Path, dir_fd: int, names: Iterable[str],
            fix: str = LINK_FIX) -> Iterator[tuple[str, bool]]:
  """Every entry of a checkpoint directory that ``names`` name, links never followed.

  The one walk of a bundle's (or a training step's) own files: each of ``names`` that
  exists, and everything below those that are folders, depth first in name order, each
  as ``(relative path, is a folder)``. A symbolic link anywhere (one of ``names``, a file
  or a folder below) is refused, never followed: a save writes none, and through one
  another directory's files would be read as this one's (see the module docstring).

  Args:
    path: the directory (named in messages).
    dir_fd: its descriptor (:func:`open_dir`): every entry is reached through it.
    names: the entries to walk (``"meta"``, ``"arrays"``, ``"_CHECKPOINT_METADATA"``, ...);
      one that does not exist is left out.
    fix: the advice that ends a message about a link.

  Yields:
    ``("arrays/d/...", False)`` for a file (or any other entry that is not a folder),
    ``("arrays/d", True)`` for a folder.

  Raises:
    CheckpointError: a symbolic link (one line naming it and what it points to, and
      ``fix``), or a folder that cannot be listed (a permission denied said as such).
  """
  for name in sorted(names):
    try:
      top = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
      continue
    except OSError as e:
      raise CheckpointError(_files.os_error_line("read", path / name, e, fix)) from None
    if stat.S_ISLNK(top.st_mode):
      raise _link_error(path, name, name, dir_fd, fix)
    yield name, stat.S_ISDIR(top.st_mode)
    if stat.S_ISDIR(top.st_mode):
      yield from _below(path, dir_fd, name, fix)


def _below(path: pathlib.Path, parent_fd: int, rel: str, fix: str
           ) -> Iterator[tuple[str, bool]]:
  """:func:`entries` of the folder ``rel`` (``parent_fd`` holds its last part)."""
  try:
    fd = os.open(os.path.basename(rel), _SUBDIR_FLAGS, dir_fd=parent_fd)
  except OSError as e:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):  # Made a link since it was listed.
      raise _link_error(path, rel, os.path.basename(rel), parent_fd, fix) from None
    raise CheckpointError(_files.os_error_line("read", path / rel, e, fix)) from None
  try:
    with os.scandir(fd) as scan:
      listed = sorted((entry.name, entry.is_symlink(), entry.is_dir(follow_symlinks=False))
                      for entry in scan)
    for name, is_link, is_folder in listed:
      child = f"{rel}/{name}"
      if is_link:
        raise _link_error(path, child, name, fd, fix)
      yield child, is_folder
      if is_folder:
        yield from _below(path, fd, child, fix)
  except OSError as e:
    raise CheckpointError(_files.os_error_line("read", path / rel, e, fix)) from None
  finally:
    os.close(fd)


def _link_error(path: pathlib.Path, rel: str, name: str, dir_fd: int,
                fix: str) -> CheckpointError:
  """The refusal of the symbolic link ``rel`` (``name`` in ``dir_fd``)."""
  try:
    target = f" (to '{_files.shown(os.readlink(name, dir_fd=dir_fd))}')"
  except OSError:
    target = ""
  return CheckpointError(f"{path}: {rel} is a symbolic link{target}, not a regular file or "
                         f"folder; {fix}")


def check_no_links(path: pathlib.Path, dir_fd: int, names: Iterable[str],
                   fix: str = LINK_FIX) -> None:
  """Refuses a symbolic link anywhere among ``names`` of a directory (:func:`entries`).

  :func:`~mnemonic_jax.checkpointing.load_bundle` calls it on every entry a save writes
  (``meta/``, ``arrays/`` and Orbax's bookkeeping files) before it reads any of them.

  Args:
    path: the directory (named in messages).
    dir_fd: its descriptor (:func:`open_dir`).
    names: the entries to check (and everything below those that are folders).
    fix: the advice that ends the message.

  Raises:
    CheckpointError: one line naming the first link and what it points to.
  """
  for _ in entries(path, dir_fd, names, fix):
    pass


def _sha256(path: pathlib.Path, rel: str, dir_fd: int, max_bytes: int,
            what: str = "a bundle's array files", fix: str = _CORRUPT) -> tuple[str, int]:
  """``(hex digest, bytes read)`` of a regular file of at most ``max_bytes``."""
  digest, size = hashlib.sha256(), 0
  with _files.open_regular(rel, dir_fd=dir_fd, shown=str(path / rel), max_bytes=max_bytes,
                           error=CheckpointError, what=what, fix=fix) as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      size += len(block)
      if size > max_bytes:
        raise CheckpointError(f"{path / rel} grew past the {max_bytes} bytes {what} may "
                              f"have while it was read; {fix}")
      digest.update(block)
  return digest.hexdigest(), size


def array_checksums(path: PathLike, max_bytes: int | None = None) -> dict[str, str]:
  """The SHA-256 of every file under a bundle's ``arrays/`` (what save_bundle records).

  Args:
    path: a bundle directory.
    max_bytes: the most bytes the array files may hold together; None for no cap (each
      must still be a regular file).

  Returns:
    ``{"arrays/d/...": hex digest, ...}``, sorted by path.

  Raises:
    CheckpointError: a file there is not a regular file, or they hold more than
      ``max_bytes``.
  """
  return covered_checksums(path, BUNDLE_ARRAYS, max_bytes)


def covered_checksums(path: PathLike, coverage: Coverage,
                      max_bytes: int | None = None) -> dict[str, str]:
  """The SHA-256 of every file a :class:`Coverage` covers in a directory.

  Args:
    path: the directory (a bundle, a training checkpoint's step).
    coverage: which files.
    max_bytes: the most bytes those files may hold together; None for no cap (each must
      still be a regular file).

  Returns:
    ``{"folder/...": hex digest, ...}``, sorted by path.

  Raises:
    CheckpointError: a file there is not a regular file, or they hold more than
      ``max_bytes``.
  """
  path = _abs(path)
  dir_fd = open_dir(path)
  try:
    return _hash_all(path, dir_fd, _covered_files(path, dir_fd, None, coverage), max_bytes,
                     coverage)
  finally:
    os.close(dir_fd)


def _hash_all(path: pathlib.Path, dir_fd: int, files: list[str], max_bytes: int | None,
              coverage: Coverage = BUNDLE_ARRAYS) -> dict[str, str]:
  left = (1 << 62) if max_bytes is None else max_bytes
  digests = {}
  for rel in files:
    digests[rel], size = _sha256(path, rel, dir_fd, left, coverage.what, coverage.fix)
    left -= size
  return digests


def verify_arrays(path: pathlib.Path, dir_fd: int, recorded: Mapping[str, str] | None,
                  max_bytes: int) -> None:
  """Refuses array files that are missing, changed, extra, special or too large.

  Args:
    path: the bundle (named in messages).
    dir_fd: its descriptor (:func:`open_dir`): every file is read through it.
    recorded: ``array_sha256`` from the metadata; None for a bundle of an older format
      without checksums (its files are then only checked to be regular and within
      ``max_bytes``).
    max_bytes: the most bytes the array files may hold together.

  Raises:
    CheckpointError: one line naming the file.
  """
  if recorded is not None:
    verify_covered(path, dir_fd, recorded, max_bytes, BUNDLE_ARRAYS)
    return
  limit = MAX_UNVERIFIED_FILES
  present = _covered_files(path, dir_fd, limit)
  if len(present) > limit:
    raise CheckpointError(f"{path}: more than {limit} array files; {_CORRUPT}")
  left = max_bytes
  for rel in present:
    with _files.open_regular(rel, dir_fd=dir_fd, shown=str(path / rel), max_bytes=left,
                             error=CheckpointError, what="a bundle's array files",
                             fix=_CORRUPT) as f:
      left -= os.fstat(f.fileno()).st_size


def verify_covered(path: pathlib.Path, dir_fd: int, recorded: Mapping[str, str],
                   max_bytes: int, coverage: Coverage) -> None:
  """Refuses covered files that are missing, changed, extra, special or too large.

  Args:
    path: the directory (named in messages).
    dir_fd: its descriptor (:func:`open_dir`): every file is read through it.
    recorded: ``{"folder/...": hex digest}`` as :func:`covered_checksums` made it.
    max_bytes: the most bytes the covered files may hold together.
    coverage: which files, and how messages name them.

  Raises:
    CheckpointError: one line naming the file.
  """
  present = _covered_files(path, dir_fd, len(recorded), coverage)
  extra = [rel for rel in present if rel not in recorded]
  if extra:
    raise CheckpointError(
        f"{path}: {coverage.item} {extra[0]} is not among the files recorded when "
        f"{coverage.saved}; {coverage.extra_fix}")
  left = max_bytes
  for rel in sorted(recorded):
    if rel not in present:
      raise CheckpointError(f"{path}: {coverage.item} {rel} is missing; {coverage.fix}")
    digest, size = _sha256(path, rel, dir_fd, left, coverage.what, coverage.fix)
    left -= size
    if digest != recorded[rel]:
      raise CheckpointError(
          f"{path}: {coverage.item} {rel} does not match the SHA-256 checksum recorded when "
          f"{coverage.saved}; {coverage.fix}")


def verify_meta(path: pathlib.Path, meta: Mapping[str, Any]) -> None:
  """Checks the metadata against its own checksum, and that the checksum record is whole.

  Any checksum the metadata records is verified, whatever its format version. A bundle
  of the current format must record ``meta_sha256``, ``array_sha256`` and
  ``bookkeeping_sha256``; one of an older format that lacks some loads, with an
  :class:`UnverifiedBundleWarning` naming what is not verified (not for the bookkeeping
  files alone: format 2 verifies the metadata and the arrays, all that loads).

  Args:
    path: the bundle (named in messages).
    meta: its metadata as read (already parsed by
      :func:`~mnemonic_jax.checkpointing.parse_bundle_meta`).

  Raises:
    CheckpointError: the metadata does not match its checksum, or a current-format
      bundle has no checksum record.
  """
  recorded = meta.get(_META_CHECKSUM)
  if recorded is not None and recorded != meta_checksum(meta):
    raise CheckpointError(
        f"{path}: the bundle's metadata (meta/metadata) does not match the SHA-256 checksum "
        "recorded in it when the bundle was saved: it was edited or damaged since; restore "
        "the bundle from a copy or re-create it")
  missing = [field for field in (_META_CHECKSUM, _CHECKSUMS, _BOOKKEEPING_CHECKSUMS)
             if meta.get(field) is None]
  if not missing:
    return
  version = meta.get("version")
  if version == BUNDLE_VERSION:
    raise CheckpointError(
        f"{path}: a bundle of format version {version} but its metadata has no checksum "
        f"record ({', '.join(missing)} missing): it was edited or damaged since it was "
        "saved; restore the bundle from a copy or re-create it")
  if missing == [_BOOKKEEPING_CHECKSUMS]:
    # Format 2: its data (metadata and arrays) is verified; the bookkeeping files change
    # nothing that loads, so every existing bundle is not made to warn on each load.
    return
  parts = {_META_CHECKSUM: "its metadata", _CHECKSUMS: "its array files",
           _BOOKKEEPING_CHECKSUMS: "Orbax's bookkeeping files"}
  names = [parts[field] for field in missing]
  unverified = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
  warnings.warn(
      f"{path}: a bundle of the older format version {version}, loaded with {unverified} "
      "not verified by checksums (damage there would go unnoticed); load it and save_bundle "
      "it elsewhere to give it the current checksums", UnverifiedBundleWarning, stacklevel=4)


def verify_bookkeeping(path: pathlib.Path, dir_fd: int,
                       recorded: Mapping[str, str] | None) -> None:
  """Refuses Orbax bookkeeping files that are missing, changed, extra, special or too large.

  These are the files a save writes outside ``arrays/`` but the metadata
  (``_CHECKPOINT_METADATA``, ``commit_success.txt``, ``meta/commit_success.txt``); Orbax
  reads some of them by path. Anything else at the top of the bundle directory is not
  part of the bundle and is ignored (``force`` refuses to replace a bundle holding it);
  anything else in ``meta/`` is refused.

  Args:
    path: the bundle (named in messages).
    dir_fd: its descriptor (:func:`open_dir`): every file is read through it.
    recorded: ``bookkeeping_sha256`` from the metadata; None for a bundle of an older
      format without it (its bookkeeping files are then only checked to be regular files
      of at most :data:`MAX_META_BYTES`).

  Raises:
    CheckpointError: one line naming the file.
  """
  what = "a bundle's bookkeeping files"
  in_meta = [f"{_META}/{name}" for name in _listdir(_META, dir_fd) if name != _META_FILE]
  if recorded is None:
    top = [name for name in _BUNDLE_ENTRIES if name not in (_ARRAYS, _META)]
    for rel in sorted(top) + in_meta:
      try:
        st = os.stat(rel, dir_fd=dir_fd)
      except OSError:
        continue  # Missing (or a dangling link): Orbax finds nothing there either.
      if not stat.S_ISDIR(st.st_mode):
        _files.check_stat(st, str(path / rel), max_bytes=MAX_META_BYTES,
                          error=CheckpointError, what=what, fix=_CORRUPT)
    return
  extra = [rel for rel in in_meta if rel not in recorded]
  if extra:
    raise CheckpointError(
        f"{path}: {extra[0]} is not among the files recorded when the bundle was saved; "
        "remove it, or re-create the bundle")
  for rel in sorted(recorded):
    try:
      os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
      raise CheckpointError(f"{path}: Orbax's bookkeeping file {rel} is missing; "
                            f"{_CORRUPT}") from None
    except OSError:
      pass  # Reported by the read below.
    if _sha256(path, rel, dir_fd, MAX_META_BYTES, what)[0] != recorded[rel]:
      raise CheckpointError(
          f"{path}: Orbax's bookkeeping file {rel} does not match the SHA-256 checksum "
          f"recorded when the bundle was saved; {_CORRUPT}")


def _bookkeeping_files(directory: pathlib.Path) -> list[str]:
  """What :func:`seal` records in ``bookkeeping_sha256``: the regular files at the top of
  a freshly written bundle and in its ``meta/``, but the metadata."""
  found = [p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
  found += [f"{_META}/{p.name}" for p in (directory / _META).iterdir()
            if p.is_file() and not p.is_symlink() and p.name != _META_FILE]
  return sorted(found)


def _listdir(folder: str, dir_fd: int) -> list[str]:
  """The sorted entries of ``folder`` (relative to ``dir_fd``)."""
  fd = os.open(folder, _DIR_FLAGS, dir_fd=dir_fd)
  try:
    return sorted(os.listdir(fd))
  finally:
    os.close(fd)


def seal(directory: pathlib.Path, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Records a bundle's checksums in its metadata and writes the metadata file.

  :func:`~mnemonic_jax.checkpointing.save_bundle` calls it on the staging directory once
  Orbax has written the arrays. (A test that lays a bundle out itself may call it too.)

  Args:
    directory: the bundle directory, its arrays final.
    meta: the metadata to write; None to take the directory's own.

  Returns:
    The metadata written: ``meta`` at the current format version, with ``array_sha256``,
    ``bookkeeping_sha256`` and ``meta_sha256``.

  Raises:
    CheckpointError: ``meta`` is None and the directory holds no bundle metadata.
  """
  directory = pathlib.Path(directory)
  if meta is None:
    meta = _load_meta_json(directory)
    if meta is None:
      raise CheckpointError(f"{directory} holds no bundle metadata to seal")
  meta = {k: v for k, v in meta.items() if k != _META_CHECKSUM}
  meta["version"] = BUNDLE_VERSION
  meta[_CHECKSUMS] = array_checksums(directory)
  dir_fd = open_dir(directory)
  try:
    meta[_BOOKKEEPING_CHECKSUMS] = _hash_all(directory, dir_fd, _bookkeeping_files(directory),
                                             None)
  finally:
    os.close(dir_fd)
  meta[_META_CHECKSUM] = meta_checksum(meta)
  write_meta(directory, meta)
  return meta


def write_meta(directory: pathlib.Path, meta: Mapping[str, Any]) -> None:
  """Replaces ``directory/meta/metadata`` with ``meta`` (ASCII JSON), atomically.

  Written beside it, synced, then renamed over it: a reader sees the old file or the new
  one, never a part.

  Args:
    directory: a bundle or a training checkpoint's step directory.
    meta: the JSON object to write.
  """
  target = pathlib.Path(directory) / _META / _META_FILE
  temporary = target.with_name(f".{_META_FILE}.tmp")
  with open(temporary, "w", encoding="ascii") as f:
    f.write(json.dumps(meta))
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, target)
