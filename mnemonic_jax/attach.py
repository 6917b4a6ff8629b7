"""Attaching mnemonic codes to a model trained without them: a short fine-tune with codes.

Forgetting (Algorithm 2) needs codes the model has learned to classify: the Fisher ratio
of the forgotten classes' codes to the remaining ones' only points at the forgotten
classes' parameters if the model treats each code as its class. Most checkpoints were
trained without codes (``t_mix = 0``, or elsewhere and brought in with ``import``). The
paper's own large-scale route is to take such a model and fine-tune it with codes
(Yamashita, Yamada and Shibata, "One-Shot Machine Unlearning with Mnemonic Code", ACML
2024, the ImageNet rows: pretrained ResNet-18 / ResNeXt-50 / Swin-T "fine-tuned with
codes", ``t_mix = 0.3``) and to forget from the result.

:func:`attach_codes` does that for a bundle: it draws fresh codes (one per class,
:func:`mnemonic_jax.codes.generate_codes`), fine-tunes every parameter for a few epochs
with Algorithm 1 (:func:`mnemonic_jax.training.fit`, each example replaced by its class's
code with probability ``t_mix``) starting from the bundle's parameters and a fresh
optimiser state, and returns the bundle with the new parameters and codes and an entry
in its history (``event: "attach-codes"``, the epochs, ``t_mix``, seed, time, code and
test accuracy before and after). The optimiser settings are the bundle's training config
(:func:`mnemonic_jax.workflow.fit_config`; the paper's MNIST settings for a bundle that
records none), epochs and ``t_mix`` replaced.

Example:
  >>> # bundle: e.g. mj.load_bundle(path) of a model trained with t_mix = 0
  >>> attached, report = attach_codes(bundle, images, labels, epochs=2)
  >>> attached.history[-1]["event"], report.epochs
  ('attach-codes', 2)
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import codes as codes_lib
from mnemonic_jax import _validate, checkpointing, configs, errors, training, workflow
from mnemonic_jax.timing import CompileClock
from mnemonic_jax.bundle import ATTACH_CODES_EVENT, Bundle
from mnemonic_jax.checkpointing.bundle_format import check_bundle
from mnemonic_jax.data import DatasetError, DatasetInfo

#: The paper's code-mixing rate for MNIST, CUB and STN (0.3 for CIFAR-10 and ImageNet).
DEFAULT_T_MIX = 0.1
#: Test accuracy may fall this many points while attaching before it is a warning.
ACCURACY_DROP_WARNING = 1.0
#: ``fold_in`` tags of the attach run's keys under ``key(seed)``; ``workflow.train`` uses
#: 0 (codes) and 1 (training), so a plain model trained with the same seed gets other codes.
_CODES_TAG, _TRAIN_TAG = 2, 3


@dataclasses.dataclass(frozen=True)
class AttachReport:
  """What attaching codes did.

  Attributes:
    epochs: fine-tuning epochs.
    steps: optimiser steps taken.
    t_mix: probability of replacing an example by its class's code.
    seed: the seed the codes and the fine-tuning's randomness were drawn from.
    code_distribution: ``"uniform"`` or ``"normal"``.
    dataset: name of the data fine-tuned on (as given; may be empty).
    fit: the fine-tuning's hyper-parameters (a :class:`FitConfig` as a dict).
    train_examples: training examples fine-tuned on.
    seconds: wall-clock seconds of the fine-tuning, compilation excluded.
    compile_seconds: seconds JAX spent compiling during it.
    codes_accuracy_before: fraction of the new codes classified as their class by the
      model before attaching (chance, usually).
    codes_accuracy_after: the same after attaching (1.0 when every code is learned).
    replaced_codes_accuracy: fraction of the bundle's own codes (the ones replaced) its
      model classified as their class before attaching: high means it could already
      forget with them.
    test_before, test_after: evaluations on the test data given (or None).
    final_metrics: the last step's metrics (loss, image_loss, code_loss, ...).
    warnings: sentences saying why the result may not be usable as it is.
  """

  epochs: int
  steps: int
  t_mix: float
  seed: int
  code_distribution: str
  dataset: str
  fit: dict[str, Any]
  train_examples: int
  seconds: float
  compile_seconds: float
  codes_accuracy_before: float
  codes_accuracy_after: float
  replaced_codes_accuracy: float
  test_before: workflow.Evaluation | None
  test_after: workflow.Evaluation | None
  final_metrics: dict[str, float]
  warnings: tuple[str, ...] = ()

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary: the bundle's history entry (``event``, ``classes: []``, ...)."""
    accuracy = lambda ev: None if ev is None else float(ev.accuracy)
    return {
        "event": ATTACH_CODES_EVENT, "classes": [], "epochs": self.epochs,
        "steps": self.steps, "t_mix": self.t_mix, "seed": self.seed,
        "code_distribution": self.code_distribution, "dataset": self.dataset,
        "fit": dict(self.fit),
        "train_examples": self.train_examples, "seconds": self.seconds,
        "compile_seconds": self.compile_seconds,
        "codes_accuracy_before": self.codes_accuracy_before,
        "codes_accuracy_after": self.codes_accuracy_after,
        "replaced_codes_accuracy": self.replaced_codes_accuracy,
        "test_accuracy_before": accuracy(self.test_before),
        "test_accuracy_after": accuracy(self.test_after),
        "final_metrics": dict(self.final_metrics), "warnings": list(self.warnings),
    }


