"""What a run's workdir holds: the records a train run writes beside its checkpoints, and
the checks that a workdir's bundle or checkpoint step is this run's own.

:func:`finished_run` (a rerun of a finished run returns its bundle, never one it did not
write), :func:`check_same_run` (a resume from a step of this run only) and the fields a
training checkpoint records (:data:`BUNDLE_DIGEST`, :data:`METRICS_LOG`, :data:`PRNG`,
:data:`MODEL_ATTRIBUTES`). Used by :func:`mnemonic_jax.workflow.train`.
"""

import hashlib
import json
import os
import pathlib
from typing import Any, Mapping

import jax
import numpy as np

from mnemonic_jax import _validate, checkpointing, errors, run_metrics, training
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing.train_records import foreign_step_fix
from mnemonic_jax.models import changed_attributes


def to_plain(config: Any) -> dict[str, Any]:
  """An ml_collections ConfigDict (or mapping) as a JSON-able dict."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return {k: to_plain(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v
          for k, v in dict(config).items()}


#: The field of a run's final checkpoint that records its bundle's arrays
#: (:func:`arrays_sha256`), which :func:`finished_run` checks ``WORKDIR/bundle`` against.
BUNDLE_DIGEST = "bundle_sha256"


def arrays_sha256(params: Any, batch_stats: Any, codes: Any) -> str:
  """The SHA-256 of a model's arrays: each leaf's path, dtype, shape and bytes, in path order.

  Recorded in a run's final training checkpoint; a bundle's own arrays give the same digest
  exactly when they are the ones the run ended with (:func:`finished_run`).

  Args:
    params: the parameters pytree (jax or numpy arrays, whole on this process).
    batch_stats: the BatchNorm statistics pytree (``{}`` or None when there are none).
    codes: the codes array.

  Returns:
    64 lowercase hex digits.
  """
  digest = hashlib.sha256()
  tree = {"params": params, "batch_stats": batch_stats or {}, "codes": codes}
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


#: The field of a training checkpoint that records the lines of ``metrics.jsonl`` logged up
#: to its step (:meth:`run_metrics.MetricsLog.record`), checked on resume.
METRICS_LOG = "metrics_log"
#: The field of a training checkpoint naming JAX's random generator it was trained with.
PRNG = "prng_impl"
#: ... and its model's attributes, defaults included (:func:`.models.model_attributes`).
MODEL_ATTRIBUTES = "model_attributes"


def finished_run(config: Mapping[str, Any], workdir: str | pathlib.Path) -> Bundle | None:
  """The bundle of a run of ``config`` that already finished in ``workdir``, or None.

  A run is finished once its bundle is saved (its last act). ``WORKDIR/bundle`` must then be
  the bundle this run wrote: trained with this config (the fields that do not change the
  result, such as ``checkpoint_every``, ``log_every`` or ``data_dir``, aside), with nothing
  done to it since (an empty history), and with the arrays the run's final checkpoint
  records (:data:`BUNDLE_DIGEST`; a workdir whose checkpoints are gone, or of an older
  release, on the first two alone). Anything else there (a forgotten model put there with
  ``--force``, another run's bundle, something that is not a bundle or does not load) is
  refused, and so is a log with lines it did not write (:func:`.run_metrics.check_finished_log`):
  ``train`` never replaces what it did not write. A workdir whose run (its last checkpoint,
  or its bundle when no checkpoint records a config) is of another config is refused as a
  whole, advising a new workdir or the run's own config, never to move or delete what that
  run wrote (:func:`other_run`). Only reads.

  Args:
    config: the experiment config.
    workdir: the run directory.

  Returns:
    The finished run's bundle, or None: nothing at ``WORKDIR/bundle`` yet (or an empty
    directory, or a symbolic link to nothing), so the run has not finished.

  Raises:
    CheckpointError: ``workdir`` is a bundle or lies inside one or in a train run's
      checkpoints, or ``WORKDIR/bundle`` (or the log) holds anything but this run's (one line).
  """
  workdir = _validate.path(workdir, "workdir").absolute()
  around, steps = (checkpointing.enclosing_bundle(workdir),
                   checkpointing.enclosing_train_checkpoints(workdir))
  if around is not None or steps is not None:  # Refused before any work, not at the save.
    where = (f"lies in the checkpoints of the train run {steps[0]}, whose resume would read "
             "it" if around is None else "is a bundle" if around == workdir.resolve()
             else f"lies inside the bundle {around}, which it would change")
    raise checkpointing.CheckpointError(
        f"workdir {workdir} {where}; a train run writes its checkpoints, logs and bundle "
        "into its workdir; use a new --workdir")
  path = workdir / "bundle"
  if nothing_at(path):
    return None
  try:
    bundle = checkpointing.load_bundle(path)
  except checkpointing.CheckpointError as e:
    raise checkpointing.CheckpointError(not_ours(path, _reason(e, path))) from None
  plain = json.loads(json.dumps(to_plain(config), default=str))  # As the bundle holds it.
  saved = bundle.config if isinstance(bundle.config, Mapping) else {}
  diff = config_diff(plain, saved)
  last = checkpointing.read_step_metadata(workdir / "train")
  step, metadata = ((last[0], last[1].get("metadata") or {}) if last is not None and last[1].get(
      "version") == checkpointing.TRAIN_VERSION else (None, None))  # None: removed, or older.
  kept = (metadata or {}).get("config")  # The config of the workdir's run (its checkpoints).
  ours = isinstance(kept, Mapping) and not config_diff(plain, kept)
  if diff and not ours:  # The workdir's own run is of another config: nothing of it to move.
    raise checkpointing.CheckpointError(other_run(workdir, plain, saved, diff))
  if diff:  # Another run's bundle put in this run's workdir: moved away, this run writes its own.
    key = diff[0]
    raise checkpointing.CheckpointError(not_ours(
        path, f"it was trained with another config: {key} {saved.get(key)!r} there, "
              f"{plain.get(key)!r} in this run"))
  if isinstance(kept, Mapping) and not ours:  # This config's bundle, another's checkpoints.
    raise checkpointing.CheckpointError(other_run(workdir, plain, kept, config_diff(plain, kept)))
  if bundle.history:
    done = ", ".join(entry.get("event") or f"forget {entry.get('classes')}"
                     for entry in bundle.history[:3])
    raise checkpointing.CheckpointError(not_ours(
        path, f"its history records {len(bundle.history)} change(s) since training: {done}"))
  recorded = (metadata or {}).get(BUNDLE_DIGEST)
  if metadata is not None and (recorded is None or recorded != arrays_sha256(
      bundle.params, bundle.batch_stats, bundle.codes)):
    raise checkpointing.CheckpointError(not_ours(path, (
        f"the run has not finished: its last checkpoint, step {step}, is not its final one"
        if recorded is None else
        f"its arrays are not the ones of the run's final checkpoint, step {step}")))
  run_metrics.check_finished_log(workdir, step, (metadata or {}).get(METRICS_LOG),
                                 epochs=config.get("epochs", training.FitConfig.epochs))
  return bundle


def nothing_at(path: pathlib.Path) -> bool:
  """Whether nothing is at ``path`` to lose: no entry, an empty directory or a dangling link."""
  if not os.path.lexists(path):
    return True
  if path.is_symlink():
    return not path.exists()
  try:
    return path.is_dir() and not any(path.iterdir())
  except OSError:
    return False


def _reason(error: Exception, path: pathlib.Path) -> str:
  """A load error as a reason: its first clause, without the path it starts with."""
  text = str(error)
  for prefix in (f"{path}: ", f"{path} "):
    if text.startswith(prefix):
      text = text[len(prefix):]
      break
  return f"it does not load as a bundle: {text.split('; ')[0]}"


def other_run(workdir: pathlib.Path, config: Mapping[str, Any], saved: Mapping[str, Any],
              diff: list[str]) -> str:
  """The one-line refusal of a workdir whose run is of another config (``saved``) than
  ``config``, ``diff`` their differing fields: never to delete or move what that run wrote,
  only to train elsewhere or give the run's own config."""
  shown = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in diff[:3])
  return (f"{workdir} holds a run with another config ({shown}); use a new workdir to train "
          "this config, or the workdir's own config to resume or rerun its run")


