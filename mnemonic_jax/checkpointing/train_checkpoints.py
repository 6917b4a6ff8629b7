"""Training checkpoints: periodic saves, resume, the workdir lock, leftover cleanup.

:class:`TrainCheckpointer` is a thin layer over ``ocp.CheckpointManager``: an arbitrary
pytree of arrays (parameters, optax state, step counter, typed ``jax.random.key`` keys)
plus a JSON dict every ``save_every`` steps, the last ``max_to_keep`` kept. Orbax writes
each step to a temporary directory and renames it when complete, so a killed run leaves
the last complete step readable. :func:`workdir_lock` keeps a second run out of a
workdir; :func:`remove_orbax_temporaries` removes what killed saves left (the
:class:`TrainCheckpointer` when it opens a directory).
Every file Orbax will read there is checked first to be a regular file (a FIFO or a link to
a device would block or read without end; :mod:`mnemonic_jax._files`), and a step's files
to hold at most a multiple of the state they restore.

Checksums (training-checkpoint version 2): once Orbax has written a step and before it
renames the step's directory into place, its JSON metadata (``meta/metadata``) is sealed
with the SHA-256 of every file under ``state/`` and ``meta/`` and of itself, by the
bundles' machinery (:mod:`~mnemonic_jax.checkpointing.integrity`). A step therefore
appears complete with its record or not at all, and :meth:`TrainCheckpointer.restore`
verifies every file before Orbax reads one: a damaged step (a flipped bit, a truncated,
missing or extra file, an edited metadata file) is refused in one line naming it and the
step to fall back to, never resumed from; so is a step folder whose record is of another
step than its name (renamed, or copied in from another step), whose state and metrics
window would not be those of the step the run resumes at. Not covered: Orbax's
``_CHECKPOINT_METADATA`` and ``commit_success.txt`` at the top of a step, which it rewrites
when it renames the directory, and which hold no part of the state. Steps of version 1 (no
checksums) still restore, with an :class:`UnverifiedCheckpointWarning`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import pathlib
import signal
import stat
import threading
import warnings
from typing import Any, Callable, Iterator, Mapping, NamedTuple

try:
  import fcntl
except ImportError:  # Not POSIX: runs are not locked.
  fcntl = None
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as save_policy_lib

from mnemonic_jax import distributed, environment
from mnemonic_jax import _files
from mnemonic_jax.checkpointing import integrity
from mnemonic_jax.checkpointing._common import (
    CheckpointError, PathLike, PyTree, _abs, _one_line, _remove, _to_json)
from mnemonic_jax.checkpointing.checks import PARAMS_FILE_FACTOR
from mnemonic_jax.checkpointing.train_records import (
    _FILES_CHECKSUMS, OLDER_TRAIN_VERSIONS, TRAIN_FORMAT, TRAIN_VERSION,
    UnverifiedCheckpointWarning, _coverage, _damaged_fix, _seal_step, _step_meta,
    check_step_names)
from mnemonic_jax.checkpointing.trees import (
    _abstract, _dtype_mismatch, _is_key_dtype, _tree_mismatch, _uncommitted)

_STATE = "state"
_META = "meta"
_ORBAX_TMP = ".orbax-checkpoint-tmp"

#: The file a training run holds an exclusive lock on, inside its workdir.
LOCK_FILE = ".lock"
#: The most files a training checkpoint directory may hold (a few steps of Orbax files).
_MAX_TRAIN_FILES = 1_000_000


def _check_files(directory: pathlib.Path, max_bytes: int = 1 << 62) -> None:
  """Refuses special files (and links to directories) where Orbax will read by path.

  Raises:
    CheckpointError: one line naming the file.
  """
  if directory.is_dir():
    _files.check_tree(directory, max_bytes=max_bytes, max_files=_MAX_TRAIN_FILES,
                      error=CheckpointError,
                      fix="remove it, or train in a new --workdir (the checkpoints there are "
                          "not mnemonic-jax's)")


@contextlib.contextmanager
def _keep_interrupts() -> Iterator[None]:
  """Ctrl-C inside the block raises :class:`KeyboardInterrupt`, even if Orbax swallows it.

  ``CheckpointManager.wait_until_finished`` (which ``save`` calls too) catches
  ``BaseException`` around its join of the save-finalising thread and only logs it
  (orbax-checkpoint 0.12.8): a Ctrl-C that lands there is dropped and the interrupted
  ``train`` runs on to the end. Here the signal is also recorded, and raised again once
  Orbax returns. Outside the main thread (where signals are not handled), or when SIGINT
  is ignored (a job a shell started in the background) or not Python's to handle, it does
  nothing.
  """
  previous = signal.getsignal(signal.SIGINT)
  if threading.current_thread() is not threading.main_thread() or not callable(previous):
    yield
    return
  caught = []

  def handler(signum, frame):
    caught.append(signum)
    previous(signum, frame)  # Python's default raises KeyboardInterrupt here.

  signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if caught:
    raise KeyboardInterrupt


@contextlib.contextmanager
def workdir_lock(workdir: PathLike, *,
                 untouched: Callable[[], bool] | None = None) -> Iterator[pathlib.Path]:
  """Holds the exclusive lock of a run directory, refusing at once if another run has it.

  Takes a non-blocking ``fcntl.flock`` on ``WORKDIR/.lock`` (creating the workdir and the
  file if needed) and writes the holder's process id into it. The lock is released when
  the block ends or the process dies (even by SIGKILL), so a crashed run never leaves a
  stale lock; the file itself stays, but for a block that raises and wrote nothing (a
  refused resume): with ``untouched`` saying so, the file is put back as it was before the
  lock was taken, while still held (removed if this call created it, with the folders it
  made for it; its earlier contents written back otherwise), so that a refusal leaves the
  workdir as it found it. A lock taken on a file removed or replaced meanwhile (opened
  before such a refusal removed it) is let go and taken again on the one at the path, so
  that no two runs hold it. Works across processes of one machine and on file systems with
  working ``flock`` (local disks, NFSv4); not on platforms without ``fcntl`` (no locking
  there).

  Args:
    workdir: the run directory.
    untouched: called if the block raises: whether it wrote nothing in the workdir (it
      may take back there what it made itself first). None: the file always stays.

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
  made = [workdir, *workdir.parents]  # The folders this call creates, deepest first.
  made = made[:next(i for i, d in enumerate(made) if os.path.lexists(d))]
  for _ in range(_LOCK_TRIES):
    opened = _open_locked(workdir, path)
    if opened is not None:
      fd, existed = opened
      break
  else:
    raise CheckpointError(
        f"{path} was removed or replaced each time this run took its lock ({_LOCK_TRIES} "
        "times: other runs refused there?); try again, or use another --workdir")
  try:
    before = os.pread(fd, os.fstat(fd).st_size, 0) if existed else b""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    try:
      yield path
    except BaseException:
      if untouched is not None and untouched():  # Put back while held: a refusal writes
        if existed:  # nothing.
          os.ftruncate(fd, 0)
          os.pwrite(fd, before, 0)
        else:
          os.unlink(path)
          for folder in made:
            with contextlib.suppress(OSError):
              folder.rmdir()
      raise
  finally:
    os.close(fd)  # Releases the lock.


