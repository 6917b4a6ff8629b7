"""Train a bundle from a config: fit with codes, resumable, one bundle out."""

import contextlib
import dataclasses
import math
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np

from mnemonic_jax import environment, errors
from mnemonic_jax import _validate, checkpointing, codes as codes_lib, configs, distributed
from mnemonic_jax import parallel, run_metrics, training
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.data import DatasetError, load_dataset, open_tfds, pipeline
from mnemonic_jax.models import create_model, model_attributes
from mnemonic_jax.workflow import run_records as records
from mnemonic_jax.workflow.inputs import merge_pretrained, prepare_images
from mnemonic_jax.workflow.run_records import to_plain


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(training.FitConfig))


def fit_config(config: Mapping[str, Any]) -> training.FitConfig:
  """The :class:`FitConfig` fields of an experiment config."""
  return training.FitConfig(**{k: config[k] for k in TRAIN_FIELDS if k in config})


class RunStopped(Exception):
  """``train`` stopped when its ``stop`` said so, after saving its state (see ``step``)."""

  def __init__(self, step: int, directory: pathlib.Path):
    super().__init__(f"stopped at step {step}, saved in {directory}")
    self.step, self.directory = step, directory


def train(config: Mapping[str, Any], workdir: str | pathlib.Path, *, progress: bool = True,
          mesh=None, stop: Callable[[], bool] | None = None) -> Bundle:
  """Trains a model with mnemonic codes from an experiment config; resumable.

  The run saves its state to ``workdir/train`` every ``config.checkpoint_every`` steps
  and, run again with the same config and workdir, continues from the last complete save:
  the final parameters equal those of an uninterrupted run, and so do the lines of
  ``metrics.jsonl`` (each checkpoint carries the metrics window it is in the middle of).
  The finished bundle is saved to ``workdir/bundle``; run again once that exists, it
  returns that bundle and writes nothing, provided it is the bundle this run wrote
  (:func:`.run_records.finished_run`): anything else there is refused, never replaced. The mean step
  metrics of every ``config.log_every`` steps (default :data:`DEFAULT_LOG_EVERY`) go to
  ``workdir/metrics.jsonl`` and, when CLU is installed, to TensorBoard
  (:mod:`mnemonic_jax.run_metrics`).

  Everything that can be checked is checked before anything is written: the config's
  fields (:func:`mnemonic_jax.configs.validate_config`), the dataset, the batch size
  against it, the model spec (its shapes) and the pretrained weights.

  Args:
    config: experiment config (see :mod:`mnemonic_jax.configs`): ``seed``, ``dataset``,
      ``model``, ``model_kwargs``, ``code_distribution``, ``pad_to``,
      ``checkpoint_every``, the :class:`FitConfig` fields, optionally ``data_dir`` and
      ``download`` (a ``tfds:`` dataset's directory, and whether tfds may download it),
      ``log_every``, ``stream`` (read a
      ``tfds:`` dataset one batch at a time, for data larger than memory) and ``pretrained``
      (a bundle or params file to start from) with ``pretrained_skip`` (top-level layer
      names initialised afresh, e.g. a classifier head).
    workdir: run directory.
    progress: show a progress bar.
    mesh: optional device mesh. With several processes (:mod:`mnemonic_jax.distributed`)
      every process calls :func:`train` alike: the mesh defaults to all their devices,
      each process reads only its rows of every batch, the training checkpoints are
      saved and restored collectively by Orbax (``workdir`` on a file system every
      process sees), and process 0 alone takes the workdir's lock, writes
      ``metrics.jsonl`` and the bundle. Every process returns the bundle.
    stop: optional, one process only: asked at every check (every gcd(``log_every``,
      ``checkpoint_every``) steps); once it returns True the run saves that step and
      raises :class:`RunStopped`, so that running it again resumes there. The command line
      passes one that a SIGTERM (a scheduler's preemption notice) sets. With several
      processes, JAX's preemption service does the same on SIGTERM to any of them: every
      process saves the same step and raises :class:`RunStopped`.

  Returns:
    The trained bundle.

  Raises:
    ConfigError: a config field of the wrong type or out of range, a batch larger than
      the dataset, more steps than the step counter holds, or a model that cannot be
      built for the data. Nothing is written then.
    DatasetError, CheckpointError: the dataset or the pretrained weights cannot be read,
      the workdir holds a run of another config, is (or lies inside) a bundle, holds in
      ``workdir/bundle`` anything but this run's bundle
      (:func:`.run_records.finished_run`), its last checkpoint is damaged or not the run's
      step of its folder's name (the message names the folder to delete),
      ``metrics.jsonl`` lacks lines that checkpoint recorded
      (:mod:`~mnemonic_jax.run_metrics`), or another run holds its lock
      (:func:`mnemonic_jax.checkpointing.workdir_lock`: one run per workdir at a time).
      Nothing is written then, the lock file included (put back as it was found).
    RunStopped: ``stop`` returned True, or a preemption notice came (the step is saved).
    TrainingDiverged: the mean loss between two checks (every gcd(``log_every``,
      ``checkpoint_every``) steps) is NaN or inf. The run stops there; those steps are not
      saved, and the last checkpoint stays the last complete save.
  """
  workdir = _validate.path(workdir, "workdir").absolute()
  configs.validate_config(config)
  _check_inputs_apart(config, workdir)
  done = records.finished_run(config, workdir)
  if done is not None:  # Nothing to do, and nothing is written.
    return done
  data, info, shape = _training_data(config)
  fit_cfg = fit_config(config)
  total = _total_steps(fit_cfg, data.num_examples)
  root = jax.random.key(config["seed"])
  code_key, train_key = jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)
  codes = codes_lib.generate_codes(
      code_key, info.num_classes, shape, distribution=config.get("code_distribution", "uniform"))
  model_kwargs = to_plain(config.get("model_kwargs", {}))

  # Shapes first: a bad model spec fails here, before anything is written.
  try:
    model = create_model(config["model"], info.num_classes, **model_kwargs)
    attributes = model_attributes(config["model"], info.num_classes, model_kwargs)
    abstract = jax.eval_shape(
        lambda: training.initial_state(model, shape, fit_cfg, data.num_examples, train_key))
  except Exception as e:  # pylint: disable=broad-except
    environment.reraise(e)  # JAX that cannot start is not the config's fault.
    text = str(e).strip().splitlines()
    raise configs.ConfigError(
        f"config.model {config['model']!r} with model_kwargs {model_kwargs} cannot be built "
        f"for inputs {tuple(shape)} of {info.num_classes} classes: {type(e).__name__}: "
        f"{text[0] if text else ''}; fix config.model_kwargs") from None
  plain = to_plain(config)
  train_dir = workdir / "train"
  like = {"params": abstract.params, "batch_stats": abstract.batch_stats}
  if mesh is None and jax.process_count() > 1:
    mesh = parallel.make_mesh()  # Several processes train one model on all devices.
  several = parallel.multiprocess(mesh)
  if several:  # Restored collectively, straight into global replicated arrays.
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=parallel.replicated(mesh)),
        abstract)
  pretrained = None
  skip = tuple(config.get("pretrained_skip") or ())
  if config.get("pretrained") and not _has_steps(train_dir):  # Read before writing,
    pretrained = checkpointing.read_pretrained(config["pretrained"], like=like)
    for fresh, given in zip(like.values(), pretrained):  # and its fit to the model checked.
      merge_pretrained(fresh, given, skip)
  made_train, opened = not os.path.lexists(train_dir), []  # opened: the run's log is.

  def untouched() -> bool:  # Refused before its first write: the workdir as it was found.
    if not opened and made_train:
      with contextlib.suppress(OSError):
        train_dir.rmdir()  # Made empty by the checkpointer.
    return not opened

  with _run_lock(workdir, untouched):  # One run per workdir; a second is refused.
    save_every = config.get("checkpoint_every", 500)
    ckpt = checkpointing.TrainCheckpointer(train_dir, save_every=save_every)
    state = carried = None
    resume_step = None
    window = training.MetricsWindow()
    resumed_seconds = 0.0
    logged = None  # What the checkpoint resumed from recorded of metrics.jsonl.
    if ckpt.latest_step() is not None:
      restored = ckpt.restore(None, abstract)
      records.check_same_run(plain, restored, ckpt, total, workdir, attributes)
      state, resume_step = restored.state, restored.step
      carried = restored.metadata.get("window")
      logged = restored.metadata.get(records.METRICS_LOG)
      if carried is not None:  # The steps since the last log line, to log them whole.
        window.resume(carried)
      resumed_seconds = _seconds(restored.metadata.get("seconds"))
    elif config.get("pretrained"):
      if pretrained is None:
        pretrained = checkpointing.read_pretrained(config["pretrained"], like=like)
      params, batch_stats = pretrained
      state = training.initial_state(model, shape, fit_cfg, data.num_examples, train_key)
      state = state.replace(
          params=merge_pretrained(state.params, params, skip),
          batch_stats=merge_pretrained(state.batch_stats, batch_stats, skip))

    # A checkpoint without the window (an older release's) cannot recompute the lines the
    # killed run logged after it: those are kept, never replaced by means of fewer steps.
    # The log's lines up to the checkpoint's step are checked on every process alike.
    log = _NoLog()
    if jax.process_index() == 0:
      log = run_metrics.MetricsLog(workdir, resume_step=resume_step, hparams=plain,
                                   keep_later=resume_step is not None and carried is None,
                                   record=logged)
    elif resume_step is not None:
      run_metrics.check_resumable_log(workdir, resume_step, logged)
    opened.append(True)
    # What killed runs left: staging directories of the bundle whose process is gone (the
    # checkpointer removes unfinished steps itself when it opens).
    if jax.process_index() == 0:
      checkpointing.remove_stale_staging(workdir / "bundle")
    distributed.barrier("mnemonic_jax.train.cleaned")
    log_every = config.get("log_every", DEFAULT_LOG_EVERY)
    steps_per_epoch = training.steps_per_epoch(data.num_examples, fit_cfg.batch_size)
    start = time.perf_counter() - resumed_seconds  # Training seconds, across resumes.
    previous = resume_step or 0  # The step of save's previous call.

    def save(step, state, step_metrics):  # step_metrics: the means since save's previous call.
      nonlocal previous
      _check_finite(step_metrics, previous, step, ckpt, config)  # Before any log or save.
      window.add_means(step_metrics, step - previous)
      previous = step
      if (step % log_every == 0 or step == total) and jax.process_index() == 0:
        log.write(step, window.mean(), epoch=round(step / steps_per_epoch, 4),
                  seconds=round(time.perf_counter() - start, 3))
      stopping = stop is not None and step < total and stop()
      if stopping or step == total or ckpt.should_save(step):
        metadata = {"config": plain, "metrics": {k: float(v) for k, v in step_metrics.items()},
                    "window": window.snapshot(), records.METRICS_LOG: log.record(),
                    records.PRNG: jax.config.jax_default_prng_impl,
                    records.MODEL_ATTRIBUTES: attributes,
                    "seconds": round(time.perf_counter() - start, 3)}
        if step == total:  # What finished_run checks WORKDIR/bundle against.
          local = parallel.to_local((state.params, state.batch_stats)) if several else (
              state.params, state.batch_stats)
          metadata[records.BUNDLE_DIGEST] = records.arrays_sha256(*local, codes)
        ckpt.save(step, state, metadata, force=step == total or stopping)
      if (stopping or ckpt.preempted(step)) and step < total:
        ckpt.close()  # Waits for the save.
        raise RunStopped(step, train_dir)

    try:
      state, _ = training.fit(
          model, data, codes, fit_cfg, train_key, mean=info.mean, std=info.std,
          mesh=mesh, state=state, on_step=save,
          on_step_every=math.gcd(log_every, save_every), progress=progress)
    finally:
      log.close()
    ckpt.wait_until_finished()
    ckpt.close()
    if several:
      state = parallel.to_local(state)
    bundle = Bundle(
        model_name=config["model"], model_kwargs=model_kwargs, params=state.params,
        batch_stats=state.batch_stats, codes=codes, num_classes=info.num_classes,
        input_shape=shape, mean=tuple(info.mean), std=tuple(info.std),
        class_names=tuple(info.class_names), dataset=config["dataset"], config=plain)
    if not records.nothing_at(workdir / "bundle"):  # Put there while this run trained.
      raise checkpointing.CheckpointError(records.not_ours(
          workdir / "bundle", "it appeared while this run trained", again=True))
    # force: an empty directory or a dangling link there is replaced (process 0 writes).
    checkpointing.save_bundle(workdir / "bundle", bundle, force=True)
  return bundle


