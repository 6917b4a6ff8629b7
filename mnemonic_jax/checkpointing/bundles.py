"""Saving and loading bundles: :func:`save_bundle`, :func:`load_bundle`.

:func:`load_bundle` needs nothing but the path: it reads the metadata first
(:mod:`~mnemonic_jax.checkpointing.bundle_format`), builds the model from the registry,
derives the abstract variables with :func:`jax.eval_shape` and restores the arrays into
that abstract target, so a checkpoint that does not fit its own model spec fails with a
clear message instead of producing a broken model. :func:`save_bundle` checks the same
things before it writes, then writes atomically
(:mod:`~mnemonic_jax.checkpointing.outputs`).

One snapshot per load: a save replaces a bundle directory as a whole, by one rename
(:mod:`~mnemonic_jax.checkpointing.outputs`), and never puts an old directory back. The
loader opens the directory once and keeps that descriptor for the whole load: the metadata
and the array files it verifies are read through it, so they come from one save even if
the path is meanwhile replaced. Orbax reads the arrays by path, so once everything is read
the loader checks that the path still names the directory it opened (same device and
inode; the open descriptor keeps that inode from being reused). If it does not, another
save replaced the bundle during the load and what was read may mix two saves: the result
is dropped and the load starts again, at most :data:`LOAD_ATTEMPTS` times, then fails with
one line. An error met while the bundle was being replaced is treated the same way.
"""

from __future__ import annotations

import errno
import os
import pathlib
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mnemonic_jax import environment, errors
from mnemonic_jax import _files, _validate, distributed
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing.outputs import (
    _install, _staging_path, check_output, remove_stale_staging)
from mnemonic_jax.checkpointing._common import (
    CheckpointError, PathLike, _abs, _abs_output, _one_line, _remove)
from mnemonic_jax.checkpointing.bundle_format import (
    _ARRAYS, _BUNDLE_ENTRIES, _BUNDLE_HINT, _META, _bundle_checkpointer, _bundle_meta,
    _check_arrays, _check_dtypes, _meta_file, _read_bundle_meta, parse_bundle_meta)
from mnemonic_jax.checkpointing import integrity
from mnemonic_jax.checkpointing.checks import PARAMS_FILE_FACTOR, _check_finite
from mnemonic_jax.checkpointing.model_spec import _spec_str, abstract_variables
from mnemonic_jax.checkpointing.train_checkpoints import LOCK_FILE
from mnemonic_jax.checkpointing.trees import (
    _abstract, _jax_holds, _leaf_dtype, _path_str, _tree_mismatch, _uncommitted)
from mnemonic_jax.models import (
    ModelSourceError, available_models, changed_attributes, load_model_source,
    model_attributes)


