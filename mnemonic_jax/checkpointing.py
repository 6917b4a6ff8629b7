"""Saving and loading bundles and training checkpoints with Orbax.

A *bundle* (see :class:`mnemonic_jax.bundle.Bundle`) is one directory, written by
one ``ocp.args.Composite`` with two items::

  <bundle>/
    _CHECKPOINT_METADATA, commit_success.txt   Orbax's own bookkeeping
    arrays/                                   StandardSave of {"params", "batch_stats", "codes"}
    meta/metadata                             JsonSave: format marker, version, model spec,
                                              normalisation, class names, config, history,
                                              and the SHA-256 of every file under arrays/

:func:`load_bundle` needs nothing but the path: it reads ``meta`` first, builds the model
from the registry, derives the abstract variables with :func:`jax.eval_shape` and restores
the arrays into that abstract target, so a checkpoint that does not fit its own model spec
fails with a clear message instead of producing a broken model.

Integrity: :func:`save_bundle` records the SHA-256 of every file under ``arrays/`` in the
metadata (``array_sha256``) and :func:`load_bundle` verifies them before reading any array,
so a flipped byte, a truncated or swapped chunk is refused with one line naming the file.
Bundles written before checksums were recorded carry none and still load (unverified).
Every metadata field is checked for type, range and agreement with the arrays (dtype, mean
and std length vs channels, history entries, class count) and every size it declares is
bounded (:data:`MAX_META_BYTES`, :data:`MAX_CODE_ELEMENTS`, ...) before anything is
allocated.

Writes are atomic. A bundle is first written (by Orbax, itself atomically) to a hidden
sibling ``.<name>.saving-<host>-<pid>-<id>`` and then renamed into place; ``force=True``
swaps the new directory with the old one in a single ``renameat2(RENAME_EXCHANGE)`` call on
Linux, so at every instant ``<bundle>`` is either the complete old or the complete new
bundle. A save killed half-way only leaves a hidden ``.<name>.saving-*`` directory behind,
which the next save of that bundle removes once its process is gone
(:func:`remove_stale_staging`). An output whose directory cannot be written is refused by
:func:`check_output` before any work.

Training checkpoints (:class:`TrainCheckpointer`) are a thin layer over
``ocp.CheckpointManager``: an arbitrary pytree of arrays (parameters, optax state, step
counter, typed ``jax.random.key`` keys) plus a JSON dict every ``save_every`` steps, the
last ``max_to_keep`` kept. Orbax writes each step to a temporary directory and renames it
when complete, so a killed run leaves the last complete step readable.

Every user error (missing path, not a bundle, corrupt or foreign checkpoint, existing
output without ``force``, arrays that do not fit the model) raises :class:`CheckpointError`
with one line naming the path and the fix, and writes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
import warnings
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

try:
  import fcntl
except ImportError:  # Not POSIX: runs are not locked.
  fcntl = None
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as save_policy_lib

from mnemonic_jax.bundle import ATTACH_CODES_EVENT, Bundle
from mnemonic_jax.data.sources import MAX_CLASSES
from mnemonic_jax.models import (
    ModelSourceError, available_models, create_model, load_model_source, model_source)

PyTree = Any
PathLike = str | os.PathLike

BUNDLE_FORMAT = "mnemonic-jax-bundle"
BUNDLE_VERSION = 1
TRAIN_FORMAT = "mnemonic-jax-train"
TRAIN_VERSION = 1

_ARRAYS = "arrays"
_META = "meta"
_META_FILE = "metadata"  # What ocp.JsonCheckpointHandler names its file.
_STATE = "state"
_CHECKSUMS = "array_sha256"

#: Bounds on what a file may declare, checked before anything is read or allocated.
MAX_META_BYTES = 64 << 20  #: A bundle's JSON metadata.
MAX_INPUT_RANK = 4  #: Dimensions of one input.
MAX_INPUT_DIM = 1 << 16  #: Each dimension of one input.
MAX_CODE_ELEMENTS = 1 << 31  #: num_classes * prod(input_shape), the codes' size.
#: A params file (import, pretrained weights) may hold at most this many times the
#: model's own number of elements (optimizer states and the like), plus a little.
PARAMS_FILE_FACTOR = 16


class CheckpointError(ValueError):
  """A checkpoint that is missing, foreign, corrupt, or would overwrite an existing one."""


# --------------------------------------------------------------------------------------
# Logging: Orbax logs dozens of INFO lines per save through absl. Nothing here changes
# logging on import: the command line (or the user) calls quiet_orbax_logging.


class _DropOrbaxRecords(logging.Filter):
  """Drops absl records below ``below`` that come from Orbax's or tensorstore's sources."""

  def __init__(self, below: int):
    super().__init__()
    self.below = below

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= self.below:
      return True
    path = record.pathname or ""
    return not any(f"{os.sep}{lib}{os.sep}" in path for lib in ("orbax", "tensorstore"))


def quiet_orbax_logging(quiet: bool = True, *, below: int = logging.WARNING) -> None:
  """Silences (or restores) Orbax's absl logging below a level.

  Only records emitted from Orbax's (and tensorstore's) source files are affected, so the
  caller's own absl logging is left alone. Nothing calls this on import; the
  ``mnemonic-jax`` command line drops every such record (its stderr carries one error line
  or progress bars, nothing else).

  Args:
    quiet: ``True`` to drop the records, ``False`` to let them all through again.
    below: records of a lower level are dropped (``logging.WARNING``: INFO and DEBUG;
      ``logging.CRITICAL + 1``: everything).
  """
  logger = logging.getLogger("absl")
  for existing in [f for f in logger.filters if isinstance(f, _DropOrbaxRecords)]:
    logger.removeFilter(existing)
  if quiet:
    logger.addFilter(_DropOrbaxRecords(below))


def _is_stray_tensorstore_callback(unraisable: Any) -> bool:
  """A tensorstore read callback that fired after Orbax closed its event loop."""
  if not isinstance(unraisable.exc_value, RuntimeError):
    return False
  if str(unraisable.exc_value) != "Event loop is closed":
    return False
  frames = [code.co_name for code in _walk_tb(unraisable.exc_traceback)]
  return "call_soon_threadsafe" in frames


def _walk_tb(tb):
  while tb is not None:
    yield tb.tb_frame.f_code
    tb = tb.tb_next


def _silence_stray_tensorstore_callbacks() -> None:
  """Hides the 'Event loop is closed' tracebacks a failed Orbax read prints later.

  When a tensorstore read fails (a truncated or deleted array file), Orbax's restore
  raises and closes its event loop while the other reads are still completing; their
  callbacks then report ``RuntimeError: Event loop is closed`` through
  ``sys.unraisablehook``, before or after our one-line error. Called before every Orbax
  read, this chains a filter in front of the current hook (once) that drops exactly those
  reports; everything else goes through to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_mnemonic_jax_filter", False):
    return

  def hook(unraisable):
    if not _is_stray_tensorstore_callback(unraisable):
      previous(unraisable)

  hook._mnemonic_jax_filter = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


