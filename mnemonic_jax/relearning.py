"""Relearning time: how fast a forgotten class comes back when fine-tuned on a few images.

SOURCE: the "relearn time" of Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless
Net: Selective Forgetting in Deep Networks", CVPR 2020 (the number of fine-tuning epochs
a scrubbed model needs to get the forgotten data's loss back under a threshold), in the
form the mnemonic-jax baselines issue (#7) asks for: from a forgotten model, fine-tune on
a small sample of the forgotten classes' *training* images (1% of them by default) and
count the optimiser steps until the accuracy on the forgotten classes' *test* images is
back to 50% and to 90% of the original model's.

Read it against the retrain oracle, which never knew the class: the oracle's count is what
learning the class from that small sample costs. Forgetting that relearns much faster
than the oracle is shallow (the knowledge was hidden, not removed); as slow as the oracle
is as deep as retraining. A count of 0 means the class was never forgotten.

Choices (fields of :class:`RelearnConfig`):

* Each batch (64) takes 10% of its rows (6) from the sample, cycled, and the rest from
  retained examples: about the share a class has in a 10-class dataset. The retained rows
  keep the model honest: fine-tuned on the forgotten class alone, a model learns to
  predict that class for every input, which reads as perfect recall on the probe without
  discriminating anything. On the digits MLP (class 3, seed 0) this share separates the
  methods: the oracle needs 11 / 12 steps to 50% / 90%, a fine-tuned model that still
  half-knows the class 2 / 6. A half-sample batch (0.5) was tried first and relearned
  every model, the oracle included, within 5 steps: no contrast left to read.
* SGD, learning rate 0.01, momentum 0.9 (the paper's MNIST training settings), the model
  in training mode (BatchNorm statistics adapt, as in any fine-tuning).
* The probe accuracy is evaluated at step 0 (before any update) and after every step
  (``eval_every`` 1) up to ``max_steps`` (500); a threshold is "reached" at the first
  evaluation at or above it, so counts are multiples of ``eval_every``. ``None``: not
  reached.

Example (``train`` and ``test`` are ``mnemonic_jax.data.load_dataset`` splits):
  >>> from mnemonic_jax.baselines import UnlearnData, unlearn
  >>> data = UnlearnData.from_training(train.images, train.labels, classes=[3])
  >>> held_out = UnlearnData.from_training(test.images, test.labels, classes=[3])
  >>> forgotten, _ = unlearn("mnemonic-auto", bundle, [3])
  >>> sample = relearn_sample(data.forget, key=key)   # training images: 1% of D_f, >= 8
  >>> result = relearn_steps(forgotten, sample, data.retain, held_out.forget,  # test images
  ...                        reference_accuracy=98.0, config=RelearnConfig(max_steps=20),
  ...                        key=key)
  >>> result.curve[0][0], result.steps
  (0, 20)

Units: accuracies are percentages (0..100), as :func:`mnemonic_jax.metrics.per_class_accuracy`
gives them; a ``reference_accuracy`` of 1 or less is refused as a likely fraction (a model
that gets at most 1% of the forgotten classes right never knew them: nothing to relearn).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, codes, errors
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines.base import LoopState, Split
from mnemonic_jax.bundle import Bundle, model_variables
from mnemonic_jax.checkpointing.bundle_format import check_bundle

PyTree = Any

#: The two recovery levels reported, as fractions of the reference accuracy.
LEVELS = (0.5, 0.9)
#: The reference accuracy (%) must exceed this: 1 or less reads as a fraction given for a
#: percentage (0.973 for 97.3), and a model that gets at most 1% of the forgotten classes
#: right never knew them, so there is nothing to relearn.
MIN_REFERENCE_ACCURACY = 1.0


@dataclasses.dataclass(frozen=True)
class RelearnConfig:
  """How the forgotten model is fine-tuned and probed.

  Every field is checked on construction.

  Attributes:
    batch_size: examples per step (an integer >= 2).
    sample_share: fraction of each batch taken from the forgotten-class sample (cycled);
      the rest are retained examples. In ``(0, 1)``; rounded to at least one row each.
    learning_rate: SGD step size (> 0); momentum in ``[0, 1)``; weight_decay >= 0
      (``baselines.base.sgd``).
    eval_every: steps between two probe evaluations (an integer >= 1).
    max_steps: the most optimiser steps taken (an integer >= 0).
    train_mode: fine-tune with the model in training mode (BatchNorm batch statistics).
    stop_early: stop once both levels are reached (the curve then ends there).
    eval_batch_size: probe images per evaluation call (an integer >= 1).

  Raises:
    BadRequestType: a field of the wrong kind (a float step count, a string rate, ...).
    BadRequest: a field out of its range; the message names the field.
  """

  batch_size: int = 64
  sample_share: float = 0.1
  learning_rate: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 0.0
  eval_every: int = 1
  max_steps: int = 500
  train_mode: bool = True
  stop_early: bool = True
  eval_batch_size: int = 1024

  def __post_init__(self):
    owner, set_ = "RelearnConfig", functools.partial(object.__setattr__, self)
    # Stored as Python numbers (a NumPy or 0-d JAX number given): the config is hashed.
    set_("batch_size", check_integer(owner, "batch_size", self.batch_size, low=2))
    set_("sample_share", check_number(owner, "sample_share", self.sample_share, low=0.0,
                                      high=1.0, low_open=True, high_open=True))
    set_("learning_rate", check_number(owner, "learning_rate", self.learning_rate, low=0.0,
                                       low_open=True))
    set_("momentum", check_number(owner, "momentum", self.momentum, low=0.0, high=1.0,
                                  high_open=True))
    set_("weight_decay", check_number(owner, "weight_decay", self.weight_decay, low=0.0))
    set_("eval_every", check_integer(owner, "eval_every", self.eval_every, low=1))
    set_("max_steps", check_integer(owner, "max_steps", self.max_steps, low=0))
    set_("eval_batch_size", check_integer(owner, "eval_batch_size", self.eval_batch_size,
                                          low=1))
    for name in ("train_mode", "stop_early"):
      if not isinstance(getattr(self, name), (bool, np.bool_)):
        raise errors.BadRequestType(f"{owner}.{name} must be True or False, got "
                                    f"{getattr(self, name)!r}")
      set_(name, bool(getattr(self, name)))


def check_integer(owner: str, name: str, value: Any, *, low: int) -> int:
  """Refuses a config field that is not an integer ``>= low`` (bools are not integers);
  returns it as a Python ``int`` (a NumPy integer or concrete 0-d integer array taken).

  Raises:
    BadRequestType: not a concrete integer (a traced one included); BadRequest: below
      ``low``. The message names ``owner.name``.
  """
  if not (_validate.is_integer(value) and _validate.is_real(value)):
    raise errors.BadRequestType(f"{owner}.{name} must be an integer >= {low}, got {value!r}")
  if int(value) < low:
    raise errors.BadRequest(f"{owner}.{name} must be >= {low}, got {value!r}")
  return int(value)


def check_number(owner: str, name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False, hint: str = "") -> float:
  """Refuses a config field that is not a finite real number in its range; returns it as
  a Python ``float`` (a NumPy scalar or concrete 0-d array taken).

  Raises:
    BadRequestType: not a real number (a string, a bool, an array with dimensions, a
      traced value); BadRequest: NaN, infinite or out of range. The message names
      ``owner.name`` and the range, and adds ``hint``.
  """
  hint = f"; {hint}" if hint else ""
  if not _validate.is_real(value):
    raise errors.BadRequestType(f"{owner}.{name} must be a number, got {value!r}{hint}")
  v = float(value)
  below = low is not None and (v <= low if low_open else v < low)
  above = high is not None and (v >= high if high_open else v > high)
  if not math.isfinite(v) or below or above:
    if high is None and low is not None:
      raise errors.BadRequest(f"{owner}.{name} must be a finite number {'>' if low_open else '>='}"
                              f" {low:g}, got {value!r}{hint}")
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    raise errors.BadRequest(f"{owner}.{name} must lie in {lo}, {hi}, got {value!r}{hint}")
  return v


@dataclasses.dataclass(frozen=True)
class RelearnResult:
  """Steps a forgotten model needs to relearn its forgotten classes.

  Attributes:
    steps_to_50: first evaluated step with probe accuracy ``>= 0.5 * reference``, or
      ``None`` if not reached within ``max_steps``.
    steps_to_90: the same at ``0.9 * reference``.
    curve: ``[(step, accuracy %), ...]`` at every evaluation, step 0 first.
    reference_accuracy: the original model's probe accuracy (%), as given.
    sample_size: forgotten-class training images fine-tuned on.
    steps: optimiser steps taken.
  """

  steps_to_50: int | None
  steps_to_90: int | None
  curve: list[tuple[int, float]]
  reference_accuracy: float
  sample_size: int
  steps: int

  def steps_to(self, fraction: float) -> int | None:
    """First evaluated step with accuracy ``>= fraction * reference`` (``None``: never).

    Levels above 0.9 may read ``None`` too early when the run stopped early.

    Args:
      fraction: the level, a fraction of ``reference_accuracy`` in ``(0, 1]`` (``0.75``,
        not ``75``: the fields ``steps_to_50``/``steps_to_90`` are named by percentage).

    Raises:
      BadRequestType: ``fraction`` not a real number (a string, None, a bool).
      BadRequest: NaN, or outside ``(0, 1]`` (``75`` for 75%: give ``0.75``).
    """
    hint = (f"a fraction of the reference accuracy: {float(fraction) / 100:g} for "
            f"{float(fraction):g}%" if _validate.is_real(fraction) and 1 < fraction <= 100
            else "a fraction of the reference accuracy, e.g. 0.75")
    level = check_number("RelearnResult.steps_to", "fraction", fraction, low=0.0, high=1.0,
                         low_open=True, hint=hint)
    return _first_reaching(self.curve, level * self.reference_accuracy)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary."""
    out = dataclasses.asdict(self)
    out["curve"] = [[int(s), float(a)] for s, a in self.curve]
    return out


