"""A training checkpoint's record: its version, its checksums, read without Orbax.

Every step a :class:`~mnemonic_jax.checkpointing.TrainCheckpointer` saves carries a JSON
record (``STEP/meta/metadata``): the format marker, the version, the step, the caller's
metadata and (version 2) the SHA-256 of every file under ``state/`` and ``meta/`` and of
the record itself, sealed by the bundles' machinery
(:mod:`~mnemonic_jax.checkpointing.integrity`) before Orbax renames the step into place.
This module writes that seal, reads and checks a record (:func:`read_step_metadata`, which
only reads), and says what to do about a damaged step. A step is named after its step
number, which its record holds too: a folder whose record is of another step (renamed, or
copied in from another step) is refused like a damaged one, never resumed from.
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


def _resume_then(step: int, steps: list[int]) -> str:
  """What a run does once ``step`` is gone: resume from the step before it, or start."""
  earlier = [s for s in steps if s < step]
  return f"resume from step {earlier[-1]}" if earlier else "start the run from the beginning"


def _damaged_fix(directory: pathlib.Path, step: int, steps: list[int]) -> str:
  """What to do about a damaged step: delete it, naming the step a run then resumes from."""
  return f"the checkpoint is damaged: delete {directory / str(step)} to {_resume_then(step, steps)}"


def foreign_step_fix(directory: pathlib.Path, step: int, steps: list[int]) -> str:
  """What to do about a step folder that is not the run's step of its name (renamed, copied
  in, of another run): ``delete it, or move it out of DIRECTORY, to resume from step N``."""
  return f"delete it, or move it out of {directory}, to {_resume_then(step, steps)}"


def _step_meta(directory: pathlib.Path, step: int, dir_fd: int,
               steps: list[int]) -> dict[str, Any]:
  """A step's JSON metadata, read through ``dir_fd`` and checked: ours, a known version,
  (version 2) matching its own checksum, with a whole record of its files, and recording
  the step its folder is named after (a renamed or copied step folder is refused: the run
  takes its step number from the name, and its metrics window and log from the record).

  Args:
    directory: the training checkpoint directory.
    step: the step, the folder's name.
    dir_fd: the step folder, open.
    steps: the directory's complete steps (for the step to fall back to).

  Raises:
    CheckpointError: one line naming the step and what to do (delete it, or move it out
      of ``directory``, naming the step a run then resumes from).
  """
  fix = _damaged_fix(directory, step, steps)
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
    raise CheckpointError(f"{directory / str(step)} is not a training step of this run (no "
                          "mnemonic-jax training record: a bundle, or another program's "
                          f"folder?); {foreign_step_fix(directory, step, steps)}")
  version = meta.get("version")
  if version in OLDER_TRAIN_VERSIONS and not isinstance(version, bool):
    if "step" in meta:  # Unsealed, but a step of another name is still not this one.
      _check_recorded_step(directory, step, meta["step"], steps)
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
  _check_recorded_step(directory, step, meta.get("step"), steps)
  return meta


def _check_recorded_step(directory: pathlib.Path, step: int, recorded: Any,
                         steps: list[int]) -> None:
  """Refuses a step folder whose record is of another step than its name.

  Raises:
    CheckpointError: one line naming the folder, the step it records and what to do.
  """
  if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded == step:
    return
  what = (f"step {recorded}" if isinstance(recorded, int) and not isinstance(recorded, bool)
          else f"no step ({str(recorded)[:40]!r})")
  raise CheckpointError(
      f"{directory / str(step)}: it records {what}, not {step} (a step folder renamed, or "
      f"copied in from another step); {foreign_step_fix(directory, step, steps)}")


def _misnamed_steps(directory: pathlib.Path) -> list[str]:
  """Folders named with digits that are not a step's name as Orbax writes and reads it
  (``0180``: Orbax passes them over, :func:`_complete_steps` would read them as 180)."""
  try:
    entries = list(directory.iterdir())
  except OSError:
    return []
  return sorted(p.name for p in entries if p.name.isascii() and p.name.isdigit()
                and p.name != str(int(p.name)) and p.is_dir())


def check_step_names(directory: PathLike) -> None:
  """Refuses a training checkpoint directory holding a folder named like a step that is
  not one (``0180``: a step folder renamed); only reads.

  Raises:
    CheckpointError: one line naming the folder and what to do.
  """
  directory = _abs(directory)
  misnamed = _misnamed_steps(directory)
  if misnamed:
    name = misnamed[0]
    steps = _complete_steps(directory)
    then = _resume_then(max(steps, default=0) + 1, steps)
    raise CheckpointError(
        f"{directory / name}: a folder named like a training step, but not as a step is "
        f"named (a step folder renamed?); delete it, or move it out of {directory}, to "
        f"{then}")


def _complete_steps(directory: pathlib.Path) -> list[int]:
  """The complete steps in a training checkpoint directory (Orbax's names: the step
  number; an unfinished one carries Orbax's temporary suffix), ascending; only reads."""
  try:
    entries = list(directory.iterdir())
  except OSError:
    return []
  return sorted(int(p.name) for p in entries
                if p.name.isascii() and p.name.isdigit() and p.name == str(int(p.name))
                and p.is_dir())


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
      unknown version, does not match its checksum or records another step than its
      folder's name; or a folder is named like a step but not as one is
      (:func:`check_step_names`).
  """
  directory = _abs(directory)
  check_step_names(directory)
  steps = _complete_steps(directory)
  if step is None and steps:
    step = steps[-1]
  if step is None or int(step) not in steps:
    return None
  step = int(step)
  dir_fd = integrity.open_dir(directory / str(step))
  try:
    return step, _step_meta(directory, step, dir_fd, steps)
  finally:
    os.close(dir_fd)
