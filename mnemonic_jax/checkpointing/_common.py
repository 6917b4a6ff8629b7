"""What every checkpoint module shares: the error type, absolute paths, one-line
messages, the JSON round trip and removing a path."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np

from mnemonic_jax import _validate, errors

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


def _json_default(obj: Any) -> Any:
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, (np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _to_json(obj: Any, what: str) -> Any:
  """Round-trips ``obj`` through JSON (numpy scalars become numbers, tuples lists)."""
  try:
    return json.loads(json.dumps(obj, default=_json_default))
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f"{what} is not JSON-serialisable ({_one_line(e)}); "
        "use plain numbers, strings, lists and dicts") from None


def _remove(path: pathlib.Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path, ignore_errors=True)
  elif path.exists() or path.is_symlink():
    path.unlink()

