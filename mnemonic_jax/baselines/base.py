"""What every unlearning method shares: its signature, its report, the registry, the loop.

One signature for all methods, in the style of the NeurIPS 2023 machine-unlearning
challenge (``unlearning(net, retain, forget, validation)``), bundle in and bundle out::

  new_bundle, report = method(bundle, classes, data, config, key)

* ``bundle``: the trained :class:`~mnemonic_jax.bundle.Bundle` (never modified);
* ``classes``: the sorted class ids to forget (validated by :func:`unlearn`);
* ``data``: :class:`UnlearnData`, the training data the method is allowed to see, split
  into the retain set (examples of the remaining classes) and the forget set (examples of
  the forgotten classes); a split the method does not need may be ``None``;
* ``config``: the method's own frozen config dataclass (its published defaults);
* ``key``: a typed PRNG key (``jax.random.key``) for whatever the method draws.

Call methods through :func:`unlearn`, which checks the request and the data against what
the method needs, times it with compilation apart, refuses a result that is not finite,
and appends the request to the bundle's history, so ``bundle.forgotten_classes`` and every
evaluation know what was forgotten.

Example:
  >>> data = UnlearnData.from_training(images, labels, classes=[3])
  >>> new_bundle, report = unlearn("mnemonic-auto", bundle, [3], data, key=jax.random.key(0))
  >>> report.data, new_bundle.forgotten_classes
  ('none', (3,))
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import codes, errors
from mnemonic_jax import _validate
from mnemonic_jax.timing import CompileClock
from mnemonic_jax.bundle import Bundle, normalize
from mnemonic_jax.checkpointing.bundle_format import check_bundle
from mnemonic_jax.data import pipeline
from mnemonic_jax.baselines import options
from mnemonic_jax.baselines.steps import (  # noqa: F401  (re-exported)
    LoopState, adam, init_loop, make_loss_step, make_weighted_step, sgd)

PyTree = Any

#: What a method reads of the training data: nothing, the forget set, the retain set, both.
DATA_KINDS = ("none", "forget", "retain", "all")


class Split(NamedTuple):
  """Examples of one side of a forgetting request.

  Attributes:
    images: ``uint8`` ``(N, H, W, C)``, already in the bundle's input shape (padded).
    labels: integer class ids ``(N,)``.
  """

  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return int(len(self.labels))


@dataclasses.dataclass(frozen=True)
class UnlearnData:
  """The training data an unlearning method may see.

  Attributes:
    retain: examples of the remaining classes (the retain set ``D_r``), or ``None``.
    forget: examples of the forgotten classes (the forget set ``D_f``), or ``None``.
  """

  retain: Split | None = None
  forget: Split | None = None

  @classmethod
  def from_training(cls, images: np.ndarray, labels: np.ndarray, classes: Sequence[int],
                    *, retain: bool = True, forget: bool = True) -> "UnlearnData":
    """Splits a training set by class into retain and forget sets.

    Args:
      images: ``uint8`` ``(N, H, W, C)`` in the model's input shape (a NumPy array or a
        ``jax.Array``; the splits hold NumPy copies).
      labels: ``(N,)`` integer labels.
      classes: the classes to forget.
      retain, forget: whether to keep each split (``False`` gives ``None``, for methods
        that may not see it).

    Raises:
      BadRequestType: images that are not a uint8 array (float images would be normalised
        twice) or are traced, labels or class ids that are not integers.
      BadRequest: images of fewer than 2 dimensions, labels that are not non-negative
        ``(N,)``, or not one per image. Whether they fit the model (its input shape, its
        classes) is checked by :func:`unlearn`.
    """
    said = "UnlearnData.from_training takes uint8 images (N, H, W, C)"
    if isinstance(images, jax.core.Tracer):
      raise errors.BadRequestType(f"{said}, concrete: they are traced (under jax.jit, vmap or "
                                  "grad) but split on the host; pass them from outside")
    if isinstance(images, jax.Array):
      images = np.asarray(images)  # A NumPy or jax.Array of uint8 alike: split on the host.
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
      raise errors.BadRequestType(
          f"{said} (0..255; methods normalise them with the bundle's mean and std), got "
          f"{getattr(images, 'dtype', type(images).__name__)} {np.shape(images)}; pass the "
          "raw images, e.g. np.round(x * 255).astype(np.uint8) for images in [0, 1]")
    if images.ndim < 2:
      raise errors.BadRequest(f"{said}, got shape {images.shape}; pass one image per row, "
                              "e.g. x[:, :, :, None] for (N, H, W) grey images")
    _validate.listed_bool(labels, "UnlearnData.from_training: labels")
    labels = np.asarray(labels)
    unbounded = np.iinfo(np.int32).max  # The model's class count is not known here.
    _validate.labels(labels, unbounded)
    classes = _validate.class_ids(classes, unbounded, name="classes")
    if len(labels) != len(images):
      raise errors.BadRequest(f"UnlearnData.from_training got {len(images)} images and "
                              f"{len(labels)} labels; give one label per image")
    in_forget = np.isin(labels, np.asarray(classes, np.int64))
    take = lambda mask: Split(images[mask], labels[mask])
    return cls(retain=take(~in_forget) if retain else None,
               forget=take(in_forget) if forget else None)

  def kind(self) -> str:
    """Which of :data:`DATA_KINDS` this holds."""
    return {(False, False): "none", (False, True): "forget", (True, False): "retain",
            (True, True): "all"}[(self.retain is not None, self.forget is not None)]


@dataclasses.dataclass(frozen=True)
class MethodReport:
  """What an unlearning method did.

  Attributes:
    method: registry name (e.g. ``"ssd"``).
    classes: the forgotten classes, sorted.
    seconds: wall-clock seconds of the method, compilation excluded.
    compile_seconds: seconds JAX spent tracing, lowering and compiling during the method.
    steps: optimiser steps taken (0 for one-shot methods).
    data: which training data the method read, one of :data:`DATA_KINDS`.
    examples: examples read from each split, counted with repetition
      (``{"retain": n, "forget": n}``).
    details: method-specific JSON-able facts (chosen hyper-parameters, losses, ...).
  """

  method: str
  classes: tuple[int, ...]
  seconds: float
  compile_seconds: float
  steps: int
  data: str
  examples: dict[str, int]
  details: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary (for the bundle's history and reports)."""
    out = dataclasses.asdict(self)
    out["classes"] = list(self.classes)
    return out