def _seconds(value: Any) -> float:
  """A checkpoint's recorded training seconds (0 if it records none)."""
  return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _check_finite(metrics: Mapping[str, Any], previous: int, step: int,
                  ckpt: checkpointing.TrainCheckpointer, config: Mapping[str, Any]) -> None:
  """Raises TrainingDiverged if the mean loss of steps ``previous + 1 .. step`` is NaN or
  inf (reading it waits for those steps: once per check, every process alike)."""
  loss = float(metrics["loss"])
  if math.isfinite(loss):
    return
  ckpt.wait_until_finished()  # The last checkpoint named is complete on disk.
  last = ckpt.latest_step()
  ckpt.close()
  then = ("run again" if last is None else  # A checkpoint resumes only its own config.
          f"train into a new workdir (the last checkpoint here is step {last})")
  raise errors.TrainingDiverged(
      f"training diverged: the mean loss of steps {previous + 1}-{step} is {loss}; stopped "
      f"without saving them; lower config.learning_rate (now {config.get('learning_rate')}) "
      f"and {then}")


class _NoLog:
  """The metrics log of processes other than 0: nothing is written (nor recorded: only
  process 0's checkpoint metadata is written)."""

  def write(self, *args, **kwargs) -> None:
    del args, kwargs

  def record(self) -> None:
    return None

  def close(self) -> None:
    pass