def check_dataset(bundle: Bundle, info: DatasetInfo, name: str) -> None:
  """Refuses a dataset whose classes or image shape do not fit the bundle's model.

  Images smaller than the model's input with the same channels fit: they are zero-padded
  centrally (:func:`mnemonic_jax.workflow.prepare_images`), as training padded them.

  Args:
    bundle: the bundle codes are to be attached to.
    info: the dataset's description.
    name: the dataset's name (for the message).

  Raises:
    DatasetError: another number of classes, or images that do not fit the model's input.
  """
  if info.num_classes != bundle.num_classes:
    raise DatasetError(
        f"{name} has {info.num_classes} classes but the model has {bundle.num_classes}; "
        "attach codes with the dataset the model was trained on (pass --dataset NAME)")
  (h, w, c), (th, tw, tc) = tuple(info.shape), tuple(bundle.input_shape)
  if c != tc or h > th or w > tw:
    raise DatasetError(
        f"{name} has images of shape {(h, w, c)} but the model takes inputs of shape "
        f"{(th, tw, tc)}; attach codes with the dataset the model was trained on "
        "(pass --dataset NAME)")


def check_attachable(bundle: Bundle) -> None:
  """Refuses a bundle from which classes were forgotten.

  Fine-tuning with codes reads every class's training data, so it would teach the
  forgotten classes again; attach codes before forgetting.

  Raises:
    ValueError: the bundle's history has forgotten classes.
  """
  if bundle.forgotten_classes:
    raise errors.BadRequest(
        f"the model has forgotten class(es) {', '.join(map(str, bundle.forgotten_classes))}; "
        "fine-tuning with codes on every class would teach them again; attach codes to the "
        "model before forgetting")