def not_ours(path: pathlib.Path, reason: str, again: bool = False) -> str:
  """The one-line refusal of a ``WORKDIR/bundle`` that this run did not write."""
  then = ("and run the same command again to write the run's bundle" if again else
          "(the same command then writes the run's own bundle)")
  return (f"{path} is not the bundle this run wrote ({reason}); train never replaces it: "
          f"move it elsewhere to keep it {then}, or train in another --workdir")


#: Config fields that may change between a run and its resumption: how often it saves
#: and logs, and where (or whether to download) the data it reads.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "log_every", "data_dir", "download"})


def config_diff(config: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
  """The fields (but those of :data:`RESUMABLE_CHANGES`) in which two plain configs differ."""
  return sorted(k for k in set(config) | set(saved)
                if k not in RESUMABLE_CHANGES and config.get(k) != saved.get(k))


def check_same_run(config: Mapping[str, Any], restored: checkpointing.TrainCheckpoint,
                    ckpt: checkpointing.TrainCheckpointer, total: int,
                    workdir: pathlib.Path, attributes: Mapping[str, str] | None = None) -> None:
  """Refuses to resume from a step that is not this run's: past its last step, or of
  another config (but how often it saves and logs). A step of another config after steps
  of this one (a step folder copied in from another run) is named, to take away; a
  workdir of another run is refused as a whole.

  Raises:
    CheckpointError, BadRequest: one line naming the step folder or the workdir and what
      to do.
  """
  step, steps = restored.step, ckpt.all_steps()
  folder, away = ckpt.directory / str(step), foreign_step_fix(ckpt.directory, step, steps)
  _check_same_config(config, restored, ckpt, workdir, folder, away)  # First: before any
  if step > total:  # advice to delete a step, which another config's run would lose.
    raise checkpointing.CheckpointError(
        f"{folder}: step {step} is past this run's last step, {total}; {away}")
  generator = restored.metadata.get(PRNG)  # None: a checkpoint of an older release.
  if generator not in (None, jax.config.jax_default_prng_impl):
    raise errors.BadRequest(
        f"{workdir} was trained with JAX's random generator {generator!r}, this process "
        f"uses {jax.config.jax_default_prng_impl!r} (JAX_DEFAULT_PRNG_IMPL): resumed, the "
        f"run would draw other codes' mixing and batches than an uninterrupted one; resume "
        f"with JAX_DEFAULT_PRNG_IMPL={generator}")
  changed = attributes and changed_attributes(restored.metadata.get(MODEL_ATTRIBUTES) or {},
                                              attributes)
  if changed:  # A default changed since the last checkpoint (a release, an edited class).
    raise errors.BadRequest(
        f"{workdir} was trained with another model ({'; '.join(changed)}): resumed, the run "
        "would end as a mix of two models; restore the model's defaults, or use a new workdir")


def _check_same_config(config: Mapping[str, Any], restored: checkpointing.TrainCheckpoint,
                       ckpt: checkpointing.TrainCheckpointer, workdir: pathlib.Path,
                       folder: pathlib.Path, away: str) -> None:
  """Refuses a step of another config: named, to take away, if it follows steps of this
  config (copied in from another run); the workdir as a whole otherwise."""
  step, steps = restored.step, ckpt.all_steps()
  saved = restored.metadata.get("config")
  if saved is None:
    return
  if not isinstance(saved, Mapping):
    raise checkpointing.CheckpointError(
        f"{workdir / 'train'}: the last checkpoint records a config of type "
        f"{type(saved).__name__} (corrupt); use a new workdir")
  diff = config_diff(config, saved)
  if not diff:
    return
  shown = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in diff[:3])
  before = [s for s in steps if s < step]
  if before and not config_diff(config, _step_config(ckpt.directory, before[-1])):
    raise checkpointing.CheckpointError(
        f"{folder}: a step of a run with another config ({shown}) than this run and its "
        f"step {before[-1]}; {away}")
  raise errors.BadRequest(other_run(workdir, config, saved, diff))


def _step_config(directory: pathlib.Path, step: int) -> Mapping[str, Any]:
  """The config a step records (``{}`` if it records none or cannot be read)."""
  try:
    record = checkpointing.read_step_metadata(directory, step)
  except checkpointing.CheckpointError:
    return {}
  config = ((record or (None, {}))[1].get("metadata") or {}).get("config")
  return config if isinstance(config, Mapping) else {}