def relearn_sample(forget: Split, fraction: float = 0.01, min_examples: int = 8, *,
                   key: jax.Array) -> Split:
  """A small random sample of the forgotten classes' training images to relearn from.

  Per forgotten class ``c`` with ``n_c`` examples in ``forget``, takes
  ``min(n_c, max(min_examples, ceil(fraction * n_c)))`` of them without replacement,
  so every forgotten class is represented.

  Args:
    forget: training examples of the forgotten classes (``uint8`` NHWC, labels).
    fraction: share of each class to take, in ``(0, 1]`` (default 1%).
    min_examples: at least this many per class (default 8), when the class has them.
    key: typed PRNG key choosing the examples.

  Returns:
    A :class:`Split` of copies, ``(n, H, W, C)`` ``uint8`` and ``(n,)`` labels.

  Raises:
    BadRequestType: ``forget`` not a :class:`Split` (a plain ``(images, labels)`` tuple),
      images not ``uint8``, labels not integers, ``fraction`` or ``min_examples`` of the
      wrong kind, ``key`` not a PRNG key (an int seed).
    BadRequest: an empty ``forget``, images not ``(N, H, W, C)`` with one label each,
      negative labels, ``fraction`` outside ``(0, 1]`` or ``min_examples < 1``.
  """
  _check_split(forget, "forget", "relearn_sample")
  if len(forget) == 0:
    raise errors.BadRequest("relearn_sample needs forgotten-class training examples; got none")
  _check_labels(forget, "forget", None)
  check_number("relearn_sample", "fraction", fraction, low=0.0, high=1.0, low_open=True)
  check_integer("relearn_sample", "min_examples", min_examples, low=1)
  codes.check_key(key)
  labels = np.asarray(forget.labels)
  keep = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    take = min(len(idx), max(int(min_examples), math.ceil(float(fraction) * len(idx))))
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, int(c)), len(idx)))
    keep.append(np.sort(idx[order[:take]]))
  keep = np.concatenate(keep)
  return Split(np.asarray(forget.images)[keep], labels[keep])