#: How many times :func:`workdir_lock` takes a lock whose file was removed or replaced
#: meanwhile (by a refused run putting its workdir back) before it gives up.
_LOCK_TRIES = 10


def _open_locked(workdir: pathlib.Path, path: pathlib.Path) -> tuple[int, bool] | None:
  """``path`` opened (created if need be, with ``workdir``) and locked: its descriptor and
  whether the file was there before (False: this call created it), or None if the file
  locked is no longer the one at ``path`` (or went between two opens).

  A run that refuses unlinks the lock file it created while holding it; a process that
  opened that file before and locks it after holds a file no one else sees, while a third
  creates a new one at ``path`` and locks that: two holders. The file locked is checked to
  still be the one at ``path`` once held, as the lock is what makes it so.

  Raises:
    CheckpointError: it cannot be opened, is not a regular file, or another process holds
      the lock.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  # Never through a link (the pid written would land in its target), never blocking.
  flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
  try:
    try:
      fd, existed = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), False
    except FileExistsError:
      fd, existed = os.open(path, flags), True
  except FileNotFoundError:  # Removed between the two opens.
    return None
  except OSError as e:
    fix = ("is a directory, not a lock file; remove it" if e.errno == errno.EISDIR else
           f"cannot be opened as the lock file ({e.strerror or e}); remove it if it is a link")
    raise CheckpointError(f"{path} {fix}, or use another --workdir") from None
  try:
    held = os.fstat(fd)
    if not stat.S_ISREG(held.st_mode):
      raise CheckpointError(f"{path} is not a regular file; remove it, or use another "
                            "--workdir")
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
      raise CheckpointError(
          f"{workdir} is in use by another train run (process {holder or 'unknown'} holds "
          f"{path}); wait for it to finish, or use another --workdir") from None
    try:
      now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
      now = None
  except BaseException:
    os.close(fd)
    raise
  if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
    return fd, existed
  os.close(fd)  # Removed or replaced since it was opened: the lock is on the new one.
  return None


def remove_orbax_temporaries(directory: PathLike) -> list[pathlib.Path]:
  """Removes Orbax's unfinished step directories (``*.orbax-checkpoint-tmp*``) in a directory.

  Only safe while no one else writes there: :class:`TrainCheckpointer` calls it when it
  opens a directory (as Orbax's ``cleanup_tmp_directories`` would, but before it returns;
  :func:`mnemonic_jax.workflow.train` opens one only while it holds the workdir's lock,
  :func:`workdir_lock`), and the command line after a ``train`` a full disk stopped, under that
  lock.

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