# --------------------------------------------------------------------------------------
# Small helpers.


def _abs(path: PathLike) -> pathlib.Path:
  """Absolute path (Orbax requires them) with ``~`` expanded; symlinks are kept."""
  return pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


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


def _path_str(path: tuple[Any, ...]) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"


def _is_key_dtype(dtype: Any) -> bool:
  try:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
  except TypeError:
    return False


def _stored_shape(leaf: Any) -> tuple[int, ...] | None:
  """Shape a leaf has on disk: a typed PRNG key is stored as its ``key_data``."""
  if isinstance(leaf, (int, float, complex, bool)):
    return ()  # Orbax stores Python scalars as 0-d values.
  shape = getattr(leaf, "shape", None)
  if shape is None:
    return None
  if _is_key_dtype(leaf.dtype):
    return tuple(jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, leaf.dtype)).shape)
  return tuple(shape)


def _tree_mismatch(actual: PyTree, expected: PyTree) -> str | None:
  """Describes how ``actual``'s paths and shapes differ from ``expected``'s, or None.

  Both trees are compared leaf by leaf on their paths (``Dense_0/kernel``) and stored
  shapes; containers are not compared by type, so a FrozenDict matches a dict.
  """
  flat_actual = {_path_str(p): _stored_shape(x) for p, x in
                 jax.tree_util.tree_flatten_with_path(actual)[0]}
  flat_expected = {_path_str(p): _stored_shape(x) for p, x in
                   jax.tree_util.tree_flatten_with_path(expected)[0]}
  problems = []
  missing = sorted(set(flat_expected) - set(flat_actual))
  extra = sorted(set(flat_actual) - set(flat_expected))
  if missing:
    problems.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
  if extra:
    problems.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
  wrong = [k for k in sorted(set(flat_actual) & set(flat_expected))
           if flat_actual[k] != flat_expected[k]]
  for k in wrong[:3]:
    problems.append(f"{k} has shape {flat_actual[k]}, expected {flat_expected[k]}")
  if len(wrong) > 3:
    problems.append(f"{len(wrong) - 3} more shape mismatches")
  return "; ".join(problems) or None


def _abstract(tree: PyTree) -> PyTree:
  """Abstract restore target: ShapeDtypeStructs placed on the default device if unplaced.

  Leaves that are already ``jax.ShapeDtypeStruct`` keep their sharding when they have one;
  concrete arrays are replaced by their shape, dtype and (for jax Arrays) sharding.
  """
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      return x
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = device
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


def _spec_str(model_name: str, model_kwargs: Mapping[str, Any], input_shape: Sequence[int]) -> str:
  return f"model {model_name!r} {dict(model_kwargs)} on inputs {tuple(input_shape)}"


def abstract_variables(model_name: str, num_classes: int, input_shape: Sequence[int],
                       model_kwargs: Mapping[str, Any] | None = None) -> dict[str, PyTree]:
  """Shapes and dtypes of a registered model's variables, without allocating them.

  Args:
    model_name: registry name (see :func:`mnemonic_jax.models.create_model`).
    num_classes: number of output logits.
    input_shape: shape of one input, e.g. ``(28, 28, 1)``.
    model_kwargs: the model's other attributes.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` of ``jax.ShapeDtypeStruct`` (``batch_stats``
    is ``{}`` for models without BatchNorm).

  Raises:
    CheckpointError: the model is not registered or cannot take such inputs.
  """
  model_kwargs = dict(model_kwargs or {})
  try:
    kwargs_key = json.dumps(model_kwargs, sort_keys=True, default=repr)
  except (TypeError, ValueError):
    kwargs_key = None
  factory = _registered(model_name)
  key = (model_name, int(num_classes), tuple(int(d) for d in input_shape), kwargs_key)
  entry = _ABSTRACT.get(key) if kwargs_key is not None else None
  if entry is None or entry[0] is not factory:  # Re-registered since: build again.
    entry = (factory, _abstract_variables(model_name, num_classes, input_shape, model_kwargs))
    if kwargs_key is not None:
      _ABSTRACT[key] = entry
  return jax.tree.map(lambda leaf: leaf, entry[1])  # A fresh tree of the same leaves.


#: (model, classes, input shape, kwargs) -> (its factory, abstract variables): a load and
#: the save that follows (``mnemonic-jax forget``) trace ``model.init`` once.
_ABSTRACT: dict[tuple[Any, ...], tuple[Any, dict[str, PyTree]]] = {}


def _registered(model_name: str) -> Any:
  from mnemonic_jax import models  # pylint: disable=import-outside-toplevel

  return models._REGISTRY.get(model_name)  # pylint: disable=protected-access


def _abstract_variables(model_name: str, num_classes: int, input_shape: Sequence[int],
                        model_kwargs: Mapping[str, Any]) -> dict[str, PyTree]:
  spec = _spec_str(model_name, model_kwargs, input_shape)
  try:
    model = create_model(model_name, int(num_classes), **model_kwargs)
    x = jax.ShapeDtypeStruct((1, *(int(d) for d in input_shape)), jnp.float32)
    # The key is made inside the trace: nothing is compiled or run.
    variables = jax.eval_shape(
        lambda inputs: model.init(jax.random.key(0), inputs, train=False), x)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"cannot build {spec}: {_one_line(e)}") from None
  variables = dict(variables)
  return {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}


# --------------------------------------------------------------------------------------
# Atomic directory replacement.

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


def _remove(path: pathlib.Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path, ignore_errors=True)
  elif path.exists() or path.is_symlink():
    path.unlink()


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
          "pass --force (force=True) to replace it") from None
  elif _exchange(staging, output):
    _remove(staging)  # Now holds the old bundle.
  else:
    # No atomic exchange here: for an instant only the two hidden siblings exist; both
    # are complete bundles and load_bundle's error message points at the old one.
    old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(output, old)
    os.rename(staging, output)
    _remove(old)
  _fsync_dir(output.parent)


# --------------------------------------------------------------------------------------
# Staging directories: where a save is written before it is renamed into place.

#: This machine, in staging names (so only its own dead processes' leftovers are removed).
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_STAGING = re.compile(r"^\.(?P<name>.+)\.saving-(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?"
                      r"[0-9a-f]{8}(?:\.orbax-checkpoint-tmp.*)?$")