def save_bundle(path: PathLike, bundle: Bundle, *, force: bool = False) -> pathlib.Path:
  """Writes a complete bundle to one directory, atomically.

  Args:
    path: the output directory (made absolute; parents are created).
    bundle: the bundle; its params and batch_stats must fit its own model spec (paths
      and shapes; their dtypes may be other floating-point ones than the model's, e.g.
      bfloat16, and are saved and loaded as they are) and its codes must have shape
      ``(num_classes, *input_shape)``.
    force: replace an existing bundle (or empty directory) at ``path``. Even with
      ``force`` a path holding anything else (a non-bundle, or a bundle with other files
      or directories put inside it) is refused rather than deleted. A symlink at ``path``
      is replaced itself; what it points to is left alone.

  Returns:
    The absolute path written.

  The metadata records the SHA-256 of every file the save writes and of itself
  (:mod:`~mnemonic_jax.checkpointing.integrity`), which :func:`load_bundle` verifies.

  With several JAX processes (:mod:`mnemonic_jax.distributed`) this is a collective:
  every process calls it with the same bundle, every process checks, process 0 alone
  writes, and the others return once it has (or raise if it failed).

  Raises:
    BadRequestType: ``path`` is not a path, or ``bundle`` not a :class:`Bundle`.
    CheckpointError: ``path`` exists and ``force`` is False (or it may not be replaced,
      see :func:`check_output`), the bundle's arrays do not fit its model (paths,
      shapes, or a dtype of another kind: integers for the model's floats), its params,
      batch_stats or codes hold NaN or inf, its mean or std is not finite (or std not
      > 0, or has neither one value nor one per channel), its metadata is not
      JSON-serialisable or would not load (see :func:`parse_bundle_meta`). Nothing is
      written in these cases.

  Example:
    >>> path = save_bundle(tmp / "digits_mlp", bundle)
    >>> load_bundle(path).num_classes
    10
  """
  output = _abs_output(path)
  _validate.bundle(bundle)
  meta = _bundle_meta(bundle)  # Validates JSON-ability before anything is written.
  parse_bundle_meta("bundle", meta, "fix the Bundle before saving it")  # What load reads.
  spec = _spec_str(bundle.model_name, meta["model_kwargs"], bundle.input_shape)
  abstract = abstract_variables(bundle.model_name, bundle.num_classes, bundle.input_shape,
                                bundle.model_kwargs)
  codes_shape = (int(bundle.num_classes), *meta["input_shape"])
  _check_arrays("bundle", spec, abstract, bundle.params, bundle.batch_stats, bundle.codes,
                codes_shape)
  _check_dtypes("bundle", spec, abstract, bundle.params, bundle.batch_stats,
                "cast them to the model's dtypes")
  _check_finite(
      "bundle", "refusing to write a bundle that cannot be used (a diverged training run, "
      "or forgetting lambdas too large?)", params=bundle.params,
      batch_stats=bundle.batch_stats, codes=bundle.codes, mean=bundle.mean, std=bundle.std)

  check_output(output, force=force)
  exists = output.exists() or output.is_symlink()
  if jax.process_count() > 1:  # Every process checked; process 0 alone writes.
    distributed.barrier("mnemonic_jax.save_bundle.checked")
    if jax.process_index() != 0:
      if not distributed.process_zero_says(False):
        raise CheckpointError(f"{output}: process 0 failed to write the bundle; see its "
                              "error")
      return output
    written = False
    try:
      _write_bundle(output, bundle, meta, exists)
      written = True
    finally:
      distributed.process_zero_says(written)
    return output
  _write_bundle(output, bundle, meta, exists)
  return output


def _write_bundle(output: pathlib.Path, bundle: Bundle, meta: dict, exists: bool) -> None:
  """The writing half of :func:`save_bundle`, once its checks have passed."""
  output.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_staging(output)
  staging = _staging_path(output)
  arrays = {"params": bundle.params, "batch_stats": bundle.batch_stats or {},
            "codes": bundle.codes}
  if jax.process_count() > 1:  # Orbax refuses this process's own jax Arrays then.
    arrays = jax.tree.map(np.asarray, arrays)
  try:
    _bundle_checkpointer().save(staging, args=ocp.args.Composite(**{
        _ARRAYS: ocp.args.StandardSave(arrays),
        _META: ocp.args.JsonSave(meta),
    }))
    # The arrays are final now: record the checksums in the metadata (still hidden).
    integrity.seal(staging, meta)
    _install(staging, output, replace=exists)
  finally:
    for leftover in output.parent.glob(f"{staging.name}*"):
      _remove(leftover)


