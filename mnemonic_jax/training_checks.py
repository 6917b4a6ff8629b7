"""Checks of the training API's inputs (:func:`mnemonic_jax.training.fit`, its train step).

:func:`~mnemonic_jax.training.fit` holds its data on the host, so it checks everything up
front, before it compiles anything: the dtypes, shapes and range of the images and labels,
the codes, the normalisation, the key, and the model's number of outputs (from
``jax.eval_shape``, which compiles nothing). A train step checks only dtypes and shapes,
which are static: it adds no device sync and no program.

Each check raises :class:`~mnemonic_jax.errors.BadRequestType` (wrong kind of value) or
:class:`~mnemonic_jax.errors.BadRequest` (wrong value), or
:class:`~mnemonic_jax.errors.BadConfig` for a :class:`~mnemonic_jax.training.FitConfig`
field, with a message that names the argument and the fix.
"""

import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax.codes import check_key
from mnemonic_jax.data import pipeline
from mnemonic_jax.data.dataset import Dataset
from mnemonic_jax.pytrees import Static
from mnemonic_jax.train_state import TrainState

__all__ = ["batch", "check_key", "codes", "data_arrays", "fit_config", "fit_field",
           "label_range", "model_outputs", "normalisation", "optimizer", "steps_per_epoch",
           "t_mix", "train_keyword", "uint8_images", "fit_inputs"]


def _dtype(x: Any) -> np.dtype:
  dtype = getattr(x, "dtype", None)
  return np.asarray(x).dtype if dtype is None else dtype


def uint8_images(images: Any, entry: str) -> None:
  """Refuses images that are not ``uint8`` (static: the dtype only).

  Raises:
    BadRequestType: float images (already normalised: they would be divided by 255
      again), or integers of another width.
  """
  dtype = _dtype(images)
  if dtype == np.uint8:
    return
  if jnp.issubdtype(dtype, jnp.floating):
    raise errors.BadRequestType(
        f"{entry} takes uint8 images (0..255) and normalises them itself, (x / 255 - mean) "
        f"/ std, but these have dtype {dtype}: float images would be divided by 255 again; "
        "pass the raw uint8 images (np.round(x * 255).astype(np.uint8) for images in [0, 1])")
  raise errors.BadRequestType(f"{entry} takes uint8 images (0..255), got dtype {dtype}; cast "
                              "them with .astype(np.uint8) if they hold 0..255")


def _integer_labels(labels: Any, entry: str) -> None:
  _validate.listed_bool(labels, f"{entry}: labels")
  dtype = _dtype(labels)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise errors.BadRequestType(f"{entry}: labels must be integer class ids, got dtype "
                                f"{dtype}; cast them with .astype(np.int32)")


def batch(images: Any, labels: Any, input_shape: tuple[int, ...], entry: str,
          leading: int = 1) -> None:
  """Checks a batch's dtypes and shapes against the codes' ``input_shape`` (static).

  ``leading`` is the number of batch axes: 1 for ``(B, *input_shape)``, 2 for a train
  step's ``(K, B, *input_shape)`` groups; the labels have the images' batch axes.

  Raises:
    BadRequestType: images that are not uint8, labels that are not integers.
    BadRequest: images whose example shape is not ``input_shape`` (NCHW images?), labels
      of another shape than the images' batch axes (one-hot labels?).
  """
  uint8_images(images, entry)
  _integer_labels(labels, entry)
  image_shape, label_shape = tuple(np.shape(images)), tuple(np.shape(labels))
  if image_shape[leading:] != tuple(input_shape) or len(image_shape) < leading:
    raise errors.BadRequest(
        f"{entry}: images of shape {image_shape} do not hold examples of the codes' shape "
        f"{tuple(input_shape)} (NHWC, as the codes); give images (N, *input_shape)")
  if label_shape != image_shape[:leading]:
    raise errors.BadRequest(
        f"{entry}: labels of shape {label_shape} for images of shape {image_shape}; give "
        f"one integer class id per image, shape {image_shape[:leading]}"
        + (" (one-hot labels? pass labels.argmax(-1))" if len(label_shape) == leading + 1
           else ""))