#: Staging directories named without a process (older releases) are removed past this age.
_UNOWNED_STAGING_AGE_S = 3600.0
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def _staging_path(output: pathlib.Path) -> pathlib.Path:
  """A hidden sibling naming this machine and process: ``.<name>.saving-<host>-<pid>-<id>``."""
  return output.parent / (f".{output.name}.saving-{_HOST_TAG}-{os.getpid()}-"
                          f"{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError):
    return True
  return True


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
      stale = match["host"] == _HOST_TAG and not _pid_alive(int(match["pid"]))
    if stale:
      _remove(entry)
      removed.append(entry)
  return removed


def remove_orbax_temporaries(directory: PathLike) -> list[pathlib.Path]:
  """Removes Orbax's unfinished step directories (``*.orbax-checkpoint-tmp*``) in a directory.

  Only safe while no one else writes there: :func:`mnemonic_jax.workflow.train` calls it
  on its checkpoint directory while it holds the workdir's lock (:func:`workdir_lock`).

  Args:
    directory: a training checkpoint directory (it need not exist).

  Returns:
    The paths removed.
  """
  directory = _abs(directory)
  try:
    entries = list(directory.iterdir())
  except OSError:
    return []
  removed = [entry for entry in entries if _ORBAX_TMP in entry.name]
  for entry in removed:
    _remove(entry)
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


# --------------------------------------------------------------------------------------
# Bundles.


@functools.lru_cache(maxsize=1)
def _bundle_checkpointer() -> ocp.Checkpointer:
  """The (synchronous, stateless) checkpointer of bundles, made once per process."""
  handler = ocp.CompositeCheckpointHandler(
      **{_ARRAYS: ocp.StandardCheckpointHandler(), _META: ocp.JsonCheckpointHandler()})
  return ocp.Checkpointer(handler)


def _meta_file(path: pathlib.Path) -> pathlib.Path:
  return path / _META / _META_FILE


def _marked_bundle_meta(path: pathlib.Path) -> dict[str, Any] | None:
  """A directory's bundle JSON item if it carries the bundle marker (any version).

  None if there is none, or if it is larger than :data:`MAX_META_BYTES` (not read then).
  """
  try:
    if _meta_file(path).stat().st_size > MAX_META_BYTES:
      return None
    meta = _bundle_checkpointer().restore(
        path, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT:
    return meta
  return None


def _read_bundle_meta(path: pathlib.Path) -> dict[str, Any]:
  """Reads and checks a bundle's JSON item (size, format marker and version)."""
  try:
    size = _meta_file(path).stat().st_size
  except OSError:
    size = 0
  if size > MAX_META_BYTES:
    raise CheckpointError(
        f"{_meta_file(path)} holds {size} bytes, more than the {MAX_META_BYTES} a bundle's "
        "metadata may have (corrupt or not a bundle); re-create the bundle")
  meta = _marked_bundle_meta(path)
  if meta is None:
    raise CheckpointError(
        f"{path} is not a mnemonic-jax bundle (no readable '{BUNDLE_FORMAT}' metadata); "
        f"{_BUNDLE_HINT}")
  version = meta.get("version")
  if version != BUNDLE_VERSION:
    raise CheckpointError(
        f"{path} is a bundle of format version {version!r}, but this mnemonic_jax reads "
        f"version {BUNDLE_VERSION}; load it with the mnemonic_jax release that wrote it")
  return meta


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float | None:
  """A number (or, as older bundles may hold, a numeric string) as float; else None."""
  if isinstance(value, (bool, np.bool_)):
    return None
  if isinstance(value, (int, float, np.integer, np.floating)):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      return None
  return None


def _short(value: Any, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _input_shape_problem(input_shape: Any, num_classes: int) -> str | None:
  """Why an input shape (with ``num_classes``) is not supported, or None."""
  if (not isinstance(input_shape, (list, tuple)) or not 1 <= len(input_shape) <= MAX_INPUT_RANK
      or not all(_is_int(d) and 1 <= d <= MAX_INPUT_DIM for d in input_shape)):
    return (f"is {_short(input_shape)}, not 1 to {MAX_INPUT_RANK} integers in "
            f"[1, {MAX_INPUT_DIM}]")
  elements = int(num_classes) * math.prod(int(d) for d in input_shape)
  if elements > MAX_CODE_ELEMENTS:
    return (f"is {tuple(int(d) for d in input_shape)}: with {num_classes} classes the codes "
            f"would hold {elements} elements, more than the {MAX_CODE_ELEMENTS} supported")
  return None


def check_input_shape(input_shape: Any, num_classes: int, what: str = "input_shape") -> None:
  """Refuses an input shape (and class count) whose codes would be absurdly large.

  Args:
    input_shape: the shape of one input.
    num_classes: the number of classes (codes are ``(num_classes, *input_shape)``).
    what: how the message names the shape.

  Raises:
    CheckpointError: the shape is not 1 to :data:`MAX_INPUT_RANK` integers in
      ``[1, MAX_INPUT_DIM]``, or the codes would hold more than
      :data:`MAX_CODE_ELEMENTS` elements.
  """
  problem = _input_shape_problem(input_shape, num_classes)
  if problem:
    raise CheckpointError(f"{what} {problem}")


def check_normalisation(mean: Sequence[float], std: Sequence[float], channels: int,
                        where: str = "", fix: str = "") -> None:
  """Refuses a mean or std that has neither one value nor one per channel.

  Args:
    mean, std: the per-channel normalisation.
    channels: the number of channels of one input (its last dimension).
    where: a path (or empty) that starts the message.
    fix: what the user should do, ending the message.

  Raises:
    CheckpointError: ``len(mean)`` or ``len(std)`` is neither 1 nor ``channels``.
  """
  where = f"{where}: " if where else ""
  for field, values in (("mean", mean), ("std", std)):
    count = len(np.ravel(np.asarray(values, dtype=object)))
    if count not in (1, int(channels)):
      raise CheckpointError(
          f"{where}normalisation {field} has {count} values but the inputs have {channels} "
          f"channel{'s' if channels != 1 else ''}; give one value, or one per channel"
          + (f"; {fix}" if fix else ""))


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
    ``checksums`` (``{relative path: sha256 hex}``, or None for bundles written before
    checksums were recorded) and ``model_source`` (``{}`` for a built-in model).

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
    attached = isinstance(entry, dict) and entry.get("event") == ATTACH_CODES_EVENT
    if attached and classes != []:
      raise bad("history", f"entry {i} is {_short(entry)}, codes attached with 'classes' "
                           "not an empty list")
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
  if (not isinstance(source, dict) or len(source) > 1
      or not all(k in ("import", "file") and isinstance(v, str) and v
                 for k, v in source.items())):
    raise bad("model_source", f"is {_short(source)}, not {{'import': module}} or "
                              "{'file': path}")
  checksums = meta.get(_CHECKSUMS)
  if checksums is not None:
    if not isinstance(checksums, dict) or not checksums or not all(
        isinstance(k, str) and k.startswith(f"{_ARRAYS}/") and ".." not in k.split("/")
        and isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
        for k, v in checksums.items()):
      raise bad(_CHECKSUMS, "is not a map of array files to SHA-256 hex digests")
  return dict(model_name=model_name, model_kwargs=model_kwargs, num_classes=num_classes,
              input_shape=input_shape, mean=norm["mean"], std=norm["std"],
              class_names=tuple(class_names), dataset=dataset, config=config,
              history=tuple(history), codes_dtype=codes_dtype, checksums=checksums,
              model_source=dict(source))


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _array_files(path: pathlib.Path) -> dict[str, pathlib.Path]:
  """Every file under ``path/arrays``, keyed by its path relative to ``path``."""
  found = {}
  for dirpath, dirnames, filenames in os.walk(path / _ARRAYS):
    dirnames.sort()
    for name in sorted(filenames):
      full = pathlib.Path(dirpath) / name
      found[full.relative_to(path).as_posix()] = full
  return found


def array_checksums(path: PathLike) -> dict[str, str]:
  """The SHA-256 of every file under a bundle's ``arrays/`` (what save_bundle records).

  Args:
    path: a bundle directory.

  Returns:
    ``{"arrays/d/...": hex digest, ...}``, sorted by path.
  """
  return {rel: _sha256(full) for rel, full in _array_files(_abs(path)).items()}


def _verify_checksums(path: pathlib.Path, recorded: Mapping[str, str]) -> None:
  """Refuses array files that are missing, changed or not among those recorded."""
  present = _array_files(path)
  fix = "the bundle is truncated or corrupt; re-create it or restore it from a copy"
  for rel in sorted(recorded):
    if rel not in present:
      raise CheckpointError(f"{path}: array file {rel} is missing; {fix}")
    if _sha256(present[rel]) != recorded[rel]:
      raise CheckpointError(
          f"{path}: array file {rel} does not match the SHA-256 checksum recorded when the "
          f"bundle was saved; {fix}")
  extra = sorted(set(present) - set(recorded))
  if extra:
    raise CheckpointError(
        f"{path}: array file {extra[0]} is not among the files recorded when the bundle was "
        "saved; remove it, or re-create the bundle")


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
  return meta


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


#: What :func:`save_bundle` puts at the top of a bundle directory (Orbax's bookkeeping
#: included). ``force`` replaces only directories holding nothing else.
_BUNDLE_ENTRIES = frozenset({_ARRAYS, _META, "_CHECKPOINT_METADATA", "commit_success.txt"})


def _why_not_replaceable(path: pathlib.Path) -> str | None:
  """Why ``force`` may not replace ``path``, or None if it may.

  Replaceable: an empty directory, or a bundle (any version) holding nothing but what
  :func:`save_bundle` writes. A bundle with anything else in it (a file, a nested bundle
  or dataset put there by hand) is refused, since replacing it would delete that too.
  """
  if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
    return None
  if not path.is_dir() or _marked_bundle_meta(path) is None:
    return "is not a mnemonic-jax bundle"
  foreign = sorted(p.name for p in path.iterdir() if p.name not in _BUNDLE_ENTRIES)
  if foreign:
    shown = ", ".join(repr(name) for name in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    return f"is a bundle but also holds {shown}, which replacing it would delete"
  return None


def check_output(path: PathLike, *, force: bool = False) -> pathlib.Path:
  """Checks that :func:`save_bundle` may write ``path``, before any work is done.

  Args:
    path: the bundle directory to be written.
    force: whether an existing bundle there may be replaced.

  Returns:
    The absolute path.

  Raises:
    CheckpointError: ``path`` exists and ``force`` is False, it exists and is not a
      bundle that may be replaced (see :func:`save_bundle`), or its nearest existing
      ancestor is not a directory this process can write in. Nothing is left behind (the
      writability probe is a directory created and removed at once).
  """
  output = _abs(path)
  if not (output.exists() or output.is_symlink()):
    _check_writable(output)
    return output
  if not force:
    raise CheckpointError(
        f"{output} already exists; pass --force (force=True) to replace it, "
        "or choose another output")
  reason = _why_not_replaceable(output)
  if reason is not None:
    raise CheckpointError(
        f"{output} exists and {reason}; refusing to replace it even with --force; "
        "remove it yourself or choose another output")
  _check_writable(output)
  return output


def _count_nonfinite(leaf: Any) -> int:
  """Number of NaN/inf entries of a floating-point leaf (0 for other dtypes).

  Counted on the host (no compilation per shape), except for arrays spread over several
  hosts, which are counted where they live.
  """
  if isinstance(leaf, jax.Array):
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
      return 0
    if not leaf.is_fully_addressable:
      return int(leaf.size - jnp.count_nonzero(jnp.isfinite(leaf)))
  array = np.asarray(leaf)
  if not jnp.issubdtype(array.dtype, jnp.inexact):  # jnp's knows bfloat16 and float8 too.
    return 0
  return int(array.size - np.count_nonzero(np.isfinite(array)))


def nonfinite_leaves(tree: PyTree) -> list[tuple[str, int]]:
  """``[(path, count), ...]`` of the leaves of ``tree`` holding NaN or inf values.

  Args:
    tree: a pytree of arrays.

  Returns:
    One ``("Dense_0/kernel", number of non-finite entries)`` per offending leaf, in
    tree order; empty if every entry is finite.
  """
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    count = _count_nonfinite(leaf)
    if count:
      found.append((_path_str(path), count))
  return found


def _check_finite(where: str, fix: str, *, params: PyTree = None, batch_stats: PyTree = None,
                  codes: Any = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> None:
  """Refuses non-finite arrays and normalisation (one line naming the field and ``fix``).

  ``where`` (a path, or empty) starts the message.

  Raises:
    CheckpointError: an array of ``params``, ``batch_stats`` or ``codes`` holds NaN or inf,
      ``mean`` or ``std`` holds a non-finite value, or ``std`` a value that is not > 0.
  """
  where = f"{where}: " if where else ""
  for field, tree in (("params", params), ("batch_stats", batch_stats), ("codes", codes)):
    if tree is None:
      continue
    bad = nonfinite_leaves({field: tree})
    if bad:
      total = sum(count for _, count in bad)
      raise CheckpointError(
          f"{where}{bad[0][0]} holds {bad[0][1]} non-finite value(s) (NaN or inf)"
          + (f", {total} in {len(bad)} {field} arrays" if len(bad) > 1 else "") + f"; {fix}")
  for field, values in (("mean", mean), ("std", std)):
    if values is None:
      continue
    values = [float(v) for v in np.ravel(np.asarray(values, dtype=np.float64))]
    if not values or not all(np.isfinite(values)):
      raise CheckpointError(
          f"{where}normalisation {field} {values} must hold finite numbers; {fix}")
    if field == "std" and not all(v > 0 for v in values):
      raise CheckpointError(
          f"{where}normalisation std {values} must be positive (images are divided by "
          f"it); {fix}")


def save_bundle(path: PathLike, bundle: Bundle, *, force: bool = False) -> pathlib.Path:
  """Writes a complete bundle to one directory, atomically.

  Args:
    path: the output directory (made absolute; parents are created).
    bundle: the bundle; its params and batch_stats must fit its own model spec and its
      codes must have shape ``(num_classes, *input_shape)``.
    force: replace an existing bundle (or empty directory) at ``path``. Even with
      ``force`` a path holding anything else (a non-bundle, or a bundle with other files
      or directories put inside it) is refused rather than deleted. A symlink at ``path``
      is replaced itself; what it points to is left alone.

  Returns:
    The absolute path written.

  The metadata records the SHA-256 of every array file, which :func:`load_bundle`
  verifies.

  Raises:
    CheckpointError: ``path`` exists and ``force`` is False (or it may not be replaced,
      see :func:`check_output`), the bundle's arrays do not fit its model, its params,
      batch_stats or codes hold NaN or inf, its mean or std is not finite (or std not
      > 0, or has neither one value nor one per channel), its metadata is not
      JSON-serialisable or would not load (see :func:`parse_bundle_meta`). Nothing is
      written in these cases.

  Example:
    >>> path = save_bundle(tmp / "digits_mlp", bundle)
    >>> load_bundle(path).num_classes
    10
  """
  output = _abs(path)
  meta = _bundle_meta(bundle)  # Validates JSON-ability before anything is written.
  parse_bundle_meta("bundle", meta, "fix the Bundle before saving it")  # What load reads.
  spec = _spec_str(bundle.model_name, meta["model_kwargs"], bundle.input_shape)
  abstract = abstract_variables(bundle.model_name, bundle.num_classes, bundle.input_shape,
                                bundle.model_kwargs)
  codes_shape = (int(bundle.num_classes), *meta["input_shape"])
  _check_arrays("bundle", spec, abstract, bundle.params, bundle.batch_stats, bundle.codes,
                codes_shape)
  _check_finite(
      "bundle", "refusing to write a bundle that cannot be used (a diverged training run, "
      "or forgetting lambdas too large?)", params=bundle.params,
      batch_stats=bundle.batch_stats, codes=bundle.codes, mean=bundle.mean, std=bundle.std)

  check_output(output, force=force)
  exists = output.exists() or output.is_symlink()

  output.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_staging(output)
  staging = _staging_path(output)
  arrays = {"params": bundle.params, "batch_stats": bundle.batch_stats or {},
            "codes": bundle.codes}
  try:
    _bundle_checkpointer().save(staging, args=ocp.args.Composite(**{
        _ARRAYS: ocp.args.StandardSave(arrays),
        _META: ocp.args.JsonSave(meta),
    }))
    # The arrays are final now: record their checksums in the metadata (still hidden).
    meta[_CHECKSUMS] = array_checksums(staging)
    ocp.JsonCheckpointHandler(filename=_META_FILE).save(
        staging / _META, args=ocp.args.JsonSave(meta))
    _install(staging, output, replace=exists)
  finally:
    for leftover in output.parent.glob(f"{staging.name}*"):
      _remove(leftover)
  return output


#: What every "this is not a bundle" message suggests instead.
_BUNDLE_HINT = ("pass a bundle: the --workdir of 'mnemonic-jax train' (or its bundle/), the "
                "--output of forget, import or attach-codes, or a directory written by "
                "mnemonic_jax.save_bundle")


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
  if not path.exists():
    hint = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    if hint:
      raise CheckpointError(
          f"{path} does not exist, but an interrupted --force save left the previous "
          f"bundle at {hint[-1]}; rename it to {path}")
    raise CheckpointError(f"{path} does not exist; check the path ({_BUNDLE_HINT})")
  if not path.is_dir():
    raise CheckpointError(f"{path} is a file, not a bundle directory; {_BUNDLE_HINT}")
  if _meta_file(path).exists():
    return path
  bundle = path / "bundle"
  if bundle.is_dir() and _meta_file(bundle).exists():
    return bundle
  if (path / "train").is_dir() or (path / LOCK_FILE).exists():
    raise CheckpointError(
        f"{path} is a train workdir whose run has not finished (it has no bundle/ yet); "
        "run the same 'mnemonic-jax train' command again to finish it, then pass this "
        "workdir")
  return path


def load_bundle(path: PathLike, *, import_model: bool = True) -> Bundle:
  """Loads a bundle written by :func:`save_bundle`, knowing nothing but its path.

  The JSON metadata is read first; the model is built from the registry and its abstract
  variables (``jax.eval_shape`` of ``model.init`` on one input of ``input_shape``) are the
  restore target, so arrays come back as jax Arrays of the model's dtypes on the default
  device. The directory is only read.

  Every metadata field is checked first (:func:`parse_bundle_meta`: types, ranges, sizes,
  agreement with each other), then every array file against the SHA-256 recorded by
  :func:`save_bundle`, before any array is read. Bundles written before checksums were
  recorded (no ``array_sha256`` in their metadata) still load, unverified: re-save one
  (load it and ``save_bundle`` it elsewhere) to give it checksums.

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
    CheckpointError: the path is missing, is not a bundle, has a foreign format version,
      metadata of the wrong type, out of range or disagreeing with itself or with the
      stored arrays (e.g. a codes dtype, a mean or std length that does not fit the
      channels, history entries that are not requests for existing classes), an array
      file that is missing, changed (its checksum differs) or unexpected, needs an
      unregistered model (whose recorded source is missing, fails or does not register
      it), does not fit its own model spec, is truncated or corrupt, or
      holds non-finite values (NaN or inf in params, batch_stats or codes; a mean or std
      that is not finite, or a std that is not > 0). One line naming the path and field.
  """
  path = resolve_bundle_path(path)
  _silence_stray_tensorstore_callbacks()
  meta = parse_bundle_meta(path, _read_bundle_meta(path))
  model_name, model_kwargs = meta["model_name"], meta["model_kwargs"]
  num_classes, input_shape = meta["num_classes"], meta["input_shape"]
  fields = {k: meta[k] for k in ("mean", "std", "class_names", "dataset", "config", "history")}
  _check_finite(str(path), "the bundle is corrupt; re-create it",
                mean=fields["mean"], std=fields["std"])
  if meta["checksums"] is not None:  # Bundles saved before checksums were recorded: none.
    _verify_checksums(path, meta["checksums"])

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
  target = _abstract({
      "params": abstract["params"],
      "batch_stats": abstract["batch_stats"],
      "codes": jax.ShapeDtypeStruct((num_classes, *input_shape), meta["codes_dtype"]),
  })

  checkpointer = _bundle_checkpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata[_ARRAYS].tree
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({_one_line(e)}); "
                          "re-create the bundle") from None
  problem = _tree_mismatch(stored, target)
  if problem:
    raise CheckpointError(f"{path}: stored arrays do not fit {spec}: {problem}; "
                          "the bundle is inconsistent, re-create it")
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
    raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({_one_line(e)}); "
                          "re-create the bundle") from None
  _check_finite(str(path), "the bundle is corrupt or was written from a diverged run; "
                "re-create it", params=arrays["params"], batch_stats=arrays.get("batch_stats"),
                codes=arrays["codes"])
  return Bundle(
      model_name=model_name,
      model_kwargs=model_kwargs,
      params=arrays["params"],
      batch_stats=arrays.get("batch_stats") or {},
      codes=arrays["codes"],
      num_classes=num_classes,
      input_shape=input_shape,
      model_source=source,
      **fields,
  )


# --------------------------------------------------------------------------------------
# Importing parameters trained elsewhere.


def _params_file_limit(abstract: PyTree) -> int:
  """The most elements a params file for a model of ``abstract`` variables may hold."""
  elements = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract))
  return PARAMS_FILE_FACTOR * elements + (1 << 20)


def _read_params_file(path: pathlib.Path, max_elements: int | None = None) -> PyTree:
  """Reads a params tree from an Orbax PyTree directory or a flax msgpack file.

  Args:
    path: the directory or file.
    max_elements: the most array elements an Orbax directory's metadata may declare in
      all, checked before anything is restored (a msgpack file cannot declare more than it
      holds); None for no bound.

  Raises:
    CheckpointError: missing, unreadable, or declaring more than ``max_elements``.
  """
  if not path.exists():
    raise CheckpointError(f"{path} does not exist; pass an Orbax checkpoint directory or a "
                          "flax msgpack file of parameters")
  if path.is_dir():
    _silence_stray_tensorstore_callbacks()
    if max_elements is not None:
      try:
        stored = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(path).item_metadata
        stored = getattr(stored, "tree", stored)
        declared = sum(math.prod(int(d) for d in leaf.shape)
                       for leaf in jax.tree.leaves(stored) if hasattr(leaf, "shape"))
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(
            f"{path} is not a readable Orbax PyTree checkpoint ({_one_line(e)}); pass the "
            "directory given to StandardCheckpointer/PyTreeCheckpointer.save") from None
      if declared > max_elements:
        raise CheckpointError(
            f"{path} declares arrays of {declared} elements in all, more than the "
            f"{max_elements} a checkpoint of this model may hold ({PARAMS_FILE_FACTOR}x its "
            "variables); it is corrupt or of another model")
    try:
      with warnings.catch_warnings():  # Shardings come from the checkpoint's own file.
        warnings.filterwarnings("ignore", message="Sharding info not provided")
        return ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(path)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"{path} is not a readable Orbax PyTree checkpoint ({_one_line(e)}); pass the "
          "directory given to StandardCheckpointer/PyTreeCheckpointer.save (for a "
          "CheckpointManager: <dir>/<step>/<item>)") from None
  try:
    return flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f"{path} is not a flax msgpack file ({_one_line(e)}); write it with "
        "flax.serialization.to_bytes(params) or pass an Orbax checkpoint directory") from None