def resolve_bundle_path(path: PathLike) -> pathlib.Path:
  """The bundle a path names: the path itself, or the bundle of a ``train`` workdir.

  A run directory of :func:`mnemonic_jax.workflow.train` (``mnemonic-jax train
  --workdir``) holds its bundle in ``WORKDIR/bundle``: given the workdir, that bundle is
  meant. Nothing is read but the directories' entries and the bundle marker.

  Args:
    path: a bundle directory or a train workdir.

  Returns:
    The absolute path of the bundle directory (not checked further: :func:`load_bundle`
    reads and verifies it).

  Raises:
    CheckpointError: the path does not exist (naming the previous bundle if an
      interrupted ``--force`` save left it aside), is a file, or is a train workdir whose
      run has not finished (no ``bundle`` yet).
  """
  path = _abs(path)
  try:
    os.stat(path)
  except OSError as e:
    hint = []
    if isinstance(e, FileNotFoundError) and not path.is_symlink() and path.parent.is_dir():
      hint = sorted(path.parent.glob(f".{path.name}.old-*"))
    if hint:
      raise CheckpointError(
          f"{path} does not exist, but an interrupted --force save left the previous "
          f"bundle at {hint[-1]}; rename it to {path}") from None
    # Missing, a symbolic link loop or to nothing, a folder on the way that may not be
    # searched: each in its own words.
    raise CheckpointError(_files.missing_line(path, f"check the path ({_BUNDLE_HINT})")
                          ) from None
  if not path.is_dir():
    raise CheckpointError(f"{path} is a file, not a bundle directory; {_BUNDLE_HINT}")
  try:
    _check_listable(path)
    bundle = path / "bundle"
    inner = bundle.is_dir() and (_meta_file(bundle).exists() or (bundle / _ARRAYS).is_dir())
    if _meta_file(path).exists():
      if inner:  # Two models under one path (a bundle copied into another): neither silently.
        raise CheckpointError(
            f"{path} is a bundle and also holds another, {bundle} (copied into it?): move "
            f"{bundle} out of {path}, then pass the one you mean")
      return path
    if inner:
      return bundle  # A bundle with its metadata lost is refused as damaged when loaded.
    workdir = (path / "train").is_dir() or (path / LOCK_FILE).exists()
    if workdir and os.path.lexists(bundle):  # A file, a link, a folder without a bundle.
      kind = ("a symbolic link" if bundle.is_symlink() else "a file" if not bundle.is_dir()
              else "a folder without a bundle's metadata or arrays")
      raise CheckpointError(
          f"{path} is a train workdir, but its bundle/ is {kind}, not the bundle its run "
          "writes there; move it elsewhere and run the same 'mnemonic-jax train' command "
          "again to write the bundle, then pass this workdir")
    if workdir:
      raise CheckpointError(
          f"{path} is a train workdir whose run has not finished (it has no bundle/ yet); "
          "run the same 'mnemonic-jax train' command again to finish it, then pass this "
          "workdir")
  except OSError as e:  # A folder inside that may not be searched.
    raise CheckpointError(_files.os_error_line("read", e.filename or path, e, "check the path")
                          ) from None
  return path


def _check_listable(directory: PathLike) -> None:
  """Raises ``PermissionError`` for a folder this user may not list and search."""
  if not os.access(directory, os.R_OK | os.X_OK):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(directory))


def _check_readable(path: pathlib.Path) -> None:
  """Refuses a bundle that this user may not read all of, before anything is read.

  Every folder must be listable and searchable and every file openable: a permission
  denied (or a symbolic link loop) is named for what it is, with its own fix
  (:func:`mnemonic_jax._files.os_error_line`), never as a truncated or corrupt bundle to
  re-create. Other failures are left to the reads that meet them.

  Raises:
    CheckpointError: a folder or file of the bundle may not be read.
  """
  def refuse(e: OSError) -> None:
    if _files.is_access_error(e):
      raise CheckpointError(_files.os_error_line("read", e.filename or path, e, "")) from None

  def unlisted(e: OSError) -> None:  # os.walk would skip a folder it may not list.
    refuse(e)

  try:
    for dirpath, _, filenames in os.walk(path, onerror=unlisted):
      _check_listable(dirpath)
      for name in filenames:
        full = os.path.join(dirpath, name)
        try:
          os.close(os.open(full, _READ_PROBE))
        except OSError as e:
          refuse(e if e.filename else OSError(e.errno, e.strerror, full))
  except PermissionError as e:
    refuse(e)


#: Opening a file to see that it may be read: never waits (a FIFO) nor takes a terminal.
_READ_PROBE = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


