"""What every checkpoint module shares: the error type, absolute paths, one-line
messages, the JSON round trip and removing a path."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from typing import Any


from mnemonic_jax import _files, _validate, errors
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


class OldBundleLeftWarning(UserWarning):
  """A bundle replaced with ``force`` whose old copy could not be removed entirely.

  :func:`~mnemonic_jax.checkpointing.save_bundle` refuses beforehand to replace a bundle
  whose folders it may not change; this warns of what still failed (an immutable file, a
  permission changed meanwhile). The new bundle is in place and complete; the message
  names the hidden folder holding what is left of the old one, to remove by hand.
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
    CheckpointError: the absolute path is not UTF-8 text, which the storage library
      cannot take (:func:`mnemonic_jax._files.unstorable`; a Latin-1 file name).
  """
  path = _validate.path(path, hint="the checkpoint functions take the path first, as "
                       "save_bundle(path, bundle)")
  absolute = pathlib.Path(os.path.abspath(os.path.expanduser(path)))
  why = _files.unstorable(absolute)  # Orbax's storage would fail on it, mid-way or as damage.
  if why is not None:
    raise CheckpointError(f"{_files.shown(absolute)}: {why}")
  return absolute


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


#: Where tensorstore's errors (through Orbax) start dumping an internal representation:
#: ``See full TensorStore details: <bound method pybind11_...spec of TensorStore({...})>``.
_INTERNAL_DETAILS = re.compile(r"\s*See full TensorStore details:.*", re.DOTALL)
#: Python's default representation of an object, ``<pkg.Thing object at 0x7f...>``.
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _one_line(error: BaseException, limit: int = 240) -> str:
  """The first line of an exception message, without internal representations, shortened.

  A library's message quoted in one of ours: tensorstore's dump of its internal spec
  (a pybind11 bound method's repr, dozens of lines) is cut off, and the error behind it
  (``OUT_OF_RANGE: Error reading ...``) said in place of that line; an
  ``<X object at 0x...>`` is
  named ``X``. At most ``limit`` characters.
  """
  text = str(error).strip()
  cut = _INTERNAL_DETAILS.search(text)
  text = _OBJECT_REPR.sub(r"\1", _INTERNAL_DETAILS.sub("", text)).strip()
  lines = text.splitlines()
  line = lines[0] if lines else type(error).__name__
  cause = error.__cause__ or error.__context__
  if cut and cause is not None:  # The outer line only says where it read ("array index").
    line = _one_line(cause, limit)
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