class Outcome(NamedTuple):
  """What a method's function returns to :func:`unlearn` (which adds the timing).

  Attributes:
    params: the new parameters.
    batch_stats: the new BatchNorm statistics (``bundle.batch_stats`` if unchanged).
    steps: optimiser steps taken.
    examples: examples read per split (``{"retain": n, "forget": n}``).
    details: method-specific JSON-able facts.
  """

  params: PyTree
  batch_stats: PyTree
  steps: int = 0
  examples: dict[str, int] | None = None
  details: dict[str, Any] | None = None


MethodFn = Callable[[Bundle, tuple[int, ...], UnlearnData, Any, jax.Array], Outcome]


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered unlearning method.

  Attributes:
    name: registry name, as ``--methods`` takes it.
    fn: ``fn(bundle, classes, data, config, key) -> Outcome``.
    config_cls: its frozen config dataclass; ``config_cls()`` holds the published defaults.
    data: what it needs of the training data (one of :data:`DATA_KINDS`).
    reference: where it comes from (paper, repository).
    defaults: ``defaults(bundle)``, the config used when none is given, for methods whose
      defaults depend on the bundle (None: ``config_cls()``).
    sweep: the ladder :func:`sweep` climbs: config overrides from the published defaults
      (``{}``) to stronger settings, for methods whose defaults fail to forget (or wreck
      the rest) on small models; ``()`` for none.
  """

  name: str
  fn: MethodFn
  config_cls: type
  data: str
  reference: str
  defaults: Callable[[Bundle], Any] | None = None
  sweep: tuple[dict[str, Any], ...] = ()


METHODS: dict[str, Method] = {}


def register(name: str, config_cls: type, *, data: str, reference: str,
             defaults: Callable[[Bundle], Any] | None = None,
             sweep: Sequence[dict[str, Any]] = ()) -> Callable[[MethodFn], MethodFn]:
  """Decorator adding a method to :data:`METHODS` under ``name``."""
  if data not in DATA_KINDS:
    raise errors.BadRequest(f"data must be one of {DATA_KINDS}, got {data!r}")

  def add(fn: MethodFn) -> MethodFn:
    if name in METHODS:
      raise errors.BadRequest(f"an unlearning method named {name!r} is already registered")
    options.name_method(config_cls, name)  # Its fields' messages name the method.
    METHODS[name] = Method(name, fn, config_cls, data, reference, defaults, tuple(sweep))
    return fn

  return add


def available_methods() -> tuple[str, ...]:
  """Names of the registered methods, in registration order."""
  return tuple(METHODS)


def get_method(name: str) -> Method:
  """The registered method ``name``.

  Raises:
    ValueError: no such method (the message lists the valid names).
  """
  if name not in METHODS:
    raise errors.BadRequest(f"unknown unlearning method {name!r}; choose from "
                            f"{', '.join(available_methods())}")
  return METHODS[name]


def unlearn(method: str, bundle: Bundle, classes: Sequence[int], data: UnlearnData | None = None,
            config: Any = None, *, key: jax.Array | None = None
            ) -> tuple[Bundle, MethodReport]:
  """Forgets ``classes`` from ``bundle`` with a registered method.

  Args:
    method: a name of :func:`available_methods` (e.g. ``"retrain"``, ``"ssd"``).
    bundle: the trained bundle; not modified.
    classes: class ids to forget: integers in ``[0, num_classes)``, not empty, not all.
    data: the training data the method may see (only what it needs is read).
    config: the method's config dataclass; ``None`` for its published defaults.
    key: typed PRNG key; ``None`` for ``jax.random.key(0)``.

  Classes an earlier request of ``bundle`` forgot (``bundle.earlier_forgotten(classes)``)
  are neither forgotten nor remaining: their examples are dropped from the retain set
  before the method reads it (as :func:`mnemonic_jax.workflow.forget_bundle` leaves them
  out of both sets), so no method teaches them back; ``report.details["left_out"]`` then
  records the classes and ``details["left_out_examples"]`` how many retain examples were
  dropped.

  Returns:
    ``(new_bundle, report)``; ``new_bundle.history`` ends with the request and the report.
    ``report.data`` says which splits the method actually read (from its example counts).

  Raises:
    BadRequestType: ``data`` that is not an :class:`UnlearnData` of :class:`Split` s, a
      ``key`` that is not a typed PRNG key, images that are not uint8, labels that are
      not integers, a config field of the wrong kind (:mod:`.options`; refused when the
      config is built).
    BadRequest: unknown method, bad classes, a class this bundle already forgot, a config
      of another method or with a field out of range, missing data the method needs (or
      a split holding the wrong classes, labels out of range, images not in the model's
      input shape), or a result that is not finite.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)  # A hand-built bundle's fields against its model.
  spec = get_method(method)
  classes = _validate.forget_request(classes, bundle.num_classes, name="classes")[0]
  again = [c for c in classes if c in bundle.forgotten_classes]
  if again:
    which = (f"class {again[0]} was" if len(again) == 1
             else f"classes {', '.join(map(str, again))} were")
    raise errors.BadRequest(
        f"{which} already forgotten by an earlier request of this bundle; forgetting again "
        "would move the parameters further, so start from the bundle before that request "
        "(e.g. the trained checkpoint) and forget all the classes there")
  if config is None:
    config = spec.config_cls() if spec.defaults is None else spec.defaults(bundle)
  if not isinstance(config, spec.config_cls):
    raise errors.BadRequest(f"{method} takes a {spec.config_cls.__name__}, got "
                            f"{type(config).__name__}")
  if isinstance(config, options.Checked):  # Checked when built; again, in case it was edited.
    options.check(config)
  data = _check_data(spec, UnlearnData() if data is None else data, classes, bundle)
  left_out = bundle.earlier_forgotten(classes)
  data, dropped = _leave_out(data, left_out)
  if spec.data in ("retain", "all") and len(data.retain) == 0:
    raise errors.BadRequest(f"{method} needs retain examples, but the retain set holds only "
                            f"classes {list(left_out)} that earlier requests forgot")
  key = jax.random.key(0) if key is None else _validate_key(key)
  with CompileClock() as clock:
    start = time.perf_counter()
    outcome = spec.fn(bundle, classes, data, config, key)
    outcome = Outcome(*jax.block_until_ready(tuple(outcome[:2])), *outcome[2:])
    wall = time.perf_counter() - start
  bad = _non_finite(outcome.params) + _non_finite(outcome.batch_stats)
  if bad:
    raise errors.BadRequest(f"{method} made {bad} parameters non-finite (diverged); lower its "
                            "learning rate or step size")
  examples = {"retain": 0, "forget": 0, **(outcome.examples or {})}
  details = dict(outcome.details or {})
  if left_out:
    details.update(left_out=list(left_out), left_out_examples=dropped)
  report = MethodReport(
      method=method, classes=classes, seconds=max(wall - clock.seconds, 0.0),
      compile_seconds=clock.seconds, steps=int(outcome.steps),
      data=_read_kind(examples), examples=examples, details=details)
  new = bundle.replace(params=outcome.params, batch_stats=outcome.batch_stats,
                       history=bundle.history + (report.to_dict(),))
  return new, report