def label_range(labels: Any, num_codes: int, entry: str) -> None:
  """Refuses labels outside ``[0, num_codes)`` (host data: read in place, or copied once).

  Raises:
    BadRequest: naming the range found and the number of codes.
  """
  values = np.asarray(labels)
  if values.size == 0:
    return
  low, high = int(values.min()), int(values.max())
  if low < 0 or high >= num_codes:
    raise errors.BadRequest(
        f"{entry}: labels run from {low} to {high} but there are {num_codes} codes (classes "
        f"0..{num_codes - 1}); the codes must be one per class (generate_codes(key, "
        f"{high + 1}, shape) for classes 0..{high}) and the labels class ids from 0")


def codes(value: Any, entry: str) -> tuple[int, tuple[int, ...]]:
  """Checks ``(C, *input_shape)`` float codes; returns ``(C, input_shape)``.

  Raises:
    BadRequestType: codes that are not floating-point.
    BadRequest: codes of rank below 2 or with no code.
  """
  shape = tuple(np.shape(value))
  dtype = _dtype(value)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise errors.BadRequestType(
        f"{entry}: codes must be floating-point (C, *input_shape), from generate_codes, got "
        f"dtype {dtype}")
  if len(shape) < 2 or shape[0] < 1:
    raise errors.BadRequest(
        f"{entry}: codes must have shape (C, *input_shape), one code per class, got {shape}")
  return shape[0], shape[1:]


def t_mix(value: Any, entry: str) -> float:
  """Checks the replacement probability; returns it as a float.

  Raises:
    BadConfig: not a real number in [0, 1].
  """
  if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
    raise errors.BadConfig(f"{entry}: t_mix must be a number in [0, 1], got {value!r}")
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise errors.BadConfig(f"{entry}: t_mix must be a number in [0, 1], got {value!r}") from None
  if not 0.0 <= number <= 1.0:
    raise errors.BadConfig(f"t_mix must be in [0, 1], got {value}")
  return number