#: How many times :func:`load_bundle` reads a bundle that another save keeps replacing.
LOAD_ATTEMPTS = 5


def load_bundle(path: PathLike, *, import_model: bool = True) -> Bundle:
  """Loads a bundle written by :func:`save_bundle`, knowing nothing but its path.

  The JSON metadata is read first; the model is built from the registry and its abstract
  variables (``jax.eval_shape`` of ``model.init`` on one input of ``input_shape``) are the
  restore target, so arrays come back as jax Arrays on the default device, uncommitted like
  freshly trained ones (a program jitted for either serves both). Each array keeps the
  dtype it was saved with (bfloat16 params of a float32 model come back bfloat16, bit for
  bit); one that a jax Array of this process cannot hold (float64 without
  ``jax_enable_x64``) comes back as the numpy array it was saved from. The directory is
  only read.

  Every metadata field is checked first (:func:`parse_bundle_meta`: types, ranges, sizes,
  agreement with each other), then the metadata against its own SHA-256 and every array
  file against the SHA-256 recorded by :func:`save_bundle`, before any array is read
  (:mod:`~mnemonic_jax.checkpointing.integrity`: they catch accidental damage, not
  deliberate tampering, since whoever can write the files can recompute them). A bundle
  of the current format without its checksum record is refused; only one that declares
  an older format version loads with what it can verify, and an
  :class:`~mnemonic_jax.checkpointing.UnverifiedBundleWarning` saying what it could not:
  re-save it (load it and ``save_bundle`` it elsewhere) to give it the checksums.

  A symbolic link anywhere in the bundle (``meta/``, ``arrays/``, Orbax's bookkeeping
  files, any file or folder inside) is refused before anything is read: a save writes
  none, and through one another bundle's files would be read as this one's, which a save
  replacing that other bundle would then change
  (:func:`~mnemonic_jax.checkpointing.integrity.entries`). The path given (and its
  parents) may be a link. Every file read is checked to be a regular file (a FIFO is
  refused, never waited on or read without end) within a size cap: the metadata
  :data:`~mnemonic_jax.checkpointing.MAX_META_BYTES`, the array files together
  :data:`~mnemonic_jax.checkpointing.PARAMS_FILE_FACTOR` times the model's variables and
  codes plus 16 MiB.

  One snapshot: a load returns the bundle of one save, or raises, even while another
  process replaces the bundle with ``save_bundle(..., force=True)`` (see the module
  docstring: the directory is opened once, and a load that another save overlapped is
  started again, at most :data:`LOAD_ATTEMPTS` times).

  A model the user registered (not a built-in one) that is not registered in this
  process is registered first from the source the bundle records
  (:func:`mnemonic_jax.models.load_model_source`: the module is imported, or the config
  file run, that registered it when the bundle was saved). That runs the user's code, as
  any import does: load such bundles only from sources you trust, or pass
  ``import_model=False`` and register the model yourself.

  Args:
    path: a bundle directory, or the workdir of a finished ``train`` run (its ``bundle``
      is loaded; see :func:`resolve_bundle_path`).
    import_model: register an unregistered model from the source the bundle records.

  Returns:
    The bundle. Tuple fields come back as tuples; lists nested inside ``model_kwargs``,
    ``config`` and ``history`` entries come back as lists (JSON has no tuples).

  Raises:
    BadRequest: ``path`` is empty.
    CheckpointError: the path is missing, is not a bundle, has a foreign format version,
      metadata of the wrong type, out of range or disagreeing with itself or with the
      stored arrays (e.g. a codes dtype, a mean or std length that does not fit the
      channels, history entries that are not requests for existing classes), metadata
      that does not match its checksum or (current format) records none, an array
      file that is missing, changed (its checksum differs) or unexpected, a symbolic
      link inside the bundle, a file that is not a regular file or is larger than its
      cap, needs an unregistered model (whose recorded source is missing, fails or does
      not register it), does not fit its own model spec, is truncated or corrupt, holds
      non-finite values (NaN or inf in params, batch_stats or codes; a mean or std that
      is not finite, or a std that is not > 0), or was replaced by other saves during
      each of :data:`LOAD_ATTEMPTS` reads; a folder or file of it this user may not read
      (said so: a permission denied is not damage). One line naming the path and field.

  Warns:
    mnemonic_jax.errors.ModelSourceChangedWarning: the model built now differs from the
      one saved (an attribute the bundle records, defaults included, has another value
      now: a default of the library or of the model's class changed), or a user's model
      whose source files changed since (:func:`mnemonic_jax.models.load_model_source`).
  """
  path = resolve_bundle_path(path)
  _check_readable(path)  # A permission denied is not a damaged bundle.
  for _ in range(LOAD_ATTEMPTS):
    dir_fd = integrity.open_dir(path)
    try:
      opened = os.fstat(dir_fd)
      try:
        bundle = _load_snapshot(path, dir_fd, import_model)
      except CheckpointError:
        if _still_names(path, opened):
          raise
        continue  # Replaced while read: the error may come from the mix; read again.
      if _still_names(path, opened):
        return bundle
    finally:
      os.close(dir_fd)
  raise CheckpointError(
      f"{path} was replaced by another save during each of {LOAD_ATTEMPTS} attempts to read "
      "it; load it again once no other process is saving it")