def _uncommit_unplaced(state: PyTree, abstract_state: PyTree) -> PyTree:
  """``state`` with the leaves ``abstract_state`` did not place (no sharding, or an
  uncommitted array) uncommitted, as a fresh state's are (:func:`trees._uncommitted`)."""

  def leaf(value, like):
    placed = (isinstance(getattr(like, "sharding", None), jax.sharding.Sharding)
              and getattr(like, "committed", True))
    return value if placed else _uncommitted(value)

  return jax.tree.map(leaf, state, abstract_state)


class _PreemptionCountedByCall(ocp.CheckpointManager):
  """A ``CheckpointManager`` that asks the preemption service by call, not by step.

  JAX's preemption sync (``jax.experimental.multihost_utils.reached_preemption_sync_point``,
  over XLA's ``PreemptionSyncManager``) expects one query per training step with
  consecutive ids: on a notice (SIGTERM to any process) it takes the largest id the
  processes last reported and returns True only for exactly that id plus one. Orbax passes
  the step number, so a loop that asks every ``k > 1`` steps (``fit``'s ``on_step_every``)
  never meets that id and never saves on preemption. Here each new step asked about
  counts as the next id, the same on every process (they ask about the same steps), so
  the preemption save comes at the next save check after the notice, whatever the gap
  between checks.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._asked_step, self._calls = None, 0

  def reached_preemption(self, step: int) -> bool:
    if step != self._asked_step:  # should_save and save ask about the same step twice.
      self._asked_step, self._calls = step, self._calls + 1
    return super().reached_preemption(self._calls)


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
  temporary directories are removed when the next checkpointer opens the directory (before
  the constructor returns; with several processes, a collective).

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
      CheckpointError: ``save_every`` or ``max_to_keep`` is below 1, the directory holds
        a special file or a folder named like a step but not as one is (``0180``).
    """
    if save_every < 1 or max_to_keep < 1:
      raise CheckpointError(
          f"save_every={save_every} and max_to_keep={max_to_keep} must both be >= 1")
    self.directory = _abs(directory)
    _check_files(self.directory)
    check_step_names(self.directory)  # Before anything is written.
    # What killed saves left is removed before the manager opens, by process 0 while the
    # others wait. Orbax's own cleanup_tmp_directories runs in a background thread that only
    # the next save waits for (orbax-checkpoint 0.12.8): until then a restore's file check
    # could walk into a folder being removed, and a checkpointer that only restores could
    # return (even close) with the folder still there.
    if jax.process_index() == 0:
      remove_orbax_temporaries(self.directory)
    distributed.barrier("mnemonic_jax.train_checkpointer.cleaned")
    # Orbax's default policy (from save_interval_steps) also saves the first step of a
    # fresh run whatever its number; an explicit policy keeps "multiples of save_every"
    # exact (plus saves on a preemption signal: see _PreemptionCountedByCall).
    policy = save_policy_lib.AnySavePolicy([
        save_policy_lib.FixedIntervalPolicy(save_every),
        save_policy_lib.PreemptionCheckpointingPolicy(),
    ])
    # Always Orbax's asynchronous checkpointer: only it calls back once a step's files are
    # final and before the step's directory is renamed into place, where the step is
    # sealed (a synchronous save waits for it in save()).
    self._async_save, self._sealing = async_save, None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_decision_policy=policy,
        create=True,
        cleanup_tmp_directories=False,  # Done above, before the manager opens.
        enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(post_finalization_callback=self._seal),
    )
    self._manager = _PreemptionCountedByCall(
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
    with _keep_interrupts():
      self._manager.wait_until_finished()  # The previous step is sealed before this one.
      self._sealing = int(step)
      started = self._manager.save(int(step), args=ocp.args.Composite(**{
          _STATE: ocp.args.StandardSave(state),
          _META: ocp.args.JsonSave(meta),
      }), force=force)
      if started and not self._async_save:
        self._manager.wait_until_finished()
    return started

  def _seal(self) -> None:
    """Orbax's callback once the step being saved is written, before it is renamed into
    place (on the primary process, in Orbax's saving thread): seals it."""
    step = self._sealing
    written = [p for p in self.directory.glob(f"{step}{_ORBAX_TMP}*") if p.is_dir()]
    if not written and (self.directory / str(step)).is_dir():
      written = [self.directory / str(step)]  # A file system Orbax writes in place.
    if len(written) != 1:
      raise CheckpointError(f"{self.directory}: cannot find the directory Orbax wrote step "
                            f"{step} to (found {[p.name for p in written]}); train again")
    _seal_step(written[0], step)

  def should_save(self, step: int) -> bool:
    """Whether :meth:`save` would write ``step`` (without ``force``)."""
    return self._manager.should_save(int(step))

  def preempted(self, step: int) -> bool:
    """Whether a preemption notice reached this run (SIGTERM to any of its processes, with
    JAX's preemption service, i.e. several processes) and ``step`` is the step every
    process saves for it (:meth:`save` saves it without ``force``). Ask about the steps
    :meth:`should_save` is asked about: the service counts them."""
    return self._manager.reached_preemption(int(step))

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
        (structure or shapes), it is corrupt, or its record is of another step than its
        folder's name (renamed, or copied in from another step); or a folder is named
        like a step but not as one is (``0180``).
    """
    check_step_names(self.directory)  # A renamed step folder Orbax would pass over.
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
    state_bytes = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
                      for x in jax.tree.leaves(target)
                      if hasattr(x, "dtype") and not _is_key_dtype(x.dtype))
    cap = PARAMS_FILE_FACTOR * state_bytes + (16 << 20)
    _check_files(self.directory, cap * max(1, len(steps)))  # Every step kept, each a multiple.
    fix = _damaged_fix(self.directory, step, steps)
    self._verify(step, cap, steps)  # Before Orbax reads any of its files.
    try:
      stored = self._manager.item_metadata(step)[_STATE].tree
    except Exception as e:  # pylint: disable=broad-except
      environment.reraise(e)  # The machine's failure is not the checkpoint's.
      raise CheckpointError(f"{self.directory}: step {step} is truncated or corrupt "
                            f"({_one_line(e)}); {fix}") from None
    problem = _tree_mismatch(stored, target)
    if problem:
      raise CheckpointError(f"{self.directory}: step {step} does not match the train state: "
                            f"{problem}; resume with the same model and optimizer")
    problem = _dtype_mismatch(stored, target, strict=True)
    if problem:  # Orbax would cast to the target's dtypes: refused, nothing is lost.
      raise CheckpointError(f"{self.directory}: step {step} stores other dtypes than the "
                            f"train state has: {problem} (stored, train state); resume with "
                            "the same model dtypes")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          _STATE: ocp.args.StandardRestore(target),
          _META: ocp.args.JsonRestore(),
      }))
    except Exception as e:  # pylint: disable=broad-except
      environment.reraise(e)  # The machine's failure is not the checkpoint's.
      raise CheckpointError(f"{self.directory}: step {step} is truncated or corrupt "
                            f"({_one_line(e)}); {fix}") from None
    meta = restored[_META]
    if not isinstance(meta, dict) or meta.get("format") != TRAIN_FORMAT:
      raise CheckpointError(f"{self.directory}: step {step} is not a mnemonic-jax training "
                            "checkpoint; point at a directory written by TrainCheckpointer")
    if meta.get("version") not in (TRAIN_VERSION, *OLDER_TRAIN_VERSIONS):  # Read twice.
      raise CheckpointError(
          f"{self.directory}: step {step} has training-checkpoint version "
          f"{meta.get('version')!r}, this mnemonic_jax reads {TRAIN_VERSION}")
    metadata = meta.get("metadata") or {}
    if not isinstance(metadata, dict):
      raise CheckpointError(f"{self.directory}: step {step}'s metadata is "
                            f"{type(metadata).__name__}, not a JSON object (corrupt); {fix}")
    return TrainCheckpoint(step, _uncommit_unplaced(restored[_STATE], abstract_state), metadata)

  def _verify(self, step: int, max_bytes: int, steps: list[int]) -> None:
    """Checks a step's record (of this step: :func:`train_records._step_meta`) and its files
    against the checksums sealed into it when it was saved.

    Raises:
      CheckpointError: one line naming the step, the file, and the step to fall back to
        among ``steps``.
    """
    step_dir = self.directory / str(step)
    fix = _damaged_fix(self.directory, step, steps)
    dir_fd = integrity.open_dir(step_dir)
    try:
      meta = _step_meta(self.directory, step, dir_fd, steps)
      if meta.get("version") in OLDER_TRAIN_VERSIONS:
        warnings.warn(
            f"{step_dir}: a training checkpoint of the older version {meta['version']}, "
            "resumed without checksums to verify it (damage there would go unnoticed)",
            UnverifiedCheckpointWarning, stacklevel=3)
        return
      integrity.verify_covered(step_dir, dir_fd, meta[_FILES_CHECKSUMS], max_bytes,
                               _coverage(step, fix))
    finally:
      os.close(dir_fd)

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are complete on disk."""
    with _keep_interrupts():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager's resources."""
    with _keep_interrupts():
      self._manager.close()

  def __enter__(self) -> "TrainCheckpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