#: The learning-rate schedules :func:`~mnemonic_jax.training.make_optimizer` knows.
SCHEDULES = ("constant", "cosine")
#: The most epochs or examples per batch (the step counter is a 32-bit integer).
_MAX_INT = 2 ** 31 - 1
#: Real fields: (accepts the float, what it must be).
_REALS = {
    "learning_rate": (lambda v: v > 0, "a finite number > 0"),
    "momentum": (lambda v: 0 <= v < 1, "a finite number in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, "a finite number >= 0"),
    "t_mix": (lambda v: 0 <= v <= 1, "a finite number in [0, 1]"),
}


def _real(value: Any) -> float | None:
  """``value`` as a float, or None where it is not one real number (a string, a bool, an
  array of several values, None, a complex number)."""
  if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
    return None
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def fit_field(name: str, value: Any, owner: str = "FitConfig") -> Any:
  """Checks one field of :class:`~mnemonic_jax.training.FitConfig`; returns it as a plain
  Python value (``int``, ``float``, ``str`` or ``bool``: hashable and JSON-able).

  ``epochs`` and ``batch_size`` integers in ``[1, 2^31 - 1]`` (``2.0`` and ``True``
  refused); ``learning_rate`` finite and > 0; ``momentum`` in ``[0, 1)``;
  ``weight_decay`` finite and >= 0; ``t_mix`` in ``[0, 1]``; ``schedule`` one of
  :data:`SCHEDULES`; ``augment`` a bool. The ranges of
  :data:`mnemonic_jax.configs.FIELD_CHECKS`, which checks the same fields in a config.

  Raises:
    BadConfig: naming ``owner.name``, what it must be and the value given.
  """
  where = f"{owner}.{name}"
  if name in ("epochs", "batch_size"):
    if not _validate.is_integer(value) or not 1 <= value <= _MAX_INT:
      raise errors.BadConfig(f"{where} must be an integer in [1, {_MAX_INT}], got {value!r}")
    return int(value)
  if name in _REALS:
    accepts, what = _REALS[name]
    number = _real(value)
    if number is None or not math.isfinite(number) or not accepts(number):
      raise errors.BadConfig(f"{where} must be {what}, got {value!r}")
    return number
  if name == "schedule":
    if not isinstance(value, str) or value not in SCHEDULES:
      raise errors.BadConfig(f"{where}: unknown schedule {value!r}; use "
                             f"{' or '.join(map(repr, SCHEDULES))}")
    return value
  if name == "augment":
    if not isinstance(value, (bool, np.bool_)):
      raise errors.BadConfig(f"{where} must be True or False, got {value!r}")
    return bool(value)
  raise errors.BadConfig(f"{owner} has no field {name!r}")


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches of ``batch_size`` in one epoch of ``num_examples`` (the remainder
  dropped); :func:`mnemonic_jax.training.steps_per_epoch`.

  Raises:
    BadConfig: ``batch_size`` is not a positive int (as :func:`fit_field`), or the batch
      is larger than the data.
  """
  batch_size = fit_field("batch_size", batch_size, "steps_per_epoch")
  if num_examples < batch_size:
    raise errors.BadConfig(
        f"batch size {batch_size} is larger than the {num_examples} training examples")
  return num_examples // batch_size


def optimizer(learning_rate: Any, momentum: Any, weight_decay: Any) -> None:
  """Checks :func:`~mnemonic_jax.training.make_optimizer`'s numbers as :func:`fit_field`.

  Raises:
    BadConfig: naming the argument.
  """
  for name, value in (("learning_rate", learning_rate), ("momentum", momentum),
                      ("weight_decay", weight_decay)):
    fit_field(name, value, "make_optimizer")


def fit_config(config: Any, config_type: type) -> None:
  """Refuses a ``config`` of :func:`~mnemonic_jax.training.fit` that is not a
  ``config_type`` (:class:`~mnemonic_jax.training.FitConfig`, whose fields are checked
  when it is built).

  Raises:
    BadRequestType: a dict, a ConfigDict or anything else, naming the fix.
  """
  if not isinstance(config, config_type):
    raise errors.BadRequestType(
        f"fit: config must be a FitConfig, got {type(config).__name__}; build one with "
        "FitConfig(epochs=..., batch_size=..., ...) (mnemonic_jax.workflow.fit_config(config) "
        "takes the fields of an experiment config)")


def per_channel(given: Any, name: str, entry: str) -> tuple[float, ...]:
  """``given`` checked as a 1-d sequence of real numbers (a tuple, a list, or a 1-d NumPy
  or JAX int or float array); returns it as a tuple of Python floats (range not checked).

  Raises:
    BadRequestType: a single number, a string, None, a nested sequence or an array of
      another rank, or an entry that is not a real number (a string, bytes, a bool: they
      are refused, not converted); the message names ``entry`` and ``name``.
  """
  numbers = _validate.real_sequence(given, f"{entry}: {name}",
                                    what="per-channel numbers, e.g. (0.5,)")
  return tuple(float(v) for v in numbers)


def flag(value: Any, name: str) -> bool:
  """``value`` checked as ``True`` or ``False`` (a NumPy bool too); returns it as a bool.

  Raises:
    BadRequestType: anything else (``"no"``, ``None``, ``0``); the message names ``name``.
  """
  if not isinstance(value, (bool, np.bool_)):
    raise errors.BadRequestType(f"{name} must be True or False, got {value!r:.60}")
  return bool(value)


def normalisation(mean: Any, std: Any, input_shape: tuple[int, ...], entry: str
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Checks per-channel ``mean`` and ``std``; returns them as tuples of floats.

  Raises:
    BadRequestType: not a 1-d sequence of real numbers (see :func:`per_channel`).
    BadRequest: a length other than 1 or the images' channels (their last axis), a
      non-finite value, or a ``std`` that is not positive.
  """
  values = {"mean": per_channel(mean, "mean", entry), "std": per_channel(std, "std", entry)}
  channels = input_shape[-1] if input_shape else 1
  for name, numbers in values.items():
    if len(numbers) not in (1, channels):
      raise errors.BadRequest(
          f"{entry}: {name} has {len(numbers)} values but the images have {channels} "
          f"channel(s) (the last axis of {tuple(input_shape)}); give one {name} per channel, "
          "or one for all")
    if not all(math.isfinite(v) for v in numbers):
      raise errors.BadRequest(f"{entry}: {name} must be finite, got {numbers}")
  if any(v <= 0 for v in values["std"]):
    raise errors.BadRequest(f"{entry}: std must be positive (it divides), got {values['std']}")
  return values["mean"], values["std"]


def data_arrays(data: Any) -> tuple[Any, Any] | None:
  """:func:`~mnemonic_jax.training.fit`'s ``data`` as ``(images, labels)``, or None for a
  source of epochs.

  Raises:
    BadRequestType: one bare array, a tuple that is not a pair, or anything that is
      neither a pair, a :class:`~mnemonic_jax.data.dataset.Dataset` nor a source of
      epochs (``num_examples`` and ``epoch(key, batch_size, skip)``).
  """
  if isinstance(data, Dataset):
    return data.images, data.labels
  if isinstance(data, (tuple, list)):
    if len(data) != 2:
      raise errors.BadRequestType(
          f"fit: data must be the pair (images, labels), got a {type(data).__name__} of "
          f"{len(data)} items")
    return data[0], data[1]
  if hasattr(data, "shape") and hasattr(data, "dtype"):
    raise errors.BadRequestType(
        f"fit: data is one array of shape {tuple(data.shape)}; fit needs the labels too: "
        "pass (images, labels), a Dataset, or a source of epochs (pipeline.ArrayEpochs)")
  if not hasattr(data, "num_examples") or not callable(getattr(data, "epoch", None)):
    raise errors.BadRequestType(
        f"fit: data must be (images, labels), a Dataset, or a source of epochs with "
        f"num_examples and epoch(key, batch_size, skip) (pipeline.ArrayEpochs, "
        f"pipeline.TfdsEpochs), got {type(data).__name__}")
  return None


@functools.lru_cache(maxsize=64)
def _logits_shape(model: Static, input_shape: tuple[int, ...]) -> Any:
  """The shape of the model's output on one example (cached: equal models trace once)."""
  def logits():
    x = jnp.zeros((1, *input_shape), jnp.float32)
    return model.value.init_with_output(jax.random.key(0), x, train=False)[0]

  return jax.eval_shape(logits)


def model_outputs(model: Any, input_shape: tuple[int, ...], num_codes: int) -> None:
  """Refuses a model whose number of outputs is not the number of codes.

  One ``jax.eval_shape`` of ``model.init_with_output`` on one example (``train=False``,
  as :func:`~mnemonic_jax.training.fit` initialises): a trace on shapes, no compilation,
  once per model and shape (equal models share it, as they share the train step).
  An error the model raises on these inputs propagates (its initialisation would raise it).

  Raises:
    BadRequest: the model does not return logits ``(N, C)``, or ``C`` differs from the
      number of codes.
  """
  out = _logits_shape(Static(model), tuple(input_shape))
  if not isinstance(out, jax.ShapeDtypeStruct) or len(out.shape) != 2:
    shape = getattr(out, "shape", type(out).__name__)
    raise errors.BadRequest(f"fit: the model must return logits (N, C); for one input it "
                            f"returns {shape}")
  if out.shape[1] != num_codes:
    raise errors.BadRequest(
        f"fit: the model has {out.shape[1]} outputs but there are {num_codes} codes; give "
        "the model one output per class and one code per class")


def train_keyword(model: Any) -> None:
  """Refuses a model that :func:`fit` cannot call with ``train=`` (before any tracing)."""
  try:
    signature = inspect.signature(model.__call__)
  except (AttributeError, TypeError, ValueError):  # Not introspectable: the call will tell.
    return
  kinds = {p.kind for p in signature.parameters.values()}
  train = signature.parameters.get("train")
  if inspect.Parameter.VAR_KEYWORD in kinds or (train is not None and train.kind in (
      inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)):
    return
  raise errors.BadRequestType(
      f"fit calls the model as model.apply(variables, x, train=True) to train it (and "
      f"train=False to initialise it), but {type(model).__name__}.__call__{signature} takes "
      "no 'train' keyword; add 'train: bool = False' to it (a model without Dropout or "
      "BatchNorm may ignore it)")


def fit_inputs(model: Any, data: Any, codes_value: Any, config_t_mix: Any, key: Any,
               mean: Any, std: Any, progress: Any = True) -> tuple[Any, Any] | None:
  """Every up-front check of :func:`~mnemonic_jax.training.fit`, before it compiles
  anything; returns ``data`` as ``(images, labels)``, or None for a source of epochs.

  In-memory data (a pair, a ``Dataset`` or a ``pipeline.ArrayEpochs``) is checked whole:
  dtypes, shapes and the labels' range; a streamed source only by the train step.

  Raises:
    BadRequestType, BadRequest, BadConfig: see :func:`mnemonic_jax.training.fit`.
  """
  train_keyword(model)
  flag(progress, "fit: progress")
  check_key(key)
  t_mix(config_t_mix, "fit (config.t_mix)")
  num_codes, input_shape = codes(codes_value, "fit")
  normalisation(mean, std, input_shape, "fit")
  pair = data_arrays(data)
  arrays = pair
  if arrays is None and isinstance(data, pipeline.ArrayEpochs):
    arrays = data.images, data.labels
  if arrays is not None:
    batch(*arrays, input_shape, "fit")
    label_range(arrays[1], num_codes, "fit")
  model_outputs(model, input_shape, num_codes)
  return pair


@functools.lru_cache(maxsize=64)
def _variable_shapes(model: Static, input_shape: tuple[int, ...]) -> Any:
  """The shapes of the variables ``fit`` initialises (``jax.eval_shape``: no compile)."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  return jax.eval_shape(lambda x: model.value.init(jax.random.key(0), x, train=False), x)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


def fit_state(state: Any, model: Any, input_shape: tuple[int, ...]) -> None:
  """Refuses a ``state`` :func:`~mnemonic_jax.training.fit` cannot resume ``model`` from.

  Compares the state's ``params`` and ``batch_stats`` with the shapes ``model`` initialises
  on ``input_shape`` (one ``jax.eval_shape`` of ``model.init``, cached; nothing compiled).

  Raises:
    BadRequestType: ``state`` not a :class:`~mnemonic_jax.training.TrainState` (or None).
    BadRequest: its parameters or BatchNorm statistics are not the model's (another model's
      state); the message names the first leaf that differs.
  """
  if state is None:
    return
  if not isinstance(state, TrainState):
    raise errors.BadRequestType(
        f"fit: state must be a TrainState (from fit, training.initial_state or "
        f"create_train_state) or None, got {type(state).__name__}")
  expected = _variable_shapes(Static(model), tuple(input_shape))
  for name in ("params", "batch_stats"):
    want = _shapes(expected.get(name, {}))
    have = _shapes(getattr(state, name))
    if want == have:
      continue
    missing = sorted(set(want) - set(have)) + sorted(set(have) - set(want))
    where = missing[0] if missing else next(k for k in want if want[k] != have[k])
    raise errors.BadRequest(
        f"fit: state.{name} does not fit the model on inputs {tuple(input_shape)}: "
        f"{name}{where} has shape {have.get(where, 'none')}, the model's "
        f"{want.get(where, 'none')}; resume from a state of this model (another model's "
        "state, or pass state=None to start afresh)")


def on_step(callback: Any) -> None:
  """Refuses an ``on_step`` that is not callable (or None), before anything compiles."""
  if callback is not None and not callable(callback):
    raise errors.BadRequestType(f"fit: on_step must be callable as on_step(step, state, "
                                f"metrics) or None, got {type(callback).__name__}")