def _still_names(path: pathlib.Path, opened: os.stat_result) -> bool:
  """Whether ``path`` (links followed) is still the directory opened as ``opened``."""
  try:
    now = os.stat(path)
  except OSError:
    return False
  return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _arrays_cap(target: Any) -> int:
  """The most bytes a bundle's array files may hold: a multiple of what they store."""
  stored = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(target))
  return PARAMS_FILE_FACTOR * stored + (16 << 20)


def _as_stored(target: Any, stored: Any) -> Any:
  """The restore target with each array's dtype as stored, so that nothing is cast.

  A dtype a jax Array of this process cannot hold (float64 without ``jax_enable_x64``) is
  restored as a numpy array of that dtype, as it was saved; the others as jax Arrays.
  """
  dtypes = {_path_str(p): _leaf_dtype(x)
            for p, x in jax.tree_util.tree_flatten_with_path(stored)[0]}

  def leaf(p, x):
    dtype = dtypes.get(_path_str(p))
    if dtype is None or not isinstance(x, jax.ShapeDtypeStruct) or _leaf_dtype(x) is None:
      return x  # A typed PRNG key, or a leaf the metadata says nothing of: as modelled.
    if not _jax_holds(dtype):
      return np.empty(x.shape, dtype)  # Orbax restores a numpy target as numpy.
    return jax.ShapeDtypeStruct(x.shape, dtype, sharding=x.sharding)

  return jax.tree_util.tree_map_with_path(leaf, target)