def sweep(method: str, bundle: Bundle, classes: Sequence[int], data: UnlearnData | None,
          held_out: Split, *, candidates: Sequence[dict[str, Any]] | None = None,
          tolerance: float = 1.0, key: jax.Array | None = None
          ) -> tuple[Bundle, MethodReport]:
  """:func:`unlearn` with the strongest config of a ladder that spares the retained classes.

  Each candidate (config overrides, ``candidates`` or the ladder the method registered,
  ordered from the published defaults ``{}`` to stronger settings) is run from ``bundle``
  and scored by its accuracy on ``held_out``, examples of REMAINING classes only. The last
  candidate within ``tolerance`` points of ``bundle``'s own accuracy there is chosen (the
  first, the defaults, if none is; a candidate that diverges fails). Forgetting itself is
  not measured: the choice reads no forgotten example beyond what the method reads, and
  never the forgotten classes' test images.

  Args:
    method, bundle, classes, data, key: as :func:`unlearn`.
    held_out: uint8 images and labels of remaining classes (e.g. retained training
      examples, or a validation split of them).
    candidates: the ladder, each a dict of overrides of the method's config (or such a
      config object); ``None`` for the method's (its defaults alone if it has none).
    tolerance: points of held-out accuracy a candidate may lose (1).

  Returns:
    The chosen run's ``(new_bundle, report)``; ``report.details["sweep"]`` lists every
    candidate with its held-out accuracy, ``details["chosen"]`` is the chosen overrides
    and ``details["sweep_seconds"]`` the seconds of all runs (compilation apart).

  Raises:
    ValueError: what :func:`unlearn` refuses, ``held_out`` holding a forgotten class, an
      empty ladder, a candidate overriding a field its config lacks or given twice, or a
      value its config refuses (naming the candidate: every one is checked before any
      runs).
    TypeError: ``candidates`` not a list, a candidate neither a dict nor the method's
      config object.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)  # A hand-built bundle's fields against its model.
  spec = get_method(method)
  classes = _validate.forget_request(classes, bundle.num_classes, name="classes")[0]
  if not isinstance(held_out, Split):
    raise errors.BadRequestType(f"sweep: held_out must be a Split(images, labels), got "
                                f"{type(held_out).__name__}")
  _check_split("held_out", held_out, bundle)
  keep = ~np.isin(np.asarray(held_out.labels), bundle.earlier_forgotten(classes))
  held_out = Split(held_out.images[keep], np.asarray(held_out.labels)[keep])
  labels = np.asarray(held_out.labels)
  if len(labels) == 0 or np.isin(labels, classes).any() or labels.min() < 0 \
     or labels.max() >= bundle.num_classes:
    raise errors.BadRequest("sweep: held_out must hold examples of remaining classes only; "
                            "pass e.g. the retain set of UnlearnData.from_training")
  base_config = spec.config_cls() if spec.defaults is None else spec.defaults(bundle)
  ladder = options.sweep_ladder(method, spec.config_cls, base_config,
                   tuple(spec.sweep or ({},)) if candidates is None else candidates)
  floor = _accuracy(bundle, held_out) - tolerance
  trials, chosen, seconds = [], None, 0.0
  for i, (overrides, config) in enumerate(ladder):
    try:
      new, report = unlearn(method, bundle, classes, data, config, key=key)
    except errors.BadRequest as e:
      if "non-finite" not in str(e):
        raise
      trials.append({"overrides": dict(overrides), "held_out_accuracy": None, "ok": False})
      continue
    accuracy = _accuracy(new, held_out)
    seconds += report.seconds
    trials.append({"overrides": dict(overrides), "held_out_accuracy": accuracy,
                   "ok": accuracy >= floor})
    if accuracy >= floor or (chosen is None and i == 0):
      chosen = (new, report, dict(overrides))
  if chosen is None:  # Even the defaults diverged.
    raise errors.BadRequest(f"sweep: every {method} candidate made parameters non-finite")
  new, report, overrides = chosen
  report = dataclasses.replace(report, details={
      **report.details, "sweep": trials, "chosen": overrides, "sweep_seconds": seconds,
      "tolerance": tolerance})
  return new.replace(history=new.history[:-1] + (report.to_dict(),)), report


def _accuracy(bundle: Bundle, split: Split, batch_size: int = 1024) -> float:
  """Inference-mode accuracy (%) of ``bundle`` on uint8 ``split``."""
  apply_fn = bundle.apply_fn()
  mean, std = jnp.asarray(bundle.mean, jnp.float32), jnp.asarray(bundle.std, jnp.float32)
  labels = np.asarray(split.labels)
  correct = sum(int(_hits(apply_fn, bundle.params, jnp.asarray(split.images[i:i + batch_size]),
                          jnp.asarray(labels[i:i + batch_size]), mean, std))
                for i in range(0, len(split), batch_size))
  return 100.0 * correct / len(split)


@jax.jit
def _hits(apply_fn, params, images, labels, mean, std):
  return jnp.sum(jnp.argmax(apply_fn(params, normalize(images, mean, std)), -1) == labels)


def whole_number(method: str, name: str, value: Any, minimum: int = 1) -> None:
  """Refuses a config field that is not a whole number ``>= minimum`` (1.5, True, "3").

  Raises:
    BadRequestType: not an integer (the message says a whole number is needed).
    BadRequest: an integer below ``minimum``.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise errors.BadRequestType(f"{method} needs a whole number of {name} (an int >= {minimum}), "
                                f"got {value!r}")
  if value < minimum:
    raise errors.BadRequest(f"{method} needs {name} >= {minimum}, got {value!r}")