def attach_fit_config(bundle: Bundle, epochs: int, t_mix: float = DEFAULT_T_MIX, *,
                      learning_rate: float | None = None,
                      batch_size: int | None = None) -> training.FitConfig:
  """The fine-tuning's hyper-parameters: the bundle's training config, epochs and t_mix set.

  Args:
    bundle: the bundle (its ``config`` gives batch size, learning rate, momentum, weight
      decay, schedule and augmentation; :class:`FitConfig`'s defaults, the paper's MNIST
      settings, for what it does not record).
    epochs: fine-tuning epochs (>= 1).
    t_mix: code-mixing probability, in (0, 1] (0 refused: the model would never see its
      codes).
    learning_rate: overrides the config's, if given (> 0).
    batch_size: overrides the config's, if given (>= 1).

  Returns:
    A :class:`~mnemonic_jax.training.FitConfig`.

  Raises:
    ValueError: ``epochs``, ``t_mix``, ``learning_rate`` or ``batch_size`` out of range, or
      a training field of the bundle's config that is (see
      :data:`mnemonic_jax.configs.FIELD_CHECKS`).
  """
  _check_field("epochs", epochs)
  problem = _check_field("t_mix", t_mix, raise_=False)
  if problem:
    raise errors.BadRequest(f"t_mix={t_mix!r} {problem}; attaching needs t_mix in (0, 1], the "
                            "probability that an example is replaced by its class's code")
  if t_mix <= 0:
    raise errors.BadRequest(f"t_mix must be a number in (0, 1], got {t_mix!r}; with t_mix 0 the "
                            "model never sees its codes")
  recorded = dict(bundle.config or {})
  for field in workflow.TRAIN_FIELDS:
    if field in recorded and field not in ("epochs", "t_mix"):
      problem = _check_field(field, recorded[field], raise_=False)
      if problem:
        raise errors.BadRequest(f"the bundle's config.{field}={recorded[field]!r} {problem}; it "
                         "cannot be fine-tuned with it")
  fit_cfg = dataclasses.replace(workflow.fit_config(recorded), epochs=int(epochs),
                                t_mix=float(t_mix))
  for field, value in (("learning_rate", learning_rate), ("batch_size", batch_size)):
    if value is not None:
      _check_field(field, value)
      fit_cfg = dataclasses.replace(fit_cfg, **{field: value})
  return fit_cfg


def codes_accuracy(bundle: Bundle, params: Any = None, codes: Any = None) -> float:
  """Fraction of ``codes`` (default: the bundle's) its model classifies as their class."""
  codes = bundle.codes if codes is None else codes
  params = bundle.params if params is None else params
  logits = bundle.apply_fn()(params, jnp.asarray(codes))
  return float(np.mean(np.argmax(np.asarray(logits), -1) == np.arange(len(codes))))