def relearn_steps(bundle: Bundle, sample: Split, retain: Split, probe: Split,
                  reference_accuracy: float, config: RelearnConfig = RelearnConfig(), *,
                  key: jax.Array) -> RelearnResult:
  """Fine-tunes a forgotten model on ``sample`` and counts the steps until it relearns.

  Each step is one SGD step on a batch of ``round(sample_share * batch_size)`` rows of
  the (cycled, reshuffled) sample and retained rows for the rest, all with weight 1
  (:func:`mnemonic_jax.baselines.base.make_weighted_step`). The probe accuracy (pooled
  over its examples) is evaluated in inference mode at step 0 and every ``eval_every``
  steps. The jitted step and evaluation are built once per model and optimiser and
  reused by later calls (one compilation per shape for a whole table of runs).

  Args:
    bundle: the model after forgetting (not modified: its arrays are copied first).
    sample: training images of the forgotten classes to relearn from (e.g.
      :func:`relearn_sample`).
    retain: training images of the remaining classes, mixed into every batch.
    probe: test images of the forgotten classes (the same classes as ``sample``).
    reference_accuracy: the original model's accuracy on ``probe`` before forgetting, a
      percentage in ``(1, 100]`` (as :func:`mnemonic_jax.metrics.per_class_accuracy`
      gives it; not a fraction).
    config: :class:`RelearnConfig` (checked on construction).
    key: typed PRNG key for the batch order (the same key gives the same run, and a
      shorter run is a prefix of a longer one).

  Returns:
    :class:`RelearnResult`.

  Raises:
    BadRequestType: ``bundle`` not a Bundle; a split that is not a :class:`Split` (a
      plain ``(images, labels)`` tuple); images not ``uint8`` or labels not integers;
      ``config`` not a :class:`RelearnConfig`; a reference accuracy that is not a number;
      ``key`` not a PRNG key (an int seed).
    BadRequest: empty splits, images that do not fit the model, labels outside the
      model's classes, a probe and sample of different classes, retained examples of
      those classes, a reference accuracy outside ``(MIN_REFERENCE_ACCURACY, 100]`` (a
      fraction such as 0.973 given for 97.3 is refused with the unit); a bundle whose
      parameters or BatchNorm statistics hold NaN or inf.
    TrainingDiverged: the fine-tuning made the model's logits NaN or inf on the probe (a
      learning rate too large): a NaN logit is no prediction, and counting it as one
      (``argmax`` calls it class 0) would read as relearned or as never relearned.
  """
  _check(bundle, sample, retain, probe, reference_accuracy, config)
  codes.check_key(key)
  sample_rows = min(max(round(config.sample_share * config.batch_size), 1),
                    config.batch_size - 1)
  retain_rows = config.batch_size - sample_rows
  sample_key, retain_key = jax.random.split(key)
  sample_stream = _index_stream(sample_key, len(sample), sample_rows, config.max_steps)
  retain_stream = _index_stream(retain_key, len(retain), retain_rows, config.max_steps)
  labels_s, labels_r = np.asarray(sample.labels), np.asarray(retain.labels)

  optimizer, step, normalize, correct = _compiled(bundle, config)
  evaluate = _probe_accuracy(correct, probe, config.eval_batch_size)
  params = _copy(bundle.params)
  state = LoopState(params=params, batch_stats=_copy(bundle.batch_stats),
                    opt_state=optimizer.init(params))
  weights = np.ones(config.batch_size, np.float32)
  targets = [level * float(reference_accuracy) for level in LEVELS]

  curve = [(0, evaluate(state.params, state.batch_stats, 0))]
  steps = 0
  while steps < config.max_steps:
    if config.stop_early and all(_first_reaching(curve, t) is not None for t in targets):
      break
    i_s, i_r = next(sample_stream), next(retain_stream)
    images = np.concatenate([sample.images[i_s], retain.images[i_r]])
    labels = np.concatenate([labels_s[i_s], labels_r[i_r]]).astype(np.int32)
    state, _ = step(state, normalize(images), labels, weights)
    steps += 1
    if steps % config.eval_every == 0 or steps == config.max_steps:
      curve.append((steps, evaluate(state.params, state.batch_stats, steps)))
  return RelearnResult(
      steps_to_50=_first_reaching(curve, targets[0]),
      steps_to_90=_first_reaching(curve, targets[1]), curve=curve,
      reference_accuracy=float(reference_accuracy), sample_size=len(sample), steps=steps)