def _read_kind(examples: dict[str, int]) -> str:
  """The :data:`DATA_KINDS` entry of the splits a method read at least one example of."""
  return {(False, False): "none", (False, True): "forget", (True, False): "retain",
          (True, True): "all"}[(examples["retain"] > 0, examples["forget"] > 0)]


def _validate_key(key: Any) -> jax.Array:
  """``key``, checked as every entry point checks one (:func:`mnemonic_jax.codes.check_key`:
  an int seed or a batch of keys refused in one line)."""
  codes.check_key(key)
  return key


def _check_split(name: str, split: Any, bundle: Bundle) -> None:
  """Refuses a split that is not uint8 images in the model's input shape with integer
  labels in range, one per image (before any work: a wrong shape would fail deep in Flax,
  float images would be normalised twice)."""
  if not isinstance(split, Split):
    raise errors.BadRequestType(f"the {name} set must be a Split(images, labels), got "
                                f"{type(split).__name__}")
  images = split.images
  shape = tuple(np.shape(images))
  if not hasattr(images, "dtype") or images.dtype != np.uint8:
    dtype = getattr(images, "dtype", type(images).__name__)
    raise errors.BadRequestType(
        f"the {name} set's images must be uint8 (0..255; the method normalises them with "
        f"the bundle's mean and std), got {dtype}; pass the raw images, e.g. "
        "np.round(x * 255).astype(np.uint8) for images in [0, 1]")
  if shape[1:] != tuple(bundle.input_shape):
    raise errors.BadRequest(f"the {name} set's images have shape {shape}; the model takes "
                            f"(N, {', '.join(map(str, bundle.input_shape))})")
  _validate.listed_bool(split.labels, f"the {name} set's labels")
  labels = np.asarray(split.labels)
  _validate.labels(labels, bundle.num_classes, name=f"the {name} set's labels")
  if len(labels) != shape[0]:
    raise errors.BadRequest(f"the {name} set has {shape[0]} images and {len(labels)} labels; "
                            "give one label per image")