@contextlib.contextmanager
def _run_lock(workdir: pathlib.Path, untouched: Callable[[], bool]) -> Iterator[None]:
  """:func:`checkpointing.workdir_lock`, taken by process 0 for every process of a run
  (``untouched``: whether a refused run wrote nothing, its lock file then put back).

  With several processes, process 0 tries the lock and tells the others whether it got
  it, so a run refused by the lock is refused on every process (none waits for a
  process that left).
  """
  if jax.process_count() == 1:
    with checkpointing.workdir_lock(workdir, untouched=untouched):
      yield
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  with contextlib.ExitStack() as stack:
    error = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(checkpointing.workdir_lock(workdir, untouched=untouched))
      except checkpointing.CheckpointError as e:
        error = e
    taken = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if error is not None:
      raise error
    if not int(taken):
      raise checkpointing.CheckpointError(
          f"{workdir} is in use by another train run (process 0 of this run could not take "
          "its lock); wait for it to finish, or use another --workdir")
    yield


#: Steps between two lines of a run's ``metrics.jsonl`` (``config.log_every``).
DEFAULT_LOG_EVERY = 100


def _check_inputs_apart(config: Mapping[str, Any], workdir: pathlib.Path) -> None:
  """Refuses a ``config.pretrained``, ``config.data_dir`` or ``idx:`` dataset folder that
  is, or lies in, what the run writes in ``workdir`` (walk5 G5's kind, as the CLI does)."""
  named = [("config.pretrained", config.get("pretrained")),
           ("config.data_dir", config.get("data_dir"))]
  dataset = config.get("dataset")
  if isinstance(dataset, str) and dataset.startswith("idx:"):
    named.append(("the dataset's folder", dataset[len("idx:"):]))
  outputs = [("checkpoints", "train"), ("bundle", "bundle"), ("lock", checkpointing.LOCK_FILE),
             ("metrics log", run_metrics.METRICS_FILE),
             ("TensorBoard files", run_metrics.TENSORBOARD_DIR)]
  for what, given in named:
    if not given:
      continue
    path = pathlib.Path(os.fspath(given)).expanduser().absolute().resolve()
    for output, name in outputs:
      written = (workdir / name).resolve()
      if path == written or written in path.parents:
        raise configs.ConfigError(
            f"{what} {given} is {'' if path == written else 'inside '}the run's {output} "
            f"({written}), which training writes; move it out of the workdir or choose "
            "another workdir")


