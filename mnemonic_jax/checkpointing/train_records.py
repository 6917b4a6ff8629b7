"""A training checkpoint's record: its version, its checksums, read without Orbax.

Every step a :class:`~mnemonic_jax.checkpointing.TrainCheckpointer` saves carries a JSON
record (``STEP/meta/metadata``): the format marker, the version, the step, the caller's
metadata and (version 2) the SHA-256 of every file under ``state/`` and ``meta/`` and of
the record itself, sealed by the bundles' machinery
(:mod:`~mnemonic_jax.checkpointing.integrity`) before Orbax renames the step into place.
This module writes that seal, reads and checks a record (:func:`read_step_metadata`, which
only reads), and says what to do about a damaged step.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from mnemonic_jax import _files
from mnemonic_jax.checkpointing import integrity
from mnemonic_jax.checkpointing._common import (
    CheckpointError, PathLike, UnverifiedBundleWarning, _abs)
from mnemonic_jax.checkpointing.bundle_format import MAX_META_BYTES

TRAIN_FORMAT = "mnemonic-jax-train"
#: The training-checkpoint version this release writes (2: every step sealed with checksums).
TRAIN_VERSION = 2
#: Older versions still restored, unverified (1: no checksums).
OLDER_TRAIN_VERSIONS = (1,)

_STATE = "state"
_META = "meta"
_META_FILE = "metadata"
#: A sealed step's metadata fields: the SHA-256 of its files, and of the metadata itself.
_FILES_CHECKSUMS = "files_sha256"
_META_CHECKSUM = "meta_sha256"


class UnverifiedCheckpointWarning(UnverifiedBundleWarning):
  """A training checkpoint of an older version restored without checksums to verify it."""


def _coverage(step: int, fix: str) -> integrity.Coverage:
  """What a step's checksum record covers: every file under ``state/`` and ``meta/``
  but the metadata, which records them (and its own checksum)."""
  return integrity.Coverage(folders=(_STATE, _META), item="file",
                            what="a training checkpoint's files", saved=f"step {step} was saved",
                            fix=fix, extra_fix=fix, skip=(f"{_META}/{_META_FILE}",))


def _seal_step(step_dir: pathlib.Path, step: int) -> None:
  """Records the SHA-256 of a written step's files and of its metadata, in its metadata.

  Called by Orbax once the step's files are final and before its directory is renamed
  into place (:class:`~mnemonic_jax.checkpointing.TrainCheckpointer`), so the record is
  part of the step from its start.
  """
  meta = json.loads((step_dir / _META / _META_FILE).read_bytes())
  meta[_FILES_CHECKSUMS] = integrity.covered_checksums(step_dir, _coverage(step, ""))
  meta.pop(_META_CHECKSUM, None)
  meta[_META_CHECKSUM] = integrity.meta_checksum(meta)
  integrity.write_meta(step_dir, meta)


def _damaged_fix(directory: pathlib.Path, step: int, steps: list[int]) -> str:
  """What to do about a damaged step: delete it, naming the step a run then resumes from."""
  earlier = [s for s in steps if s < step]
  then = (f"resume from step {earlier[-1]}" if earlier else
          "start the run from the beginning")
  return f"the checkpoint is damaged: delete {directory / str(step)} to {then}"


def _step_meta(directory: pathlib.Path, step: int, dir_fd: int, fix: str) -> dict[str, Any]:
  """A step's JSON metadata, read through ``dir_fd`` and checked: ours, a known version,
  and (version 2) matching its own checksum, with a whole record of its files.

  Raises:
    CheckpointError: one line naming the step and ``fix``.
  """
  where = directory / str(step)
  rel = f"{_META}/{_META_FILE}"
  try:
    os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)
  except FileNotFoundError:
    raise CheckpointError(f"{where}: its {rel} is missing; {fix}") from None
  data = _files.read_regular(rel, dir_fd=dir_fd, shown=str(where / rel),
                             max_bytes=MAX_META_BYTES, error=CheckpointError,
                             what="a training checkpoint's metadata", fix=fix)
  try:
    meta = json.loads(data)
  except (ValueError, RecursionError):
    raise CheckpointError(f"{where}: its {rel} is not valid JSON; {fix}") from None
  if not isinstance(meta, dict) or meta.get("format") != TRAIN_FORMAT:
    raise CheckpointError(f"{directory}: step {step} is not a mnemonic-jax training "
                          "checkpoint; point at a directory written by TrainCheckpointer")
  version = meta.get("version")
  if version in OLDER_TRAIN_VERSIONS and not isinstance(version, bool):
    return meta
  if version != TRAIN_VERSION or isinstance(version, bool):
    raise CheckpointError(
        f"{directory}: step {step} has training-checkpoint version {version!r}, this "
        f"mnemonic_jax reads {TRAIN_VERSION} (and the older "
        f"{', '.join(map(str, OLDER_TRAIN_VERSIONS))})")
  recorded, files = meta.get(_META_CHECKSUM), meta.get(_FILES_CHECKSUMS)
  if recorded != integrity.meta_checksum(meta):
    raise CheckpointError(
        f"{where}: its {rel} does not match the SHA-256 checksum recorded in it when step "
        f"{step} was saved (edited or damaged since); {fix}")
  if not (isinstance(files, dict) and files
          and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
    raise CheckpointError(f"{where}: its {rel} has no record of the step's files; {fix}")
  return meta


def _complete_steps(directory: pathlib.Path) -> list[int]:
  """The complete steps in a training checkpoint directory (Orbax's names: the step
  number; an unfinished one carries Orbax's temporary suffix), ascending; only reads."""
  try:
    entries = list(directory.iterdir())
  except OSError:
    return []
  return sorted(int(p.name) for p in entries
                if p.name.isascii() and p.name.isdigit() and p.is_dir())


def read_step_metadata(directory: PathLike,
                       step: int | None = None) -> tuple[int, dict[str, Any]] | None:
  """The JSON record a :class:`TrainCheckpointer` saved with a step; only reads.

  The record is checked as
  :meth:`~mnemonic_jax.checkpointing.TrainCheckpointer.restore` checks it (ours, a known
  version, matching its own SHA-256), without reading the state's arrays.

  Args:
    directory: a training checkpoint directory (it need not exist).
    step: the step; None for the latest complete one.

  Returns:
    ``(step, record)``, the record holding ``"version"`` and the ``"metadata"`` dict
    given to :meth:`~mnemonic_jax.checkpointing.TrainCheckpointer.save`; or None if there
    is no complete step (or not ``step``).

  Raises:
    CheckpointError: the record is missing, not JSON, not a training checkpoint's, of an
      unknown version or does not match its checksum.
  """
  directory = _abs(directory)
  steps = _complete_steps(directory)
  if step is None and steps:
    step = steps[-1]
  if step is None or int(step) not in steps:
    return None
  step = int(step)
  dir_fd = integrity.open_dir(directory / str(step))
  try:
    return step, _step_meta(directory, step, dir_fd, _damaged_fix(directory, step, steps))
  finally:
    os.close(dir_fd)