def _leave_out(data: UnlearnData, classes: tuple[int, ...]) -> tuple[UnlearnData, int]:
  """``data`` without the retain examples of ``classes``; how many were dropped."""
  if not classes or data.retain is None:
    return data, 0
  keep = ~np.isin(np.asarray(data.retain.labels), classes)
  if keep.all():
    return data, 0
  retain = Split(data.retain.images[keep], np.asarray(data.retain.labels)[keep])
  return dataclasses.replace(data, retain=retain), int((~keep).sum())


def _check_data(spec: Method, data: UnlearnData, classes: tuple[int, ...],
                bundle: Bundle) -> UnlearnData:
  """Checks that ``data`` has what ``spec`` needs, holding the right classes; drops the rest."""
  if not isinstance(data, UnlearnData):
    raise errors.BadRequestType(
        f"data must be an UnlearnData, got {type(data).__name__}; build it with "
        "UnlearnData.from_training(images, labels, classes=...)")
  num_classes = bundle.num_classes
  need_retain = spec.data in ("retain", "all")
  need_forget = spec.data in ("forget", "all")
  checked = {}
  for name, needed, split in (("retain", need_retain, data.retain),
                              ("forget", need_forget, data.forget)):
    if needed and (split is None or len(split) == 0):
      raise errors.BadRequest(f"{spec.name} needs the {name} set (training examples of the "
                              f"{'remaining' if name == 'retain' else 'forgotten'} classes); pass "
                              f"UnlearnData({name}=...)")
    if not needed or split is None:
      continue
    _check_split(name, split, bundle)
    labels = np.asarray(split.labels)
    inside = np.isin(labels, classes)
    wrong = ~inside if name == "forget" else inside
    if wrong.any() or labels.min() < 0 or labels.max() >= num_classes:
      raise errors.BadRequest(
          f"the {name} set holds labels {sorted(set(labels[wrong].tolist()))[:5]} that are "
          f"not {'forgotten' if name == 'forget' else 'remaining'} classes of "
          f"0..{num_classes - 1}; split with UnlearnData.from_training")
    missing = sorted(set(classes) - set(labels.tolist())) if name == "forget" else []
    if missing:  # The method would not see the class it is said to forget.
      raise errors.BadRequest(
          f"the forget set holds no example of class{'es' if len(missing) > 1 else ''} "
          f"{', '.join(map(str, missing))}, which {spec.name} is asked to forget; split "
          "with UnlearnData.from_training(images, labels, classes) for these classes")
    checked[name] = Split(split.images, labels)  # Labels as checked: a list indexes badly.
  return UnlearnData(**checked)


def _non_finite(tree: PyTree) -> int:
  return int(sum(np.size(x) - np.isfinite(np.asarray(x)).sum()
                 for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------------------
# The loops of the methods that train (fine-tune, NegGrad, random labels, UNSIR, ...); their
# steps and optimisers are in :mod:`.steps` (re-exported here).


def epoch_batches(key: jax.Array, split: Split, batch_size: int) -> Iterator[Split]:
  """One shuffled epoch of ``split`` in batches of one shape (the last one completed).

  Every example appears at least once; the last batch is completed with the first
  examples of the permutation, so every batch has ``min(batch_size, len(split))`` rows
  and the step compiles once.
  """
  size = min(batch_size, len(split))
  for idx in pipeline.batch_indices(key, len(split), size, drop_remainder=False):
    yield Split(split.images[idx], split.labels[idx])


def forever(key: jax.Array, split: Split, batch_size: int) -> Iterator[Split]:
  """Endless shuffled batches of ``split`` (epoch ``e`` shuffled by ``fold_in(key, e)``)."""
  epoch = 0
  while True:
    yield from epoch_batches(jax.random.fold_in(key, epoch), split, batch_size)
    epoch += 1