def _load_snapshot(path: pathlib.Path, dir_fd: int, import_model: bool) -> Bundle:
  """One read of a bundle (:func:`load_bundle`), its own files read through ``dir_fd``."""
  # Before anything is read: a link would make another directory's files this bundle's.
  integrity.check_no_links(path, dir_fd, _BUNDLE_ENTRIES)
  raw = _read_bundle_meta(path, dir_fd)
  meta = parse_bundle_meta(path, raw)
  integrity.verify_meta(path, raw)
  model_name, model_kwargs = meta["model_name"], meta["model_kwargs"]
  num_classes, input_shape = meta["num_classes"], meta["input_shape"]
  fields = {k: meta[k] for k in ("mean", "std", "class_names", "dataset", "config", "history")}
  _check_finite(str(path), "the bundle is corrupt; re-create it",
                mean=fields["mean"], std=fields["std"])

  spec = _spec_str(model_name, model_kwargs, input_shape)
  source = meta["model_source"]
  if model_name not in available_models() and source and import_model:
    try:
      load_model_source(model_name, source)
    except ModelSourceError as e:
      raise CheckpointError(
          f"{path}: model {model_name!r} is not registered and {e}; restore its source, or "
          "register the model with mnemonic_jax.register_model before loading") from None
  try:
    abstract = abstract_variables(model_name, num_classes, input_shape, model_kwargs)
  except CheckpointError as e:
    fix = ("register it with mnemonic_jax.register_model before loading"
           if model_name not in available_models() else "the bundle metadata is inconsistent")
    raise CheckpointError(f"{path}: {e}; {fix}") from None
  _warn_changed_attributes(path, model_name, num_classes, model_kwargs,
                           meta["model_attributes"])
  target = _abstract({
      "params": abstract["params"],
      "batch_stats": abstract["batch_stats"],
      "codes": jax.ShapeDtypeStruct((num_classes, *input_shape), meta["codes_dtype"]),
  })
  integrity.verify_arrays(path, dir_fd, meta["checksums"], _arrays_cap(target))
  integrity.verify_bookkeeping(path, dir_fd, meta["bookkeeping"])

  checkpointer = _bundle_checkpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata[_ARRAYS].tree
  except Exception as e:  # pylint: disable=broad-except
    environment.reraise(e)  # The machine's failure is not the checkpoint's.
    raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({_one_line(e)}); "
                          "re-create the bundle") from None
  problem = _tree_mismatch(stored, target)
  if problem:
    raise CheckpointError(f"{path}: stored arrays do not fit {spec}: {problem}; "
                          "the bundle is inconsistent, re-create it")
  _check_dtypes(str(path), spec, abstract, stored["params"], stored.get("batch_stats"),
                "the bundle is inconsistent, re-create it")
  target = _as_stored(target, stored)
  stored_dtype = getattr(stored.get("codes") if isinstance(stored, Mapping) else None,
                         "dtype", None)
  if stored_dtype is not None and jnp.dtype(stored_dtype) != meta["codes_dtype"]:
    raise CheckpointError(
        f"{path}: the codes are stored as {jnp.dtype(stored_dtype).name} but the metadata "
        f"says {meta['codes_dtype'].name}; the bundle is inconsistent, re-create it")
  try:
    arrays = checkpointer.restore(path, args=ocp.args.Composite(**{
        _ARRAYS: ocp.args.StandardRestore(target)}))[_ARRAYS]
  except Exception as e:  # pylint: disable=broad-except
    environment.reraise(e)  # The machine's failure is not the checkpoint's.
    raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({_one_line(e)}); "
                          "re-create the bundle") from None
  _check_finite(str(path), "the bundle is corrupt or was written from a diverged run; "
                "re-create it", params=arrays["params"], batch_stats=arrays.get("batch_stats"),
                codes=arrays["codes"])
  arrays = jax.tree.map(_uncommitted, arrays)  # As freshly trained arrays are.
  return Bundle(
      model_name=model_name,
      model_kwargs=model_kwargs,
      params=arrays["params"],
      batch_stats=arrays.get("batch_stats") or {},
      codes=arrays["codes"],
      num_classes=num_classes,
      input_shape=input_shape,
      model_source=source,
      model_attributes=meta["model_attributes"],
      **fields,
  )


def _warn_changed_attributes(path: pathlib.Path, model_name: str, num_classes: int,
                             model_kwargs: Mapping[str, Any],
                             recorded: Mapping[str, str]) -> None:
  """Warns (ModelSourceChangedWarning) when the model built now from the bundle's
  ``model_kwargs`` differs from the one recorded at saving: a default changed since."""
  changed = changed_attributes(recorded, model_attributes(model_name, num_classes,
                                                          model_kwargs))
  if changed:
    warnings.warn(
        f"{path}: model {model_name!r} built now differs from the one saved in this bundle "
        f"({'; '.join(changed)}): a default of the installed library or of the model's "
        "class changed since, so these weights may describe another model; install the "
        "release the bundle was saved with, or restore the model's defaults",
        errors.ModelSourceChangedWarning, stacklevel=3)