def attach_codes(
    bundle: Bundle,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    t_mix: float = DEFAULT_T_MIX,
    seed: int = 0,
    code_distribution: str = "uniform",
    learning_rate: float | None = None,
    batch_size: int | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    dataset: str = "",
    progress: bool = False,
    mesh=None,
) -> tuple[Bundle, AttachReport]:
  """Fine-tunes a bundle with freshly drawn mnemonic codes, so that it can forget later.

  Draws one code per class from ``fold_in(key(seed), 2)`` (the fine-tuning's randomness
  from ``fold_in(key(seed), 3)``), then runs Algorithm 1 (:func:`training.fit`) for
  ``epochs`` epochs on ``(images, labels)``, starting from the bundle's parameters and
  BatchNorm statistics with a fresh optimiser state. The source of the recipe is the
  paper's ImageNet setting (fine-tuning a pretrained model with codes; see the module
  docstring).

  Args:
    bundle: a bundle, usually trained without codes; not modified (its arrays are copied,
      as the train step donates its state). Its codes, if any, are replaced.
    images: the training images, uint8 NHWC (zero-padded to the model's input if smaller).
    labels: their labels, integers in ``[0, bundle.num_classes)``.
    epochs: fine-tuning epochs.
    t_mix: probability of replacing an example by its class's code (paper: 0.1 for
      MNIST, 0.3 for the ImageNet fine-tuning).
    seed: seed of the codes and of the fine-tuning's shuffling and mixing (an integer, as
      ``config.seed`` of :func:`mnemonic_jax.workflow.train`).
    code_distribution: ``"uniform"`` on [0, 1) or ``"normal"``, in the model's input space.
    learning_rate, batch_size: override the bundle's training config
      (:func:`attach_fit_config`).
    test: optional ``(images, labels)`` to evaluate before and after (recorded).
    dataset: name of the training data, recorded in the history entry.
    progress: show a progress bar.
    mesh: optional device mesh (batch split over its ``data`` axis).

  Returns:
    ``(new_bundle, report)``: the bundle with the fine-tuned parameters, the new codes and
    ``report.to_dict()`` appended to its history; and the :class:`AttachReport`.

  Raises:
    ValueError: the bundle has forgotten classes (fine-tuning on every class would teach
      them again), bad hyper-parameters (see :func:`attach_fit_config`), a seed outside
      ``[0, 2^63)``, an unknown code distribution, or a fine-tuning that made the
      parameters non-finite.
    DatasetError: images that do not fit the model, labels outside its classes, images
      and labels of different lengths (training or test), training labels without any
      example of some class (refused, not warned: that class would never learn its code
      and would fade from the model unrecorded), or fewer training examples than one
      batch.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)  # A hand-built bundle's fields against its model.
  check_attachable(bundle)
  _check_field("seed", seed)
  if code_distribution not in codes_lib.DISTRIBUTIONS:
    raise errors.BadRequest(f"unknown code distribution {code_distribution!r}; use one of "
                     f"{', '.join(codes_lib.DISTRIBUTIONS)}")
  fit_cfg = attach_fit_config(bundle, epochs, t_mix, learning_rate=learning_rate,
                              batch_size=batch_size)
  images = workflow.prepare_images(np.asarray(images), bundle.input_shape)
  _validate.listed_bool(labels, "attach_codes: labels")
  labels = np.asarray(labels)
  _check_labels(labels, bundle.num_classes, images=images)
  missing = sorted(set(range(bundle.num_classes)) - {int(c) for c in np.unique(labels)})
  if missing:
    raise DatasetError(
        f"the training labels have no example of class(es) {_ids(missing)} (of "
        f"{bundle.num_classes}); attaching fine-tunes on every class: a class without "
        "examples would never learn its code and would fade from the model unrecorded; "
        "pass training data with every class")
  if test is not None:
    if not isinstance(test, (tuple, list)) or len(test) != 2:
      raise errors.BadRequestType("test must be a pair (images, labels)")
    test = (workflow.prepare_images(np.asarray(test[0]), bundle.input_shape),
            np.asarray(test[1]))
    _check_labels(test[1], bundle.num_classes, "test", images=test[0])
  if len(labels) < fit_cfg.batch_size:
    raise DatasetError(f"{len(labels)} training examples are fewer than one batch of "
                       f"{fit_cfg.batch_size}; pass more data or a smaller batch size")

  root = jax.random.key(seed)
  new_codes = codes_lib.generate_codes(
      jax.random.fold_in(root, _CODES_TAG), bundle.num_classes, bundle.input_shape,
      distribution=code_distribution)
  test_before = test_after = None
  if test is not None:
    test_before = workflow.evaluate(bundle, *test, forgotten=())
  before = codes_accuracy(bundle, codes=new_codes)
  replaced = codes_accuracy(bundle)

  copy = lambda tree: jax.tree.map(jnp.array, tree)  # fit donates its state.
  params = copy(bundle.params)
  optimizer = training.make_optimizer(
      fit_cfg.learning_rate, momentum=fit_cfg.momentum, weight_decay=fit_cfg.weight_decay,
      schedule=fit_cfg.schedule,
      total_steps=fit_cfg.epochs * training.steps_per_epoch(len(labels), fit_cfg.batch_size))
  state = training.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              batch_stats=copy(bundle.batch_stats),
                              opt_state=optimizer.init(params))
  with CompileClock() as clock:
    start = time.perf_counter()
    state, last = training.fit(
        bundle.model, (images, labels), new_codes, fit_cfg,
        jax.random.fold_in(root, _TRAIN_TAG), mean=bundle.mean, std=bundle.std, mesh=mesh,
        state=state, progress=progress)
    state = jax.block_until_ready(state)
    wall = time.perf_counter() - start
  params, batch_stats = jax.device_get((state.params, state.batch_stats))
  bad = checkpointing.nonfinite_leaves({"params": params, "batch_stats": batch_stats})
  if bad:
    raise errors.BadRequest(f"fine-tuning with codes made {sum(n for _, n in bad)} parameters "
                     f"non-finite (first in {bad[0][0]}); use a smaller learning rate")
  new = bundle.replace(params=params, batch_stats=batch_stats, codes=np.asarray(new_codes))
  after = codes_accuracy(new)
  if test is not None:
    test_after = workflow.evaluate(new, *test, forgotten=())
  report = AttachReport(
      epochs=fit_cfg.epochs, steps=int(state.step), t_mix=fit_cfg.t_mix, seed=int(seed),
      code_distribution=code_distribution, dataset=str(dataset), fit=dataclasses.asdict(fit_cfg),
      train_examples=int(len(labels)), seconds=max(wall - clock.seconds, 0.0),
      compile_seconds=clock.seconds, codes_accuracy_before=before,
      codes_accuracy_after=after, replaced_codes_accuracy=replaced,
      test_before=test_before, test_after=test_after,
      final_metrics={k: float(v) for k, v in last.items()})
  report = dataclasses.replace(report, warnings=tuple(attach_warnings(report,
                                                                      bundle.num_classes)))
  return new.replace(history=bundle.history + (report.to_dict(),)), report


def attach_warnings(report: AttachReport, num_classes: int) -> list[str]:
  """Why an attached model may not be ready to forget or to use (empty if nothing).

  Args:
    report: what :func:`attach_codes` did.
    num_classes: the model's number of classes.

  Returns:
    One sentence per problem: codes still misclassified after attaching (forgetting from
    them may not work), a test accuracy that fell by more than
    :data:`ACCURACY_DROP_WARNING` points, or replaced codes that the model had learned
    (half of them or more classified as their class: the input could forget already).
  """
  warnings = []
  learned = int(round(report.replaced_codes_accuracy * num_classes))
  if learned * 2 >= num_classes:
    warnings.append(
        f"the bundle's own codes were learned ({learned} of {num_classes} classified as "
        "their class) and are replaced by new ones; to forget with them, forget from the "
        "input bundle instead")
  wrong = int(round((1.0 - report.codes_accuracy_after) * num_classes))
  if wrong:
    warnings.append(
        f"{wrong} of {num_classes} codes are not classified as their class after "
        f"{report.epochs} epoch(s) of attaching; forgetting from them may not work; attach "
        "for more epochs or with a larger t_mix")
  if report.test_before is not None and report.test_after is not None:
    drop = report.test_before.accuracy - report.test_after.accuracy
    if math.isfinite(drop) and drop > ACCURACY_DROP_WARNING:
      warnings.append(
          f"test accuracy fell by {drop:.2f} points while attaching "
          f"({report.test_before.accuracy:.2f}% -> {report.test_after.accuracy:.2f}%); try "
          "a smaller learning rate or t_mix")
  return warnings


def _ids(classes: list[int]) -> str:
  """``"3, 7"``, the first 20 of many then ``"... (N in all)"``."""
  shown = ", ".join(map(str, classes[:20]))
  return shown if len(classes) <= 20 else f"{shown}, ... ({len(classes)} in all)"


def _check_labels(labels: np.ndarray, num_classes: int, what: str = "training", *,
                  images: np.ndarray | None = None) -> None:
  """Refuses labels that are not integers in ``[0, num_classes)``, or not one per image."""
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DatasetError(f"{what} labels must be a 1-D integer array, got {labels.dtype} "
                       f"{labels.shape}")
  if images is not None and len(images) != len(labels):
    raise DatasetError(f"{what} data have {len(images)} images but {len(labels)} labels; "
                       "pass one label per image")
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise DatasetError(
        f"{what} labels run from {int(labels.min())} to {int(labels.max())} but the model "
        f"has {num_classes} classes; attach codes with the dataset the model was trained on")


def _check_field(field: str, value: Any, *, raise_: bool = True) -> str | None:
  """Checks a value as the config field of that name (:data:`configs.FIELD_CHECKS`).

  Returns:
    The problem (one phrase), or None; with ``raise_`` a problem raises instead.

  Raises:
    ValueError: ``value`` is out of range for ``field`` (only with ``raise_``).
  """
  problem = configs.FIELD_CHECKS[field][1](value)
  if problem and raise_:
    raise errors.BadRequest(f"{field}={value!r} {problem}")
  return problem
