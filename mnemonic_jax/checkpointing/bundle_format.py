"""The bundle's on-disk format, in one place: layout, metadata, checksums.

A *bundle* (see :class:`mnemonic_jax.bundle.Bundle`) is one directory, written by one
``ocp.args.Composite`` with two items::

  <bundle>/
    _CHECKPOINT_METADATA, commit_success.txt   Orbax's own bookkeeping
    arrays/                                   StandardSave of {"params", "batch_stats", "codes"}
    meta/metadata                             JSON: format marker, version, model spec,
                                              normalisation, class names, config, history,
                                              the SHA-256 of every other file the save
                                              wrote and of the metadata itself

:func:`parse_bundle_meta` is the one reader of the metadata: the loader parses what it
reads with it and the saver what it is about to write, so a bundle that saves also loads.
Every field is checked for type, range and agreement with the others (mean and std
length vs channels, history entries, class count) and every size it declares is bounded
(:data:`MAX_META_BYTES`, :data:`~mnemonic_jax.checkpointing.checks.MAX_CODE_ELEMENTS`)
before anything is allocated.

Integrity (what the checksums cover, and what they do not protect against) is
:mod:`~mnemonic_jax.checkpointing.integrity`. The metadata file is read here, once, by
:func:`_load_meta_json`: a regular file of at most :data:`MAX_META_BYTES`, checked after
opening (:mod:`mnemonic_jax._files`), never through a path that could block or read
without end.

Format versions: 3 (this release) covers every file a save writes (Orbax's bookkeeping
too) and the metadata with checksums; 2 covered the array files and the metadata; 1 the
array files only, or nothing. The older ones still load with an
:class:`~mnemonic_jax.checkpointing.UnverifiedBundleWarning` naming what is not verified.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import stat
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mnemonic_jax import _files, errors
from mnemonic_jax.bundle import NON_FORGETTING_EVENTS, Bundle
from mnemonic_jax.checkpointing._common import CheckpointError, PathLike, PyTree, _to_json
from mnemonic_jax.checkpointing.checks import (
    _as_float, _check_finite, _input_shape_problem, _is_int, _short)
from mnemonic_jax.checkpointing.model_spec import _spec_str, abstract_variables
from mnemonic_jax.checkpointing.trees import _dtype_mismatch, _tree_mismatch
from mnemonic_jax.data.sources import MAX_CLASSES
from mnemonic_jax.models import model_attributes, model_source

BUNDLE_FORMAT = "mnemonic-jax-bundle"
#: The format version this release writes (3: every file of the bundle is covered by a
#: checksum; 2 left out Orbax's bookkeeping files, 1 the metadata too).
BUNDLE_VERSION = 3
#: Older format versions this release still reads, unverified where they carry no
#: checksums (with an :class:`~mnemonic_jax.checkpointing.UnverifiedBundleWarning`).
OLDER_BUNDLE_VERSIONS = (1, 2)

_ARRAYS = "arrays"
_META = "meta"
_META_FILE = "metadata"  # What ocp.JsonCheckpointHandler names its file.
_CHECKSUMS = "array_sha256"
_META_CHECKSUM = "meta_sha256"
#: The SHA-256 of Orbax's bookkeeping files: every file a save writes outside ``arrays/``
#: but ``meta/metadata`` (``_CHECKPOINT_METADATA``, ``commit_success.txt``,
#: ``meta/commit_success.txt``).
_BOOKKEEPING_CHECKSUMS = "bookkeeping_sha256"

#: Bounds on what a file may declare, checked before anything is read or allocated.
MAX_META_BYTES = 64 << 20  #: A bundle's JSON metadata.


#: What every "this is not a bundle" message suggests instead.
_BUNDLE_HINT = ("pass a bundle: the --workdir of 'mnemonic-jax train' (or its bundle/), the "
                "--output of forget, import or attach-codes, or a directory written by "
                "mnemonic_jax.save_bundle")



def _process_local() -> ocp.options.MultiprocessingOptions:
  """Orbax options for files one process reads or writes alone (a bundle: host arrays).

  With several JAX processes (:mod:`mnemonic_jax.distributed`) Orbax otherwise waits at
  every save and restore for all of them; a bundle is written by process 0 alone and
  read by each process on its own. With one process this is Orbax's default.
  """
  me = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


@functools.lru_cache(maxsize=1)
def _bundle_checkpointer() -> ocp.Checkpointer:
  """The (synchronous, stateless) checkpointer of bundles, made once per process."""
  local = _process_local()
  handler = ocp.CompositeCheckpointHandler(
      **{_ARRAYS: ocp.StandardCheckpointHandler(multiprocessing_options=local),
         _META: ocp.JsonCheckpointHandler(multiprocessing_options=local)},
      composite_options=ocp.CompositeOptions(multiprocessing_options=local))
  return ocp.Checkpointer(handler, multiprocessing_options=local)


def _meta_file(path: pathlib.Path) -> pathlib.Path:
  return path / _META / _META_FILE


#: What :func:`_meta_json` returns for a metadata file that is not JSON (truncated, damaged).
_NOT_JSON = object()


def _load_meta_json(path: pathlib.Path, dir_fd: int | None = None) -> dict[str, Any] | None:
  """A directory's bundle metadata if it carries the bundle marker (any version).

  Returns:
    The JSON object, or None if there is no metadata file, it is not JSON or not marked.

  Raises:
    CheckpointError: as :func:`_meta_json`.
  """
  meta = _meta_json(path, dir_fd)
  return meta if _is_marked(meta) else None


def _is_marked(meta: Any) -> bool:
  return isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT


def _meta_json(path: pathlib.Path, dir_fd: int | None = None) -> Any:
  """What a directory's ``meta/metadata`` holds: parsed JSON, :data:`_NOT_JSON` or None.

  Read once, as a regular file of at most :data:`MAX_META_BYTES` checked after opening
  (so a FIFO there does not block and a link to ``/dev/zero`` is not read).

  Args:
    path: the directory (named in messages; the file is opened through it unless
      ``dir_fd`` is given).
    dir_fd: a descriptor of the directory, opened once by the reader: the file is opened
      relative to it.

  Returns:
    The JSON value, None if there is no metadata file, or :data:`_NOT_JSON` if it is not
    JSON (or not text).

  Raises:
    CheckpointError: the metadata file is not a regular file, is larger than
      :data:`MAX_META_BYTES` or cannot be read (a permission denied named as such).
  """
  relative = f"{_META}/{_META_FILE}"
  where = path / relative
  name = relative if dir_fd is not None else where
  try:
    os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
  except OSError as e:
    if _files.is_access_error(e):  # meta/ may not be searched: not "not a bundle".
      raise CheckpointError(_files.os_error_line("read", where, e, "")) from None
    return None  # No metadata file: not a bundle.
  data = _files.read_regular(name, dir_fd=dir_fd, shown=str(where), max_bytes=MAX_META_BYTES,
                             error=CheckpointError, what="a bundle's metadata",
                             fix="it is corrupt or not a bundle; re-create the bundle")
  try:
    return json.loads(data)
  except (ValueError, RecursionError):
    return _NOT_JSON


def _marked_bundle_meta(path: pathlib.Path) -> dict[str, Any] | None:
  """A directory's bundle metadata if it carries the bundle marker (any version), or None.

  Raises:
    CheckpointError: its metadata file is not a regular file or is too large.
  """
  return _load_meta_json(path)


def _missing_meta(where: int | pathlib.Path) -> str | None:
  """What is missing of the metadata of a directory that holds a bundle's ``arrays/``.

  A bundle is ``arrays/`` and ``meta/metadata``; a directory with the first and without the
  second is a damaged bundle (a train checkpoint has ``state/`` instead of ``arrays/``).

  Args:
    where: a descriptor of the directory, or its path.

  Returns:
    ``"its meta/ folder is missing"`` or ``"its metadata file meta/metadata is missing"``,
    or None (no ``arrays/`` folder, or the metadata file is there).
  """
  if not _exists(where, _ARRAYS, folder=True) or _exists(where, f"{_META}/{_META_FILE}"):
    return None
  if not _exists(where, _META, folder=True):
    return f"its {_META}/ folder is missing"
  return f"its metadata file {_META}/{_META_FILE} is missing"


def _exists(where: int | pathlib.Path, rel: str, folder: bool = False) -> bool:
  """Whether ``rel`` exists in ``where`` (a descriptor or a path), links unfollowed."""
  try:
    if isinstance(where, int):
      st = os.stat(rel, dir_fd=where, follow_symlinks=False)
    else:
      st = os.stat(where / rel, follow_symlinks=False)
  except OSError:
    return False
  return stat.S_ISDIR(st.st_mode) or not folder


def _read_bundle_meta(path: pathlib.Path, dir_fd: int | None = None) -> dict[str, Any]:
  """Reads and checks a bundle's metadata (regular file, size, format marker, version).

  A directory holding a bundle's ``arrays/`` whose metadata is missing or is not JSON is
  a damaged bundle (truncated or corrupt), not "not a bundle"; metadata that is JSON
  without the bundle marker (an Orbax training checkpoint's) is not a bundle.

  Raises:
    CheckpointError: not a regular file or too large, not a bundle, a damaged one, or a
      format version this release does not read.
  """
  where = dir_fd if dir_fd is not None else path
  meta = _meta_json(path, dir_fd)
  if not _is_marked(meta):
    missing = _missing_meta(where)
    if missing is None and meta is _NOT_JSON and _exists(where, _ARRAYS, folder=True):
      missing = f"its metadata file {_META}/{_META_FILE} is not valid JSON"
    if missing:
      raise CheckpointError(f"{path}: {missing}; the bundle is truncated or corrupt; "
                            "re-create it or restore it from a copy")
    raise CheckpointError(
        f"{path} is not a mnemonic-jax bundle (no readable '{BUNDLE_FORMAT}' metadata); "
        f"{_BUNDLE_HINT}")
  version = meta.get("version")
  if version not in (BUNDLE_VERSION, *OLDER_BUNDLE_VERSIONS) or isinstance(version, bool):
    raise CheckpointError(
        f"{path} is a bundle of format version {version!r}, but this mnemonic_jax reads "
        f"version {BUNDLE_VERSION} (and the older "
        f"{' and '.join(map(str, OLDER_BUNDLE_VERSIONS))}); load it with the mnemonic_jax "
        "release that wrote it")
  return meta


def parse_bundle_meta(path: PathLike, meta: Mapping[str, Any],
                      fix: str = "the bundle is corrupt, re-create it") -> dict[str, Any]:
  """Checks every field of a bundle's metadata and returns the values it describes.

  The one reader of the format: :func:`load_bundle` parses what it reads with it and
  :func:`save_bundle` what it is about to write, so a bundle that saves also loads.

  Args:
    path: the bundle (named in messages).
    meta: its JSON item.
    fix: what the user should do, ending each message.

  Returns:
    ``model_name``, ``model_kwargs``, ``num_classes``, ``input_shape`` (tuple),
    ``mean``, ``std`` (tuples of floats), ``class_names`` (tuple), ``dataset``,
    ``config``, ``history`` (tuple of dicts), ``codes_dtype`` (a numpy dtype),
    ``checksums`` (``{relative path: sha256 hex}`` of the array files),
    ``bookkeeping`` (the same of Orbax's bookkeeping files), ``meta_checksum``
    (the metadata's own SHA-256, see :mod:`~mnemonic_jax.checkpointing.integrity`), each
    None where the metadata records none (whether that is allowed depends on the format
    version: :func:`~mnemonic_jax.checkpointing.integrity.verify_meta`), and
    ``model_source`` (``{}`` for a built-in model).

  Raises:
    CheckpointError: a field is missing, of the wrong type or out of range, declares an
      unsupported size, or disagrees with another (mean or std length vs channels, class
      names vs classes, history classes vs classes). One line naming the field.
  """

  def bad(field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: bundle metadata field {field!r} {problem}; {fix}")

  def get(field: str) -> Any:
    if field not in meta:
      raise bad(field, "is missing")
    return meta[field]

  model_name = get("model_name")
  if not isinstance(model_name, str) or not model_name:
    raise bad("model_name", f"is {_short(model_name)}, not a model name")
  model_kwargs = get("model_kwargs")
  if not isinstance(model_kwargs, dict):
    raise bad("model_kwargs", f"is {_short(model_kwargs)}, not a JSON object")
  num_classes = get("num_classes")
  if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
    raise bad("num_classes", f"is {_short(num_classes)}, not an integer in [1, {MAX_CLASSES}]")
  num_classes = int(num_classes)
  input_shape = get("input_shape")
  problem = _input_shape_problem(input_shape, num_classes)
  if problem:
    raise bad("input_shape", problem)
  input_shape = tuple(int(d) for d in input_shape)
  norm = {}
  for field in ("mean", "std"):
    values = get(field)
    if not isinstance(values, list) or not values:
      raise bad(field, f"is {_short(values)}, not a list of numbers")
    floats = [_as_float(v) for v in values]
    if any(v is None for v in floats):
      raise bad(field, f"holds {_short(values)}, not numbers")
    if len(floats) not in (1, input_shape[-1]):
      raise bad(field, f"has {len(floats)} values for inputs of {input_shape[-1]} channels "
                       f"(input_shape {input_shape})")
    norm[field] = tuple(floats)
  class_names = get("class_names")
  if (not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names)
      or len(class_names) not in (0, num_classes)):
    raise bad("class_names", f"is {_short(class_names)}, not a list of {num_classes} names")
  dataset = get("dataset")
  if not isinstance(dataset, str):
    raise bad("dataset", f"is {_short(dataset)}, not a dataset name")
  config = get("config")
  if not isinstance(config, dict):
    raise bad("config", f"is {_short(config)}, not a JSON object")
  if config.get("data_dir") is not None and not isinstance(config["data_dir"], str):
    raise bad("config", f"has data_dir {_short(config['data_dir'])}, not a path")
  history = get("history")
  if not isinstance(history, list):
    raise bad("history", f"is {_short(history)}, not a list of forgetting requests")
  for i, entry in enumerate(history):
    classes = entry.get("classes") if isinstance(entry, dict) else None
    event = entry.get("event") if isinstance(entry, dict) else None
    attached = event in NON_FORGETTING_EVENTS
    if attached and classes != []:
      raise bad("history", f"entry {i} is {_short(entry)}, an {event!r} event with "
                           "'classes' not an empty list")
    if not attached and (
        not isinstance(classes, list) or not classes
        or not all(_is_int(c) and 0 <= c < num_classes for c in classes)):
      raise bad("history", f"entry {i} is {_short(entry)}, not a request with 'classes', a "
                           f"list of class ids in [0, {num_classes})")
  codes_dtype = meta.get("codes_dtype", "float32")
  try:
    codes_dtype = jnp.dtype(codes_dtype) if isinstance(codes_dtype, str) else None
  except TypeError:
    codes_dtype = None
  if codes_dtype is None or not jnp.issubdtype(codes_dtype, jnp.floating):
    raise bad("codes_dtype", f"is {_short(meta.get('codes_dtype'))}, not a floating-point "
                             "dtype name")
  source = meta.get("model_source", {})
  if (not isinstance(source, dict)
      or len([k for k in source if k in ("import", "file")]) != min(len(source), 1)
      or not all(k in ("import", "file", "sha256") and isinstance(v, str) and v
                 for k, v in source.items())):
    raise bad("model_source", f"is {_short(source)}, not {{'import': module}} or "
                              "{'file': path}, with the file's 'sha256'")
  attributes = meta.get("model_attributes", {})
  if not isinstance(attributes, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
    raise bad("model_attributes", f"is {_short(attributes)}, not a map of the model's "
                                  "attributes to their values in words")
  checksums = meta.get(_CHECKSUMS)
  if checksums is not None:
    if not isinstance(checksums, dict) or not checksums or not all(
        isinstance(k, str) and k.startswith(f"{_ARRAYS}/") and ".." not in k.split("/")
        and _is_hex_digest(v) for k, v in checksums.items()):
      raise bad(_CHECKSUMS, "is not a map of array files to SHA-256 hex digests")
  bookkeeping = meta.get(_BOOKKEEPING_CHECKSUMS)
  if bookkeeping is not None and (not isinstance(bookkeeping, dict) or not all(
      _is_bookkeeping_name(k) and _is_hex_digest(v) for k, v in bookkeeping.items())):
    raise bad(_BOOKKEEPING_CHECKSUMS, "is not a map of Orbax's bookkeeping files (outside "
                                      f"{_ARRAYS}/) to SHA-256 hex digests")
  meta_checksum = meta.get(_META_CHECKSUM)
  if meta_checksum is not None and not _is_hex_digest(meta_checksum):
    raise bad(_META_CHECKSUM, f"is {_short(meta_checksum)}, not a SHA-256 hex digest")
  return dict(model_name=model_name, model_kwargs=model_kwargs, num_classes=num_classes,
              input_shape=input_shape, mean=norm["mean"], std=norm["std"],
              class_names=tuple(class_names), dataset=dataset, config=config,
              history=tuple(history), codes_dtype=codes_dtype, checksums=checksums,
              bookkeeping=bookkeeping, meta_checksum=meta_checksum, model_source=dict(source),
              model_attributes=dict(attributes))


def _is_bookkeeping_name(name: Any) -> bool:
  """A file directly in the bundle or in ``meta/``, other than the folders and the metadata."""
  if not isinstance(name, str):
    return False
  parts = name.split("/")
  if len(parts) == 2 and parts[0] == _META:
    return parts[1] not in ("", ".", "..", _META_FILE)
  return len(parts) == 1 and name not in ("", ".", "..", _ARRAYS, _META)


def _is_hex_digest(value: Any) -> bool:
  return (isinstance(value, str) and len(value) == 64
          and all(c in "0123456789abcdef" for c in value))


def _bundle_meta(bundle: Bundle) -> dict[str, Any]:
  meta = {
      "format": BUNDLE_FORMAT,
      "version": BUNDLE_VERSION,
      "model_name": str(bundle.model_name),
      "model_kwargs": _to_json(dict(bundle.model_kwargs), "model_kwargs"),
      "num_classes": int(bundle.num_classes),
      "input_shape": [int(d) for d in bundle.input_shape],
      "mean": [float(m) for m in np.ravel(bundle.mean)],
      "std": [float(s) for s in np.ravel(bundle.std)],
      "class_names": [str(c) for c in bundle.class_names],
      "dataset": str(bundle.dataset),
      "config": _to_json(dict(bundle.config), "config"),
      "history": _to_json(list(bundle.history), "history"),
      "codes_dtype": jnp.dtype(getattr(bundle.codes, "dtype", None)
                               or np.asarray(bundle.codes).dtype).name,
  }
  source = dict(bundle.model_source or model_source(bundle.model_name))
  if source:  # A model the user registered: where to find it again.
    meta["model_source"] = _to_json(source, "model_source")
  # The model as first saved, defaults included: the kwargs alone do not show a default
  # that changes later (a new release, an edited class). Kept from the bundle it came from.
  meta["model_attributes"] = _attributes(bundle)
  return meta


def _attributes(bundle: Bundle) -> dict[str, str]:
  """The model's attributes as the bundle will record them: those it carries from the
  save its weights came from, unless the model's spec was changed since (an attribute
  ``model_kwargs`` or ``num_classes`` gives now differs from that record, or is not in it:
  the record then describes another model), else
  :func:`~mnemonic_jax.models.model_attributes` of the model built now; ``{}`` where no
  model is built from its fields (the checks that follow say why, naming the field)."""
  try:
    now = model_attributes(bundle.model_name, int(bundle.num_classes),
                           dict(bundle.model_kwargs))
  except (ValueError, TypeError):
    return {}
  recorded = dict(bundle.model_attributes)
  given = [k for k in (*bundle.model_kwargs, "num_classes") if k in now]
  if recorded and all(recorded.get(k) == now[k] for k in given):
    return recorded
  return now


def _check_arrays(where: str, spec: str, abstract: Mapping[str, PyTree], params: PyTree,
                  batch_stats: PyTree, codes: Any, codes_shape: tuple[int, ...]) -> None:
  for what, actual, expected in (("params", params, abstract["params"]),
                                 ("batch_stats", batch_stats or {}, abstract["batch_stats"])):
    problem = _tree_mismatch(actual, expected)
    if problem:
      raise CheckpointError(f"{where}: {what} do not fit {spec}: {problem}")
  if tuple(np.shape(codes)) != codes_shape:
    raise CheckpointError(
        f"{where}: codes have shape {tuple(np.shape(codes))}, expected {codes_shape} "
        "(num_classes, *input_shape)")



def _check_dtypes(where: str, spec: str, abstract: Mapping[str, PyTree], params: PyTree,
                  batch_stats: PyTree, fix: str) -> None:
  """Refuses params or batch_stats of another dtype kind than the model's.

  Another floating-point dtype is kept (bfloat16 params of a float32 model save and load
  as bfloat16); integers, booleans or complex numbers for the model's floats are refused.

  Raises:
    CheckpointError: a leaf's dtype is of another kind; the message names the leaves.
  """
  for what, actual, expected in (("params", params, abstract["params"]),
                                 ("batch_stats", batch_stats or {}, abstract["batch_stats"])):
    problem = _dtype_mismatch(actual, expected)
    if problem:
      raise CheckpointError(f"{where}: {what} do not fit {spec}: {problem} (another "
                            f"floating-point dtype is kept, other kinds are not); {fix}")


def check_bundle(bundle: Bundle, name: str = "bundle", *, codes: bool = True) -> None:
  """Refuses a bundle whose fields do not describe one model: what ``save_bundle`` checks.

  The checks a hand-built :class:`~mnemonic_jax.bundle.Bundle` meets first where it
  enters the workflow (``evaluate``, ``predict``, ``forget_bundle``, the feature
  attacks), instead of Flax's shape error deep in the model or a "diverged model" for
  ``std=0``: every field as :func:`parse_bundle_meta` reads it back (``num_classes`` in
  range, ``input_shape``, ``mean`` and ``std`` one value or one per channel, history
  entries), a registered ``model_name`` that builds with ``model_kwargs``, ``params`` and
  ``batch_stats`` of the paths and shapes of that model (abstract shapes only, by
  ``jax.eval_shape``, cached per model: nothing is compiled or run), ``codes`` of shape
  ``(num_classes, *input_shape)``, dtypes of the model's kind, finite ``mean`` and
  finite positive ``std``. The arrays' values are not read (their finiteness is checked
  where it matters: ``forget_bundle``, ``save_bundle``, ``load_bundle``).

  Args:
    bundle: a Bundle (its type is checked by the caller: ``_validate.bundle``).
    name: what the caller calls it, starting each message.
    codes: check the codes too; False where they are not read (a forward pass on images).

  Raises:
    BadRequest: a field disagrees with the others or with the model; one line naming the
      field and what is expected.
    BadRequestType: a field JSON cannot write (``model_kwargs``, ``config``, ``history``).
  """
  fix = f"fix the {name}'s fields (a Bundle must describe its params, as save_bundle requires)"
  try:
    meta = _bundle_meta(bundle)
    if not codes:
      meta["codes_dtype"] = "float32"
    parse_bundle_meta(name, meta, fix)
    spec = (f"{_spec_str(bundle.model_name, meta['model_kwargs'], bundle.input_shape)} with "
            f"num_classes {int(bundle.num_classes)}")
    try:
      abstract = abstract_variables(bundle.model_name, bundle.num_classes, bundle.input_shape,
                                    bundle.model_kwargs)
    except CheckpointError as e:
      raise CheckpointError(f"{name}: model_name and model_kwargs do not make a model: {e}; "
                            "register the model with mnemonic_jax.register_model, or "
                            f"{fix}") from None
    codes_shape = (int(bundle.num_classes), *meta["input_shape"])
    shown = bundle.codes if codes else jax.ShapeDtypeStruct(codes_shape, np.float32)
    _check_arrays(name, spec, abstract, bundle.params, bundle.batch_stats, shown, codes_shape)
    _check_dtypes(name, spec, abstract, bundle.params, bundle.batch_stats, fix)
    _check_finite(name, fix, mean=bundle.mean, std=bundle.std)
  except CheckpointError as e:  # Nothing on disk: the request, not a checkpoint, is wrong.
    raise errors.BadRequest(str(e)) from None


#: What a save puts at the top of a bundle directory (Orbax's bookkeeping included).
#: ``force`` replaces only directories holding nothing else.
_BUNDLE_ENTRIES = frozenset({_ARRAYS, _META, "_CHECKPOINT_METADATA", "commit_success.txt"})
