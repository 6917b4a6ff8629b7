"""What every checkpoint module shares: the error type, absolute paths, one-line
messages, the JSON round trip and removing a path."""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any


from mnemonic_jax import _validate, errors
from mnemonic_jax.bundle import json_value

PyTree = Any
PathLike = str | os.PathLike


class CheckpointError(errors.BadCheckpoint):
  """A checkpoint that is missing, foreign, corrupt, or would overwrite an existing one."""


class UnverifiedBundleWarning(UserWarning):
  """A bundle of an older format version loaded without checksums covering all of it.

  Only bundles that declare an older format version load so (a current-format bundle
  whose checksum record is missing is refused); re-save one (load it, then
  ``save_bundle`` it elsewhere) to give it the current checksums.
  """


class CodesNotLearnedWarning(UserWarning):
  """An imported model that does not classify its codes as their classes.

  :func:`~mnemonic_jax.checkpointing.import_params` gives it when some of the codes are
  misclassified (the sentence is also recorded in the bundle's history entry of the
  import): forgetting with such codes does not aim at the forgotten classes. The codes
  are not the ones the model was trained with, or it was trained without codes; attach
  codes with ``mnemonic-jax attach-codes`` (:func:`mnemonic_jax.attach.attach_codes`).
  """


def _abs(path: PathLike) -> pathlib.Path:
  """Absolute path (Orbax requires them) with ``~`` expanded; symlinks are kept.

  Raises:
    BadRequestType: ``path`` is not a ``str`` or ``os.PathLike`` (e.g. a bundle passed
      where its path belongs: ``save_bundle(path, bundle)`` takes the path first).
  """
  path = _validate.path(path, hint="the checkpoint functions take the path first, as "
                       "save_bundle(path, bundle)")
  return pathlib.Path(os.path.abspath(os.path.expanduser(path)))


def _abs_output(path: PathLike, name: str = "path") -> pathlib.Path:
  """:func:`_abs` of a path to write a bundle to, an empty one refused with what works.

  ``'.'`` (what an empty path would mean) is the current directory, which is never
  replaced (:func:`mnemonic_jax.checkpointing.check_output`), so the message does not
  suggest it.

  Raises:
    BadRequest: ``path`` is empty.
    BadRequestType: ``path`` is not a ``str`` or ``os.PathLike``.
  """
  if isinstance(path, (str, os.PathLike)) and not os.fspath(path):
    raise errors.BadRequest(f"{name} is empty (an unset shell variable?); give the directory "
                            "to write, a new one such as 'runs/out' (the current directory "
                            "is never replaced)")
  return _abs(path)


def _one_line(error: BaseException, limit: int = 240) -> str:
  """The first line of an exception message, shortened (tensorstore errors are huge)."""
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  return line if len(line) <= limit else line[: limit - 3] + "..."


def _to_json(obj: Any, what: str) -> Any:
  """Round-trips ``obj`` through JSON (:func:`mnemonic_jax.bundle.json_value`: numpy
  scalars become numbers, tuples lists, dict keys strings).

  Raises:
    CheckpointError: JSON cannot write ``obj``, or two of its keys would be written alike.
  """
  try:
    return json_value(obj, what)
  except errors.BadRequestType as e:
    raise CheckpointError(str(e)) from None


def _remove(path: pathlib.Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path, ignore_errors=True)
  elif path.exists() or path.is_symlink():
    path.unlink()