def _total_steps(fit_cfg: training.FitConfig, num_examples: int) -> int:
  """The run's number of optimiser steps, checked against the data and the step counter."""
  if fit_cfg.batch_size > num_examples:
    raise configs.ConfigError(
        f"config.batch_size={fit_cfg.batch_size} is larger than the {num_examples} training "
        "examples; use a smaller batch")
  total = fit_cfg.epochs * training.steps_per_epoch(num_examples, fit_cfg.batch_size)
  if total > configs.MAX_STEPS:
    raise configs.ConfigError(
        f"config.epochs={fit_cfg.epochs} makes {total} steps, more than the "
        f"{configs.MAX_STEPS} the step counter holds; train fewer epochs")
  return total


def _has_steps(train_dir: pathlib.Path) -> bool:
  """Whether a training checkpoint directory holds any step directory (complete or not)."""
  try:
    return any(p.name.isdigit() for p in train_dir.iterdir())
  except OSError:
    return False


def _training_data(config):
  """``(epochs source, DatasetInfo, model input shape)`` of a config's training split.

  ``stream: True`` with a ``tfds:`` dataset reads one batch at a time (data larger than
  memory); otherwise the split is loaded into memory.
  """
  name, data_dir = config["dataset"], config.get("data_dir")
  download = bool(config.get("download", False))
  if config.get("stream"):
    if not name.startswith("tfds:"):
      raise DatasetError(f"stream=True needs a tfds: dataset, not {name!r}; "
                         "other sources are read into memory")
    info = open_tfds(name, "train", data_dir=data_dir, download=download).info()
  else:
    ds = load_dataset(name, "train", data_dir=data_dir, download=download)
    info = ds.info
  shape = tuple(info.shape)
  if config.get("pad_to"):
    if config["pad_to"] < max(shape[:2]):  # Padding cannot shrink them.
      raise configs.ConfigError(
          f"config.pad_to={config['pad_to']} is smaller than the {name} images "
          f"({shape[0]}x{shape[1]}); set it to at least {max(shape[:2])}, or to None")
    shape = (config["pad_to"], config["pad_to"], shape[-1])
  pad = lambda images: prepare_images(images, shape)
  if config.get("stream"):
    return pipeline.TfdsEpochs(name, "train", data_dir, transform=pad), info, shape
  return pipeline.ArrayEpochs(pad(ds.images), ds.labels), info, shape