def _first_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
  return next((int(s) for s, accuracy in curve if accuracy >= target), None)


def _copy(tree: PyTree) -> PyTree:
  """Fresh device buffers, so the donated loop state never aliases the input bundle."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _index_stream(key: jax.Array, n: int, rows: int, max_steps: int
                  ) -> Iterator[np.ndarray]:
  """Endless ``(rows,)`` index batches: permutations of ``range(n)`` laid end to end.

  Permutation ``e`` is drawn with ``fold_in(key, e)``, so the stream does not depend on
  ``max_steps``, which only sizes the first draw (the whole run's indices at once).
  """
  draw = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))
  epochs = -(-max(max_steps, 1) * rows // n) + 1
  flat = np.asarray(draw(jnp.arange(epochs))).reshape(-1)
  start = 0
  while True:
    if start + rows > len(flat):  # Past the first draw (only if the caller overruns).
      more = np.asarray(draw(jnp.arange(epochs, 2 * epochs))).reshape(-1)
      flat, start, epochs = np.concatenate([flat[start:], more]), 0, 2 * epochs
    yield flat[start:start + rows]
    start += rows


#: Compiled functions per model and optimiser (see :func:`_compiled`), newest last.
_COMPILED: dict[tuple, tuple] = {}
_COMPILED_MAX = 8


def _compiled(bundle: Bundle, config: RelearnConfig) -> tuple:
  """``(optimizer, step, normalize, correct)`` for this model, reused across calls.

  The runner measures relearning for every method, class and seed of a table; building
  the jitted functions once per model and optimiser (parameters are arguments) keeps
  that to one compilation per shape instead of one per call. Keyed by the model spec,
  the input normalisation and the optimiser's numbers, each as its float32 value (what
  the step computes with: ``0.01``, ``np.float32(0.01)`` and a 0-d array of it share one
  optimiser and its programs); at most ``_COMPILED_MAX`` kept.
  """
  numbers = tuple(float(np.float32(float(v)))
                  for v in (config.learning_rate, config.momentum, config.weight_decay))
  key = (bundle.model_name, repr(sorted(bundle.model_kwargs.items())), bundle.num_classes,
         tuple(bundle.mean), tuple(bundle.std), *numbers, bool(config.train_mode))
  if key not in _COMPILED:
    # Only the model spec and normalisation are read: drop the arrays, keep no params alive.
    template = bundle.replace(params={}, batch_stats={}, codes=None, history=(), config={})
    model, normalize = template.model, template.normalize
    optimizer = base.sgd(*numbers)
    step = base.make_weighted_step(template, optimizer, train_mode=config.train_mode)

    def correct(params, batch_stats, x, y, mask):
      """``[right, non-finite]`` counts of the masked rows (a NaN row is not a prediction)."""
      logits = model.apply(model_variables(params, batch_stats), normalize(x), train=False)
      finite = jnp.all(jnp.isfinite(logits), axis=-1)
      right = mask & finite & (jnp.argmax(logits, axis=-1) == y)
      return jnp.stack([jnp.sum(right), jnp.sum(mask & ~finite)])

    if len(_COMPILED) >= _COMPILED_MAX:
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = (optimizer, step, jax.jit(normalize), jax.jit(correct))
  return _COMPILED[key]


def _probe_accuracy(correct: Callable, probe: Split, batch_size: int
                    ) -> Callable[[PyTree, PyTree, int], float]:
  """``accuracy(params, batch_stats, step) -> %`` on ``probe``, in fixed-size padded chunks.

  Raises:
    TrainingDiverged: the model gives NaN or inf logits on a probe image (``argmax`` would
      call them class 0: a forgotten class 0 would read as relearned).
  """
  n = len(probe)
  size = min(int(batch_size), n)
  chunks = -(-n // size)
  idx = np.resize(np.arange(n), chunks * size).reshape(chunks, size)
  valid = (np.arange(chunks * size) < n).reshape(chunks, size)
  images = [np.asarray(probe.images)[i] for i in idx]
  labels = [np.asarray(probe.labels)[i].astype(np.int32) for i in idx]

  def accuracy(params: PyTree, batch_stats: PyTree, step: int) -> float:
    hits, bad = (int(v) for v in np.sum([np.asarray(correct(params, batch_stats, x, y, m))
                                         for x, y, m in zip(images, labels, valid)], axis=0))
    if bad:
      raise errors.TrainingDiverged(
          f"relearning diverged: after {step} step(s) the model gives NaN or inf logits on "
          f"{bad} of the {n} probe images, which have no prediction to score; use a smaller "
          "RelearnConfig.learning_rate")
    return 100.0 * hits / n

  return accuracy


def _check_split(split: Any, name: str, caller: str) -> None:
  """A :class:`Split` of ``uint8`` ``(N, H, W, C)`` images with one label each."""
  if not isinstance(split, Split):
    raise errors.BadRequestType(
        f"{caller}: {name} must be a Split(images, labels) (mnemonic_jax.baselines.Split), "
        f"got {type(split).__name__}; wrap a pair as Split(images, labels)")
  images = split.images
  dtype = getattr(images, "dtype", None)
  if dtype is None or np.dtype(dtype) != np.uint8:
    raise errors.BadRequestType(
        f"{caller}: the {name} split's images are {dtype}; give the uint8 images as loaded "
        "(the model normalises them itself), not floats already scaled")
  if np.ndim(images) != 4 or len(images) != len(split.labels):
    raise errors.BadRequest(f"{caller}: the {name} split has images of shape "
                            f"{np.shape(images)} and labels of shape {np.shape(split.labels)}; "
                            "give (N, H, W, C) images with one label each")


def _check_labels(split: Split, name: str, num_classes: int | None) -> None:
  """Integer labels ``(N,)``, in the model's classes when ``num_classes`` is given."""
  label = f"the {name} split's labels"
  if num_classes is not None:
    _validate.labels(split.labels, num_classes, name=label)
    return
  _validate.listed_bool(split.labels, label)
  dtype = np.asarray(split.labels).dtype
  if not np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
    raise errors.BadRequestType(f"{label} must be integers (class ids), got dtype {dtype}")
  if np.ndim(split.labels) != 1 or np.min(split.labels) < 0:
    raise errors.BadRequest(f"{label} must be class ids >= 0 of shape (N,), got shape "
                            f"{np.shape(split.labels)}")