def read_pretrained(path: PathLike, like: PyTree = None) -> tuple[PyTree, PyTree]:
  """``(params, batch_stats)`` from a bundle, or from a params file as :func:`import_params`
  reads it (a bare params tree, or a dict with ``params`` and optional ``batch_stats``).

  Args:
    path: the bundle, Orbax directory or msgpack file.
    like: the variables (or their abstract shapes) of the model they are for; an Orbax
      directory declaring more than :data:`PARAMS_FILE_FACTOR` times their elements is
      refused before it is read. None for no bound.

  Raises:
    CheckpointError: the path is missing, holds neither, or declares too much.
  """
  path = _abs(path)
  if _marked_bundle_meta(path) is not None:
    bundle = load_bundle(path)
    return bundle.params, bundle.batch_stats
  tree = _read_params_file(path, None if like is None else _params_file_limit(like))
  if isinstance(tree, dict) and "params" in tree:
    return tree["params"], tree.get("batch_stats") or {}
  return tree, {}


def _read_codes(codes: Any, expected_shape: tuple[int, ...]) -> np.ndarray:
  """Codes given as an array, or read from a ``.npy`` file whose header is checked first.

  The header's shape must be ``expected_shape`` and the file must hold exactly the bytes
  it declares before anything is allocated (a hostile header cannot make numpy allocate).

  Raises:
    CheckpointError: the file is missing or unreadable, is not a plain ``.npy`` array of
      ``expected_shape``, or is truncated or longer than its header declares.
  """
  if not isinstance(codes, (str, os.PathLike)):
    return np.asarray(codes)
  codes_path = _abs(codes)
  fix = "pass a .npy file written by numpy.save"
  try:
    with open(codes_path, "rb") as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise ValueError(f"unsupported .npy format version {version}")
      data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    if dtype.hasobject:
      raise ValueError("it holds Python objects")
    if tuple(shape) != tuple(expected_shape):
      raise CheckpointError(
          f"{codes_path}: codes have shape {tuple(shape)}, expected {tuple(expected_shape)} "
          "(num_classes, *input_shape)")
    needed = math.prod(shape) * dtype.itemsize
    if data_bytes != needed:
      raise CheckpointError(
          f"{codes_path}: holds {data_bytes} bytes of data but its header {tuple(shape)} "
          f"{dtype} needs {needed} (truncated or corrupt); {fix}")
    del fortran_order  # np.load below honours it.
    return np.load(codes_path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    if isinstance(e, CheckpointError):
      raise
    raise CheckpointError(f"{codes_path}: cannot read codes ({_one_line(e)}); {fix}") from None


def import_params(
    params_path: PathLike,
    codes: Any,
    *,
    model_name: str,
    num_classes: int,
    input_shape: Sequence[int],
    output: PathLike,
    model_kwargs: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] = (),
    dataset: str = "",
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> pathlib.Path:
  """Writes a bundle from parameters trained with the user's own loop.

  Args:
    params_path: either an Orbax PyTree checkpoint directory (written by
      ``StandardCheckpointer``/``PyTreeCheckpointer``/``StandardSave``) or a flax msgpack
      file (``flax.serialization.to_bytes``). It holds either the params tree itself or a
      variables dict ``{"params": ..., "batch_stats": ...}`` (required for BatchNorm models;
      other top-level entries such as an optimizer state are ignored).
    codes: mnemonic codes of shape ``(num_classes, *input_shape)``, an array or a ``.npy``
      path.
    model_name: registry name of the model the params belong to.
    num_classes: number of classes.
    input_shape: shape of one input, e.g. ``(28, 28, 1)``.
    output: the bundle directory to write.
    model_kwargs: the model's other attributes.
    mean: the per-channel mean the model's training subtracted from images scaled to
      [0, 1]. Required: only the user knows it (``(0.0,)`` with ``std=(1.0,)`` for
      images only scaled).
    std: the per-channel standard deviation the centred images were divided by.
    class_names: one name per class.
    dataset: name of the training dataset.
    config: training configuration to record (JSON-able).
    force: replace an existing bundle at ``output``.

  Returns:
    The absolute path of the bundle written.

  Raises:
    CheckpointError: ``num_classes`` is not in ``[1, MAX_CLASSES]``, the input shape is
      not supported (see :func:`check_input_shape`), the mean or std is not given or
      has neither one value nor one per channel, the params file is missing or
      unreadable (or an Orbax directory declares far more elements than the model has, see
      :data:`PARAMS_FILE_FACTOR`), its tree does not match the model's parameters
      (structure or shapes), the codes file's header does not declare the expected shape
      or does not match its size, the codes have the wrong shape, the
      params, batch_stats or codes hold NaN or inf (also after casting to the model's
      dtypes), the mean or std is not finite or the std not > 0, or the output exists
      without ``force``. Nothing is written then.
  """
  params_path = _abs(params_path)
  model_kwargs = dict(model_kwargs or {})
  if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
    raise CheckpointError(f"num_classes {num_classes!r} must be an integer in [1, "
                          f"{MAX_CLASSES}]")
  check_input_shape(tuple(input_shape), num_classes)
  spec = _spec_str(model_name, model_kwargs, input_shape)
  fix = ("pass the per-channel mean and std the model was trained with (e.g. --mean 0.1307 "
         "--std 0.3081)")
  if mean is None or std is None:
    raise CheckpointError(
        "the normalisation the model was trained with is unknown: pass its per-channel "
        "mean and std (e.g. mean=(0.1307,), std=(0.3081,) for MNIST; (0.0,) and (1.0,) for "
        "images only scaled to [0, 1]); CLI: --mean and --std, or --dataset NAME for that "
        "dataset's training statistics")
  _check_finite("", fix, mean=mean, std=std)
  check_normalisation(mean, std, input_shape[-1], fix=fix)
  abstract = abstract_variables(model_name, num_classes, input_shape, model_kwargs)
  tree = _read_params_file(params_path, _params_file_limit(abstract))
  if (isinstance(tree, Mapping) and "params" in tree
      and not (isinstance(abstract["params"], Mapping) and "params" in abstract["params"])):
    params, batch_stats = tree["params"], tree.get("batch_stats") or {}
  else:
    params, batch_stats = tree, {}
  if abstract["batch_stats"] and not batch_stats:
    raise CheckpointError(
        f"{params_path}: {spec} has BatchNorm statistics; save the variables dict "
        "{'params': ..., 'batch_stats': ...} instead of params alone")
  codes_where = str(_abs(codes)) if isinstance(codes, (str, os.PathLike)) else "codes"
  codes_shape = (int(num_classes), *(int(d) for d in input_shape))
  codes = _read_codes(codes, codes_shape)
  _check_arrays(str(params_path), spec, abstract, params, batch_stats, codes, codes_shape)
  if not jnp.issubdtype(codes.dtype, jnp.floating):
    raise CheckpointError(f"codes have dtype {codes.dtype}; mnemonic codes live in the "
                          "normalised input space and must be floating point")

  def cast(tree_, abstract_):  # To the model's dtypes, so the bundle loads bit-exactly.
    with np.errstate(over="ignore", invalid="ignore"):  # Overflow is refused just below.
      return jax.tree.map(lambda x, a: np.asarray(x, dtype=a.dtype), tree_, abstract_)

  params = cast(params, abstract["params"])
  batch_stats = cast(batch_stats, abstract["batch_stats"]) if abstract["batch_stats"] else {}
  fix = "import only parameters from a run that did not diverge"
  _check_finite(str(params_path), fix, params=params, batch_stats=batch_stats)
  _check_finite(codes_where, "pass the codes the model was trained with", codes=codes)

  bundle = Bundle(
      model_name=model_name,
      model_kwargs=model_kwargs,
      params=params,
      batch_stats=batch_stats,
      codes=codes,
      num_classes=int(num_classes),
      input_shape=tuple(int(d) for d in input_shape),
      mean=tuple(float(m) for m in mean),
      std=tuple(float(s) for s in std),
      class_names=tuple(str(c) for c in class_names),
      dataset=dataset,
      config=dict(config or {}),
  )
  return save_bundle(output, bundle, force=force)


# --------------------------------------------------------------------------------------
# Training checkpoints.

#: The file a training run holds an exclusive lock on, inside its workdir.
LOCK_FILE = ".lock"


@contextlib.contextmanager
def workdir_lock(workdir: PathLike) -> Iterator[pathlib.Path]:
  """Holds the exclusive lock of a run directory, refusing at once if another run has it.

  Takes a non-blocking ``fcntl.flock`` on ``WORKDIR/.lock`` (creating the workdir and the
  file if needed) and writes the holder's process id into it. The lock is released when
  the block ends or the process dies (even by SIGKILL), so a crashed run never leaves a
  stale lock; the file itself stays. Works across processes of one machine and on
  file systems with working ``flock`` (local disks, NFSv4); not on platforms without
  ``fcntl`` (no locking there).

  Args:
    workdir: the run directory.

  Yields:
    The lock file's path.

  Raises:
    CheckpointError: another process holds the lock (nothing is written then).

  Example:
    >>> with workdir_lock(tmp / "run"):
    ...   pass  # Train, checkpoint and save the bundle.
  """
  workdir = _abs(workdir)
  path = workdir / LOCK_FILE
  if fcntl is None:
    yield path
    return
  workdir.mkdir(parents=True, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
      raise CheckpointError(
          f"{workdir} is in use by another train run (process {holder or 'unknown'} holds "
          f"{path}); wait for it to finish, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    yield path
  finally:
    os.close(fd)  # Releases the lock.



class TrainCheckpoint(NamedTuple):
  """A restored training checkpoint.

  Attributes:
    step: the step it was saved at.
    state: the train-state pytree, shaped like the ``abstract_state`` given to restore.
    metadata: the JSON dict saved with it.
  """

  step: int
  state: PyTree
  metadata: dict[str, Any]


class TrainCheckpointer:
  """Periodic training checkpoints with resume, over ``ocp.CheckpointManager``.

  Each step directory holds the state pytree (``StandardSave``: arrays, optax states,
  scalars, and typed ``jax.random.key`` keys, which Orbax 0.12 stores as their key data
  and restores as typed keys; older Orbax releases could not, so with those pass
  ``jax.random.key_data(key)`` instead) and a JSON dict. Saves are asynchronous by
  default; jax Arrays are copied off the device before :meth:`save` returns, so the state
  may be donated afterwards (numpy leaves must not be modified in place until
  :meth:`wait_until_finished`). Orbax writes each step to a temporary directory and renames
  it when complete, so a killed run leaves the last complete step readable; leftover
  temporary directories are removed when the next checkpointer opens the directory.

  Example:
    >>> state, num_steps = {"w": jnp.zeros(3)}, 5
    >>> ckpt = TrainCheckpointer(tmp / "run", save_every=2)
    >>> start = 0
    >>> if ckpt.latest_step() is not None:  # A resumed run.
    ...   restored = ckpt.restore(None, jax.eval_shape(lambda: state))
    ...   state, start = restored.state, restored.step
    >>> for step in range(start + 1, num_steps + 1):
    ...   state = {"w": state["w"] + 1.0}  # One training step.
    ...   saved = ckpt.save(step, state, {"loss": 1.0 / step}, force=step == num_steps)
    >>> ckpt.close()
    >>> TrainCheckpointer(tmp / "run").latest_step()
    5
  """

  def __init__(self, directory: PathLike, *, save_every: int = 1, max_to_keep: int = 2,
               async_save: bool = True):
    """Opens (creating it if needed) a directory of training checkpoints.

    Args:
      directory: where the step directories live (made absolute).
      save_every: :meth:`save` only writes steps that are multiples of this (unless
        forced).
      max_to_keep: how many of the most recent steps are kept.
      async_save: write in a background thread (call :meth:`wait_until_finished`).

    Raises:
      CheckpointError: ``save_every`` or ``max_to_keep`` is below 1.
    """
    if save_every < 1 or max_to_keep < 1:
      raise CheckpointError(
          f"save_every={save_every} and max_to_keep={max_to_keep} must both be >= 1")
    self.directory = _abs(directory)
    # Orbax's default policy (from save_interval_steps) also saves the first step of a
    # fresh run whatever its number; an explicit policy keeps "multiples of save_every"
    # exact (plus saves on a preemption signal).
    policy = save_policy_lib.AnySavePolicy([
        save_policy_lib.FixedIntervalPolicy(save_every),
        save_policy_lib.PreemptionCheckpointingPolicy(),
    ])
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_decision_policy=policy,
        create=True,
        cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _META: ocp.JsonCheckpointHandler()},
    )

  def save(self, step: int, state: PyTree, metadata: Mapping[str, Any] | None = None, *,
           force: bool = False) -> bool:
    """Saves ``state`` at ``step`` if it is a multiple of ``save_every`` (or ``force``).

    Args:
      step: the training step (non-negative, increasing).
      state: any pytree of arrays (jax/numpy arrays, scalars, typed PRNG keys).
      metadata: a JSON-able dict stored alongside (e.g. the config, the epoch, a loss).
      force: save even if ``step`` is not a multiple of ``save_every``.

    Returns:
      Whether a checkpoint was started.

    Raises:
      CheckpointError: ``metadata`` is not JSON-serialisable or ``step`` was already
        saved.
    """
    meta = {"format": TRAIN_FORMAT, "version": TRAIN_VERSION, "step": int(step),
            "metadata": _to_json(dict(metadata or {}), "metadata")}
    if int(step) in self._manager.all_steps():
      raise CheckpointError(f"{self.directory}: step {step} is already saved; resume from it "
                            "or write to a new directory")
    return self._manager.save(int(step), args=ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(state),
        _META: ocp.args.JsonSave(meta),
    }), force=force)

  def should_save(self, step: int) -> bool:
    """Whether :meth:`save` would write ``step`` (without ``force``)."""
    return self._manager.should_save(int(step))

  def latest_step(self) -> int | None:
    """The most recent complete step, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """All complete steps, ascending."""
    return sorted(self._manager.all_steps())

  def restore(self, step: int | None, abstract_state: PyTree) -> TrainCheckpoint:
    """Restores a step into the structure of ``abstract_state``.

    Args:
      step: the step to restore; None for the latest.
      abstract_state: the state's structure: a pytree of ``jax.ShapeDtypeStruct`` (e.g.
        ``jax.eval_shape(init_fn, ...)``; give them shardings to place the arrays) or of
        concrete arrays. Leaves without a sharding are put on the default device.

    Returns:
      The step, the state and its JSON metadata.

    Raises:
      CheckpointError: there is no such step, its state does not match ``abstract_state``
        (structure or shapes), or it is corrupt.
    """
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise CheckpointError(f"{self.directory}: no complete training checkpoint to resume "
                              "from; start without resuming")
      step = steps[-1]
    if int(step) not in steps:
      raise CheckpointError(f"{self.directory}: no checkpoint for step {step} (have "
                            f"{steps or 'none'}); pick one of those")
    step = int(step)
    target = _abstract(abstract_state)
    _silence_stray_tensorstore_callbacks()
    try:
      stored = self._manager.item_metadata(step)[_STATE].tree
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"{self.directory}: step {step} is truncated or corrupt "
                            f"({_one_line(e)}); restore an earlier step") from None
    problem = _tree_mismatch(stored, target)
    if problem:
      raise CheckpointError(f"{self.directory}: step {step} does not match the train state: "
                            f"{problem}; resume with the same model and optimizer")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          _STATE: ocp.args.StandardRestore(target),
          _META: ocp.args.JsonRestore(),
      }))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"{self.directory}: step {step} is truncated or corrupt "
                            f"({_one_line(e)}); restore an earlier step") from None
    meta = restored[_META]
    if not isinstance(meta, dict) or meta.get("format") != TRAIN_FORMAT:
      raise CheckpointError(f"{self.directory}: step {step} is not a mnemonic-jax training "
                            "checkpoint; point at a directory written by TrainCheckpointer")
    if meta.get("version") != TRAIN_VERSION:
      raise CheckpointError(
          f"{self.directory}: step {step} has training-checkpoint version "
          f"{meta.get('version')!r}, this mnemonic_jax reads {TRAIN_VERSION}")
    metadata = meta.get("metadata") or {}
    if not isinstance(metadata, dict):
      raise CheckpointError(f"{self.directory}: step {step}'s metadata is "
                            f"{type(metadata).__name__}, not a JSON object (corrupt); "
                            "restore an earlier step")
    return TrainCheckpoint(step, restored[_STATE], metadata)

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are complete on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager's resources."""
    self._manager.close()

  def __enter__(self) -> "TrainCheckpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "CheckpointError",
    "LOCK_FILE",
    "MAX_CODE_ELEMENTS",
    "MAX_INPUT_DIM",
    "MAX_INPUT_RANK",
    "MAX_META_BYTES",
    "PARAMS_FILE_FACTOR",
    "TrainCheckpoint",
    "TrainCheckpointer",
    "abstract_variables",
    "array_checksums",
    "check_input_shape",
    "check_normalisation",
    "check_output",
    "import_params",
    "load_bundle",
    "nonfinite_leaves",
    "parse_bundle_meta",
    "quiet_orbax_logging",
    "remove_orbax_temporaries",
    "resolve_bundle_path",
    "remove_stale_staging",
    "save_bundle",
    "workdir_lock",
]
