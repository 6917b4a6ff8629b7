"""Depth of forgetting against the retrain oracle: every attack on three bundles, one report.

:func:`depth_report` runs the attacks of :mod:`mnemonic_jax.evaluation.attacks` on the
model after forgetting (``unlearned``), the retrain oracle (trained from scratch without
the forgotten classes, same initialisation and seed) and the original, and reports per
attack the method's value, the oracle's, the gap (method - oracle; for relearning the
ratio method / oracle) and, given oracles of other seeds, the oracle's seed-to-seed
spread. A plain-words verdict says when the forgetting is output-level only (the logits
suppressed, the features the original's); :func:`mnemonic_jax.evaluation.depth_goals`
scores a report against the depth goals (docs/depth.md)
(:mod:`mnemonic_jax.evaluation.report`).

Sources: DEPTH.md (the attacks and why each is read against the oracle); the attacks'
own sources are in their docstrings.

Example:
  >>> data = DepthData.of(train, test)  # doctest: +SKIP
  >>> report = depth_report(forgotten, oracle, original, data, [3])  # doctest: +SKIP
  >>> print(report.verdict.text)  # doctest: +SKIP
  >>> [(g.name, g.passed) for g in depth_goals(report)]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mnemonic_jax import _validate, codes, errors, metrics, relearning
from mnemonic_jax.baselines.base import Split
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.evaluation import attacks
from mnemonic_jax.evaluation import features as feats
from mnemonic_jax.evaluation import report as report_lib
from mnemonic_jax.evaluation.references import (  # noqa: F401  (re-exported)
    ORACLE_MAX_FORGOTTEN_ACCURACY, ORIGINAL_MIN_FORGOTTEN_ACCURACY, check_comparable,
    check_references, check_retrained, model_attributes)
from mnemonic_jax.evaluation.report import DepthReport, Figure, Verdict


@dataclasses.dataclass(frozen=True)
class DepthConfig:
  """How each attack is run (defaults: DEPTH.md and the attacks' sources).

  Attributes:
    shots: labelled training images per class the attacker holds (10-shot constant,
      nearest class mean, head fine-tuning).
    prototype_shots: images per forgotten class of the prototype attack (k = 5).
    prototype_alpha, prototype_metric: the prototype attack's weight and head kind.
    scales: input scales queried.
    probe_per_class: training images per class the linear probe is fitted on (``None``:
      all).
    probe_c, probe_max_iter: the probe's inverse L2 strength and lbfgs iterations.
    head_steps: head fine-tuning step counts reported.
    head_learning_rate, head_momentum: its SGD.
    relearn: the relearning run (:class:`mnemonic_jax.relearning.RelearnConfig`);
      ``None`` skips relearning (the slowest attack), and so does ``max_steps=0`` (no step
      taken: every model would read "never", which says nothing; the goal is then "not
      measured", never met).
    relearn_fraction, relearn_min_examples: the relearning sample
      (:func:`mnemonic_jax.relearning.relearn_sample`).
    batch_size: rows per forward call.

  Every field is checked on construction: counts (``shots``, ``prototype_shots``,
  ``probe_per_class`` unless ``None``, ``probe_max_iter``, each of ``head_steps``,
  ``relearn_min_examples``, ``batch_size``) are integers >= 1; ``scales`` are distinct
  finite numbers > 0; ``head_steps`` are distinct counts (both a tuple, a list or a 1-d
  array, stored as a tuple of Python numbers; either empty leaves its attack out, as
  ``relearn=None`` does relearning);
  ``prototype_alpha`` lies in ``[0, 1]``, ``prototype_metric`` is ``"cosine"`` or
  ``"l2"``; ``probe_c`` and ``head_learning_rate`` are > 0; ``head_momentum`` lies in
  ``[0, 1)``; ``relearn_fraction`` in ``(0, 1]``.

  Raises:
    BadRequestType: a field of the wrong kind (a float count, a string, ...).
    BadRequest: a field out of its range; the message names the field.
  """

  shots: int = 10
  prototype_shots: int = 5
  prototype_alpha: float = 0.5
  prototype_metric: str = "cosine"
  scales: tuple[float, ...] = (1.5, 2.0, 3.0)
  probe_per_class: int | None = 500
  probe_c: float = 1.0
  probe_max_iter: int = 1000
  head_steps: tuple[int, ...] = (10, 50)
  head_learning_rate: float = 0.01
  head_momentum: float = 0.9
  relearn: relearning.RelearnConfig | None = dataclasses.field(
      default_factory=relearning.RelearnConfig)
  relearn_fraction: float = 0.01
  relearn_min_examples: int = 8
  batch_size: int = 1024

  def __post_init__(self):
    own, count, number = "DepthConfig", relearning.check_integer, relearning.check_number
    # Stored as Python numbers and strings (a NumPy or 0-d JAX value given): the config is
    # recorded in reports and hashed.
    set_ = functools.partial(object.__setattr__, self)
    for name in ("shots", "prototype_shots", "probe_max_iter", "relearn_min_examples",
                 "batch_size"):
      set_(name, count(own, name, getattr(self, name), low=1))
    if self.probe_per_class is not None:
      set_("probe_per_class", count(own, "probe_per_class", self.probe_per_class, low=1))
    set_("prototype_alpha", number(own, "prototype_alpha", self.prototype_alpha, low=0.0,
                                   high=1.0))
    if not isinstance(self.prototype_metric, str) or self.prototype_metric not in ("cosine",
                                                                                   "l2"):
      raise errors.BadRequest(f"{own}.prototype_metric must be 'cosine' or 'l2', got "
                              f"{self.prototype_metric!r}")
    set_("prototype_metric", str(self.prototype_metric))
    set_("probe_c", number(own, "probe_c", self.probe_c, low=0.0, low_open=True))
    set_("head_learning_rate", number(own, "head_learning_rate", self.head_learning_rate,
                                      low=0.0, low_open=True))
    set_("head_momentum", number(own, "head_momentum", self.head_momentum, low=0.0, high=1.0,
                                 high_open=True))
    set_("relearn_fraction", number(own, "relearn_fraction", self.relearn_fraction, low=0.0,
                                    high=1.0, low_open=True))
    for name, check, least in (("scales", number, None), ("head_steps", count, 1)):
      values = getattr(self, name)
      if hasattr(values, "shape") and hasattr(values, "dtype") and np.ndim(values) == 1:
        values = tuple(np.asarray(values).tolist())  # A 1-d array, as the attacks take.
      if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise errors.BadRequestType(f"{own}.{name} must be a tuple (or a 1-d array), got "
                                    f"{values!r}")
      values = tuple(check(own, f"{name}[{i}]", v, low=0.0, low_open=True) if least is None
                     else check(own, f"{name}[{i}]", v, low=least)
                     for i, v in enumerate(values))
      if len(set(values)) != len(values):
        raise errors.BadRequest(f"{own}.{name} holds a value twice: {values}")
      set_(name, values)
    if self.relearn is not None and not isinstance(self.relearn, relearning.RelearnConfig):
      raise errors.BadRequestType(f"{own}.relearn must be a RelearnConfig or None, got "
                                  f"{type(self.relearn).__name__}")


@dataclasses.dataclass(frozen=True)
class DepthData:
  """The labelled images the attacks use: ``train`` (the attacker's few labelled images,
  the probe's and the relearning sample) and ``test`` (where every figure is scored).

  Attributes:
    train, test: :class:`mnemonic_jax.baselines.base.Split` (``uint8`` images, labels).
  """

  train: Split
  test: Split

  @classmethod
  def of(cls, train: Any, test: Any) -> DepthData:
    """From anything with ``images`` and ``labels`` (a ``Dataset``, a ``Split``) or pairs."""
    def split(value: Any, name: str) -> Split:
      if hasattr(value, "images") and hasattr(value, "labels"):
        return Split(np.asarray(value.images), np.asarray(value.labels))
      if isinstance(value, (tuple, list)) and len(value) == 2:
        return Split(np.asarray(value[0]), np.asarray(value[1]))
      raise errors.BadRequestType(f"{name} must have images and labels (a Dataset, a Split "
                                  f"or an (images, labels) pair), got {type(value).__name__}")
    return cls(split(train, "train"), split(test, "test"))


# ----------------------------------------------------------------------------------------
# Checks (of the oracle and the original: :mod:`mnemonic_jax.evaluation.references`).


#: The fewest test images of each forgotten class :func:`depth_report` takes: the half-split
#: one-constant attack needs one in each half, linear CKA two examples.
MIN_TEST_PER_FORGOTTEN_CLASS = 2


def _check_data(data: DepthData, bundle: Bundle, classes: tuple[int, ...],
                config: DepthConfig) -> DepthData:
  if not isinstance(data, DepthData):
    raise errors.BadRequestType(f"data must be a DepthData (DepthData.of(train, test)), got "
                                f"{type(data).__name__}")
  for name, split in (("train", data.train), ("test", data.test)):
    _validate.listed_bool(split.labels, f"the {name} labels")
    images, labels = np.asarray(split.images), np.asarray(split.labels)
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(bundle.input_shape):
      raise errors.BadRequest(f"the {name} images are {images.dtype} {images.shape}; the model "
                              f"takes uint8 (N, {', '.join(map(str, bundle.input_shape))})")
    if len(images) != len(labels):
      raise errors.BadRequest(f"the {name} split has {len(images)} images and {len(labels)} "
                              "labels")
    _validate.labels(labels, bundle.num_classes, name=f"{name} labels")
    present = set(np.unique(labels).tolist())
    if not set(classes) <= present:
      raise errors.BadRequest(f"the {name} split holds no example of forgotten classes "
                              f"{sorted(set(classes) - present)}")
    if not present - set(classes):
      raise errors.BadRequest(f"the {name} split holds only forgotten classes")
  if not isinstance(config, DepthConfig):
    raise errors.BadRequestType(f"config must be a DepthConfig, got {type(config).__name__}")
  counts = np.bincount(np.asarray(data.train.labels), minlength=bundle.num_classes)
  need = max(config.shots, config.prototype_shots)
  short = [c for c in classes if counts[c] < need]
  if short:
    raise errors.BadRequest(f"the train split has fewer than {need} images of forgotten "
                            f"classes {short}; the few-shot attacks need that many")
  counts = np.bincount(np.asarray(data.test.labels), minlength=bundle.num_classes)
  short = {c: int(counts[c]) for c in classes if counts[c] < MIN_TEST_PER_FORGOTTEN_CLASS}
  if short:
    raise errors.BadRequest(
        f"the test split holds too few images of forgotten classes (class: images) {short}; "
        f"the depth attacks need {MIN_TEST_PER_FORGOTTEN_CLASS} or more of each (the "
        "one-constant attack chooses on one half of them and scores the other; CKA compares "
        "the models' features over them): give a larger test split")
  return DepthData(Split(np.asarray(data.train.images), np.asarray(data.train.labels)),
                   Split(np.asarray(data.test.images), np.asarray(data.test.labels)))


def _per_class(labels: np.ndarray, count: int | None, key: jax.Array) -> np.ndarray:
  """Up to ``count`` random indices of each class (all with ``None``), sorted by class."""
  out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    idx = idx[attacks.host_rng(jax.random.fold_in(key, int(c))).permutation(len(idx))]
    out.append(idx if count is None else idx[:count])
  return np.concatenate(out)


# ----------------------------------------------------------------------------------------
# The report.

#: (name, label, unit) of the figures, in report order; the input scales and head
#: fine-tuning step counts of the config are inserted before ``probe_recall`` and
#: ``relearn_50`` (:func:`figure_specs`).
FIGURES = (
    ("E_F", "E_F (100 - forgotten test accuracy)", "%"),
    ("A_R", "A_R (retained test accuracy)", "%"),
    ("one_constant_half", "one constant, chosen on half the test set", "%"),
    ("one_constant_shots", "one constant, chosen on the few-shot images", "%"),
    ("probe_recall", "linear probe recall", "%"),
    ("ncm_recall", "nearest class mean recall (few-shot)", "%"),
    ("prototype", "prototype attack (k=5)", "%"),
    ("relearn_50", "relearning steps to 50% of the original", "steps"),
    ("relearn_90", "relearning steps to 90% of the original", "steps"),
    ("cka_to_oracle", "CKA of features to the oracle's", "CKA"),
    ("cka_to_original", "CKA of features to the original's", "CKA"),
    ("distance_to_original", "weight distance to the original", "distance"),
    ("distance_to_oracle", "weight distance to the oracle", "distance"),
)
_FEATURE_ATTACKS = ("probe_recall", "ncm_recall", "prototype", "cka_to_oracle",
                    "cka_to_original")


def depth_report(unlearned: Bundle, oracle: Bundle, original: Bundle, data: DepthData,
                 classes: Sequence[int], *, config: DepthConfig = DepthConfig(),
                 key: jax.Array | None = None, oracle_seeds: Sequence[Bundle] = (),
                 check_references_first: bool = True) -> DepthReport:
  """Runs every depth attack on the unlearned model, the oracle and the original.

  Per model: E_F and A_R on ``data.test``; the one-constant attack chosen on half the test
  set (scored on the other half, both ways) and on ``config.shots`` training images per
  class (scored on the test set); forgotten accuracy at each input scale; then, when the
  model has penultimate features (:mod:`mnemonic_jax.evaluation.features`), linear-probe
  recall (fitted on ``probe_per_class`` training images per class), few-shot
  nearest-class-mean recall, the prototype attack and head fine-tuning on the few-shot
  images; relearning steps (``config.relearn``); and between models, linear CKA of the
  features of the forgotten test images and the relative weight distance. A model
  without features gets the rest (the feature attacks are listed in ``skipped``).

  Args:
    unlearned: the model after forgetting ``classes``.
    oracle: the retrain oracle (same architecture, initialisation and seed).
    original: the model before forgetting.
    data: :class:`DepthData`.
    classes: the forgotten class ids.
    config: :class:`DepthConfig`.
    key: typed PRNG key for every sample (the same for each model); ``None`` is key 0.
    oracle_seeds: oracles of other seeds, for the oracle's seed-to-seed spread.
    check_references_first: refuse an oracle that is not retrained
      (:func:`check_retrained`) or knows the forgotten classes and an original that does
      not (:func:`check_references`) before any attack; False only
      where they are stand-ins whose figures are dropped (``evaluate --depth`` without
      ``--oracle`` or ``--original``, which checks the given ones itself).

  Returns:
    :class:`DepthReport`.

  Raises:
    BadRequestType: an argument that is not a Bundle or DepthData.
    BadRequest: an oracle or original of another architecture, class count or input
      shape; bad classes; data that does not fit the model or lacks the forgotten classes;
      a train split with fewer than ``max(shots, prototype_shots)`` images of a forgotten
      class, a test split with fewer than :data:`MIN_TEST_PER_FORGOTTEN_CLASS`; an oracle
      that knows the forgotten classes or an original that does not
      (:func:`check_references`); an oracle holding the unlearned model's parameters or
      forgotten by another method (:func:`check_retrained`); ``key`` that is not a PRNG
      key (BadRequestType).
  """
  _validate.bundle(unlearned, "unlearned")
  if isinstance(oracle_seeds, Bundle) or not isinstance(oracle_seeds, Sequence):
    raise errors.BadRequestType(f"oracle_seeds must be a sequence of Bundles (e.g. a list), "
                                f"got {type(oracle_seeds).__name__}")
  for name, other in (("oracle", oracle), ("original", original),
                      *((f"oracle_seeds[{i}]", b) for i, b in enumerate(oracle_seeds))):
    check_comparable(unlearned, other, name)
  classes, _ = _validate.forget_request(classes, unlearned.num_classes, name="classes")
  data = _check_data(data, unlearned, classes, config)
  if check_references_first:
    for name, other in (("oracle", oracle),
                        *((f"oracle_seeds[{i}]", b) for i, b in enumerate(oracle_seeds))):
      check_retrained(unlearned, other, name)
    check_references(data.test, classes, batch_size=config.batch_size,
                     original=("original", original),
                     oracles=[("oracle", oracle),
                              *((f"oracle_seeds[{i}]", b) for i, b in enumerate(oracle_seeds))])
  if key is not None:
    codes.check_key(key)
  key = jax.random.key(0) if key is None else key
  train, test = data.train, data.test
  support = _per_class(train.labels, config.shots, jax.random.fold_in(key, 1))
  probe = _per_class(train.labels, config.probe_per_class, jax.random.fold_in(key, 2))
  in_forget = np.isin(test.labels, classes)
  skipped: dict[str, str] = {}
  try:
    feats.head_path(unlearned)
    with_features = True
  except feats.NoFeatures as e:
    with_features = False
    for name in (*_FEATURE_ATTACKS, *(f"head_ft_{n}" for n in config.head_steps)):
      skipped[name] = str(e)

  models = {"method": unlearned, "oracle": oracle, "original": original,
            **{f"oracle{i + 1}": b for i, b in enumerate(oracle_seeds)}}
  values: dict[str, dict[str, float]] = {}
  forgotten_features: dict[str, np.ndarray] = {}
  for name, bundle in models.items():
    values[name], forgotten_features[name] = _measure(
        bundle, train, test, support, probe, in_forget, classes, config, key, with_features)

  original_accuracy = 100.0 - values["original"]["E_F"]
  if config.relearn is None:
    skipped["relearn"] = "config.relearn is None"
  elif config.relearn.max_steps == 0:  # No step taken: "never" for every model, no evidence.
    skipped["relearn"] = "config.relearn.max_steps is 0"
  elif not original_accuracy > relearning.MIN_REFERENCE_ACCURACY:
    skipped["relearn"] = (f"the original model gets {original_accuracy:.1f}% of the "
                          "forgotten test images right: nothing to relearn")
  else:
    _relearn(models, values, train, test, classes, original_accuracy, config, key)

  for name, bundle in models.items():
    v = values[name]
    if with_features:
      v["cka_to_oracle"] = attacks.linear_cka(forgotten_features[name],
                                              forgotten_features["oracle"])
      v["cka_to_original"] = attacks.linear_cka(forgotten_features[name],
                                                forgotten_features["original"])
    v["distance_to_original"] = attacks.weight_distance(bundle.params, original.params)
    v["distance_to_oracle"] = attacks.weight_distance(bundle.params, oracle.params)

  figures = []
  for name, label, unit in figure_specs(config):
    if name not in values["method"]:
      continue
    m, o, g = (values[k][name] for k in ("method", "oracle", "original"))
    ratio = name.startswith("relearn_")
    gap = attacks.relearn_ratio(_steps(m), _steps(o)) if ratio else m - o
    oracle_values = [values[k][name] for k in values if k.startswith("oracle")]
    finite = [x for x in oracle_values if math.isfinite(x)]
    spread = float(np.std(finite, ddof=1)) if len(oracle_seeds) and len(finite) > 1 else None
    figures.append(Figure(name, label, unit, m, o, g, gap, spread, ratio))
  report = DepthReport(tuple(classes), tuple(figures), skipped, Verdict(False, ""),
                       1 + len(oracle_seeds))
  return dataclasses.replace(report, verdict=report_lib.verdict(report))


def figure_specs(config: DepthConfig) -> list[tuple[str, str, str]]:
  """``(name, label, unit)`` of every figure a report with ``config`` holds, in order.

  Raises:
    BadRequestType: ``config`` is not a :class:`DepthConfig`.
  """
  if not isinstance(config, DepthConfig):
    raise errors.BadRequestType(f"config must be a DepthConfig, got {type(config).__name__}")
  specs = list(FIGURES)
  at = [n for n, _, _ in specs].index("probe_recall")
  scales = [(f"input_scale_x{s:g}", f"input scaled x{s:g}", "%") for s in config.scales]
  specs[at:at] = scales
  at = [n for n, _, _ in specs].index("relearn_50")
  specs[at:at] = [(f"head_ft_{n}", f"head fine-tuning, {n} steps", "%")
                  for n in config.head_steps]
  return specs


def _steps(v: float) -> int | None:
  return None if not math.isfinite(v) else int(v)


def _measure(bundle: Bundle, train: Split, test: Split, support: np.ndarray,
             probe: np.ndarray, in_forget: np.ndarray, classes: tuple[int, ...],
             config: DepthConfig, key: jax.Array, with_features: bool
             ) -> tuple[dict[str, float], np.ndarray | None]:
  """Every single-model attack on one bundle; also its features of the forgotten test images."""
  bs = config.batch_size
  head = feats.head_of(bundle) if with_features else None
  path = head.path if head else None
  out = feats.forward(bundle, test.images, features=with_features, batch_size=bs, path=path)
  shot = feats.forward(bundle, train.images[support], features=with_features, batch_size=bs,
                       path=path)
  y_test, y_shot = test.labels, train.labels[support]
  basic = metrics.forgetting_metrics(out.logits, y_test, classes)
  v = {"E_F": basic["E_F"], "A_R": basic["A_R"],
       "one_constant_half": attacks.half_split_recovery(out.logits, y_test, classes,
                                                        key=jax.random.fold_in(key, 0)),
       "one_constant_shots": attacks.one_constant_recovery(shot.logits, y_shot, out.logits,
                                                           y_test, classes)}
  forgotten_images = test.images[in_forget]
  for s in config.scales:
    scaled = feats.forward(bundle, forgotten_images, features=False, scale=s, batch_size=bs)
    v[f"input_scale_x{s:g}"] = attacks.forgotten_accuracy(scaled.logits, y_test[in_forget],
                                                          classes)
  if head is None:
    return v, None
  probe_features = feats.forward(bundle, train.images[probe], batch_size=bs,
                                 path=path).features
  v["probe_recall"] = attacks.probe_recall(probe_features, train.labels[probe], out.features,
                                           y_test, classes, c=config.probe_c,
                                           max_iter=config.probe_max_iter)
  v["ncm_recall"] = attacks.ncm_recall(shot.features, y_shot, out.features, y_test, classes)
  v["prototype"] = attacks.prototype_attack(
      shot.features, y_shot, head.kernel, head.bias, out.features, y_test, classes,
      shots=config.prototype_shots, alpha=config.prototype_alpha,
      metric=config.prototype_metric)
  tuned = attacks.head_finetune_recovery(
      shot.features, y_shot, head.kernel, head.bias, out.features, y_test, classes,
      steps=config.head_steps, learning_rate=config.head_learning_rate,
      momentum=config.head_momentum) if config.head_steps else {}
  v.update({f"head_ft_{n}": a for n, a in tuned.items()})
  return v, out.features[in_forget]


def _relearn(models: dict[str, Bundle], values: dict[str, dict[str, float]], train: Split,
             test: Split, classes: tuple[int, ...], reference: float, config: DepthConfig,
             key: jax.Array) -> None:
  """Relearning steps to 50% / 90% of the original's forgotten accuracy, for every model."""
  f_train = np.isin(train.labels, classes)
  forget = Split(train.images[f_train], train.labels[f_train])
  retain = Split(train.images[~f_train], train.labels[~f_train])
  f_test = np.isin(test.labels, classes)
  probe = Split(test.images[f_test], test.labels[f_test])
  sample = relearning.relearn_sample(forget, config.relearn_fraction,
                                     config.relearn_min_examples,
                                     key=jax.random.fold_in(key, 3))
  for name, bundle in models.items():
    result = relearning.relearn_steps(bundle, sample, retain, probe, reference,
                                      config.relearn, key=jax.random.fold_in(key, 4))
    for level, steps in ((50, result.steps_to_50), (90, result.steps_to_90)):
      values[name][f"relearn_{level}"] = float("inf") if steps is None else float(steps)