def _check(bundle: Bundle, sample: Split, retain: Split, probe: Split,
           reference_accuracy: float, config: RelearnConfig) -> None:
  _validate.bundle(bundle, "bundle")
  check_bundle(bundle, codes=False)  # Its fields against its model (no codes read).
  _validate.finite(**{"bundle.params": bundle.params, "bundle.batch_stats": bundle.batch_stats})
  for name, split in (("sample", sample), ("retain", retain), ("probe", probe)):
    _check_split(split, name, "relearn_steps")
    if len(split) == 0:
      raise errors.BadRequest(f"relearn_steps needs a non-empty {name} split")
    shape = tuple(np.shape(split.images)[1:])
    if shape != tuple(bundle.input_shape):
      raise errors.BadRequest(f"the {name} split has images of shape {np.shape(split.images)}; the "
                       f"model takes (N, {', '.join(map(str, bundle.input_shape))}) with one "
                       "label each")
    _check_labels(split, name, bundle.num_classes)
  if not isinstance(config, RelearnConfig):
    raise errors.BadRequestType(f"config must be a RelearnConfig, got {type(config).__name__}")
  forgotten = set(np.unique(sample.labels).tolist())
  if set(np.unique(probe.labels).tolist()) != forgotten:
    held = sorted(set(np.unique(probe.labels).tolist()))
    raise errors.BadRequest(f"the probe holds classes {held} but the sample holds "
                            f"{sorted(forgotten)}; give test images of the forgotten classes")
  overlap = forgotten & set(np.unique(retain.labels).tolist())
  if overlap:
    raise errors.BadRequest(f"the retain split holds forgotten classes {sorted(overlap)}")
  check_number("relearn_steps", "reference_accuracy", reference_accuracy, low=0.0,
               high=100.0, low_open=True)
  if float(reference_accuracy) <= MIN_REFERENCE_ACCURACY:
    raise errors.BadRequest(
        f"reference_accuracy is a percentage (0..100], got {reference_accuracy}: if that is "
        f"a fraction, pass {100 * float(reference_accuracy):g}; an original that gets "
        f"{MIN_REFERENCE_ACCURACY:g}% or less of the probe right never knew the classes "
        "(nothing to relearn)")
