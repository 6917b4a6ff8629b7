"""Mnemonic codes: one fixed random input per class (Algorithm 1 of the paper)."""

import functools
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax.run_once import jit_run_once

DISTRIBUTIONS = ("uniform", "normal")


def check_key(key: Any, name: str = "key") -> None:
  """Checks that ``key`` is one PRNG key: typed (``jax.random.key(seed)``) or a raw
  ``uint32`` key (``jax.random.PRNGKey(seed)``) of the shape the default PRNG
  implementation gives one (``(2,)`` for threefry, ``(4,)`` for rbg). Static: reads the
  dtype and shape only, so it costs nothing under ``jax.jit`` and never waits for the
  device.

  Raises:
    BadRequestType: an int seed (the message says ``jax.random.key(seed)``), a ``uint32``
      array that is not a raw key of the default implementation (shape ``(3,)`` for
      threefry's ``(2,)``), or anything else that is not a key; the message names
      ``name``.
    BadRequest: a batch of keys (e.g. from ``jax.random.split``) where one is expected.
  """
  dtype, shape = getattr(key, "dtype", None), tuple(getattr(key, "shape", ()))
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if shape:
      raise errors.BadRequest(f"{name} is a batch of keys of shape {shape}; pass one key "
                              f"(e.g. keys[0], or jax.random.key(seed))")
    return
  if _validate.is_integer(key):
    seed = int(key) if not isinstance(key, jax.core.Tracer) else "seed"
    raise errors.BadRequestType(f"{name} must be a PRNG key, not the int seed {seed}; make "
                                f"one with jax.random.key({seed})")
  if dtype is not None and np.dtype(dtype) == np.uint32 and len(shape) >= 1:
    one = _raw_key_shape(jax.config.jax_default_prng_impl)
    if shape[-len(one):] != one:
      raise errors.BadRequestType(
          f"{name} must be a PRNG key (jax.random.key(seed)), got a uint32 array of shape "
          f"{shape}: a raw key of the default PRNG implementation "
          f"({jax.config.jax_default_prng_impl}) has shape {one}")
    if len(shape) > len(one):  # Raw keys: one is (2,) (threefry), a batch (K, 2).
      raise errors.BadRequest(f"{name} is a batch of {shape[0]} raw keys of shape {shape}; "
                              "pass one key (e.g. keys[0], or jax.random.key(seed))")
    return
  what = (f"an array of dtype {dtype} and shape {shape}" if dtype is not None
          else f"a {type(key).__name__}")
  raise errors.BadRequestType(f"{name} must be a PRNG key (jax.random.key(seed)), got {what}")


@functools.lru_cache(maxsize=None)
def _raw_key_shape(impl: str) -> tuple[int, ...]:
  """The shape of one raw key of the PRNG implementation ``impl`` (traced, not run)."""
  del impl  # The cache's key: jax.random.key follows the configured default.
  return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def _concrete(value: Any, name: str) -> None:
  """Refuses a traced ``value``: it sets the codes' shape, which a program must know."""
  if isinstance(value, jax.core.Tracer):
    raise errors.BadRequestType(
        f"{name} must be a concrete int: it sets the codes' shape, so it cannot be traced "
        f"by jax.jit or vmap; mark it static (jax.jit(..., static_argnums=...)) or pass it "
        "from outside")


def _shape(shape: Any) -> tuple[int, ...]:
  """``shape`` as a tuple of positive ints (an int ``n`` is the 1-d shape ``(n,)``)."""
  if _validate.is_integer(shape):
    shape = (shape,)
  if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray, jax.Array)):
    raise errors.BadRequestType(
        f"shape must be a tuple of ints, one model input's shape such as (28, 28, 1), got "
        f"{shape!r}")
  wrong = [s for s in shape if not _validate.is_integer(s)]
  if wrong:
    raise errors.BadRequestType(f"shape must be a tuple of ints, got {tuple(shape)!r} "
                                f"(not ints: {wrong[:3]!r})")
  for s in shape:
    _concrete(s, "shape")
  shape = tuple(int(s) for s in shape)
  if any(s < 1 for s in shape):
    raise errors.BadRequest(f"shape {shape} has a zero or negative dimension; every "
                            "dimension of one model input is at least 1")
  return shape


def generate_codes(
    key: chex.PRNGKey,
    num_classes: int,
    shape: Sequence[int] | int,
    *,
    distribution: str = "uniform",
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
  """Draws one mnemonic code per class.

  Class ``c``'s code is drawn from ``jax.random.fold_in(key, c)``, so it does not depend
  on ``num_classes``: the first ten codes of a 100-class draw equal a 10-class draw.

  Args:
    key: one PRNG key (``jax.random.key(seed)``; a raw ``jax.random.PRNGKey`` too).
    num_classes: number of classes C, a positive int.
    shape: shape of one model input, e.g. ``(28, 28, 1)``; an int ``n`` means ``(n,)``
      (as in NumPy). Every dimension at least 1.
    distribution: ``"uniform"`` on [0, 1) (the reference implementation's choice) or
      ``"normal"`` (N(0, 1), the paper's text).
    dtype: floating dtype of the codes (they live in the model's normalised input space).

  Returns:
    An array of shape ``(num_classes, *shape)``, in the model's input space.

  Raises:
    BadRequestType: ``key`` is an int seed, or not a key; ``num_classes`` is not an int
      (``10.0`` and ``True`` are refused); ``shape`` is not a tuple of ints (or an int);
      ``num_classes`` or a dimension of ``shape`` traced by ``jax.jit`` (not static);
      ``distribution`` is not a string; ``dtype`` is not a floating dtype.
    BadRequest: ``key`` is a batch of keys; ``num_classes < 1``; a dimension of ``shape``
      is zero or negative; an unknown ``distribution``.

  Example:
    >>> codes = generate_codes(jax.random.key(0), 10, (28, 28, 1))
  """
  check_key(key)
  _validate.choice(distribution, "distribution", DISTRIBUTIONS, what="code distribution")
  if not _validate.is_integer(num_classes):
    raise errors.BadRequestType(f"num_classes must be an int, got {num_classes!r} "
                                f"({type(num_classes).__name__})")
  _concrete(num_classes, "num_classes")
  if num_classes < 1:
    raise errors.BadRequest(f"num_classes must be positive, got {num_classes}")
  shape = _shape(shape)
  try:  # None is no dtype (jnp.dtype(None) would be float32 or float64, as x64 says).
    float_dtype = None if dtype is None else jnp.dtype(dtype)
  except TypeError:
    float_dtype = None
  if float_dtype is None or not jnp.issubdtype(float_dtype, jnp.floating):
    raise errors.BadRequestType(
        f"dtype must be a floating dtype such as jnp.float32 (codes are inputs in the "
        f"model's normalised float space), got "
        f"{float_dtype if float_dtype is not None else repr(dtype)}")
  return _draw(key, int(num_classes), shape, distribution, float_dtype)


def _draw_codes(key, num_classes: int, shape: tuple[int, ...], distribution: str, dtype):
  sample = jax.random.uniform if distribution == "uniform" else jax.random.normal
  return jax.vmap(lambda c: sample(jax.random.fold_in(key, c), shape, dtype))(
      jnp.arange(num_classes))


# One program (as eager ops, one program each), compiled quickly on the CPU.
_draw = jit_run_once(_draw_codes, static_argnums=(1, 2, 3, 4))


def _array(value: Any, name: str) -> Any:
  """``value`` as an array (a list becomes one); an array passes unchanged.

  Raises:
    BadRequestType: ``None``, a string, or values that are not numbers (a bool in a list).
  """
  if hasattr(value, "dtype") and hasattr(value, "shape"):
    return value
  _validate.listed_bool(value, name)
  kind = np.asarray(value).dtype.kind if value is not None else None
  if kind not in ("b", "i", "u", "f"):
    raise errors.BadRequestType(f"{name} must be an array of numbers, got "
                                f"{type(value).__name__} {value!r:.60}")
  return jnp.asarray(value)


def _check_t_mix(t_mix: Any) -> Any:
  """``t_mix`` checked: one real number in [0, 1], or a traced real scalar (its value is
  then the caller's program's to check). Returns what :func:`_mix` takes: a concrete
  rate as ``np.float32`` whatever its kind (a Python int or float, a NumPy scalar, a 0-d
  array: weak and strong types would each compile a program), as
  :func:`mnemonic_jax.training.fit` passes it; a traced one unchanged.

  Raises:
    BadRequestType: a string, None, bool, complex, or an array with dimensions (a
      per-example rate is not supported), traced or not.
    BadRequest: a concrete value outside [0, 1] or NaN.
  """
  if isinstance(t_mix, jax.core.Tracer):
    if t_mix.ndim != 0 or not (jnp.issubdtype(t_mix.dtype, jnp.floating)
                               or jnp.issubdtype(t_mix.dtype, jnp.integer)):
      raise errors.BadRequestType(
          f"t_mix must be one number in [0, 1] (a scalar), got a traced {t_mix.dtype} "
          f"array of shape {t_mix.shape}; one rate applies to the whole batch")
    return t_mix
  number = _validate.number(t_mix, "t_mix", low=0.0, high=1.0,
                            hint="the probability of replacing an example by its code (a "
                                 "scalar; one rate applies to the whole batch)")
  return np.float32(number)


def _check_mix(images: jax.Array, labels: jax.Array, codes: jax.Array) -> None:
  """:func:`mix_codes`' checks: dtypes and shapes (static), the labels' range if concrete."""
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise errors.BadRequestType(
        f"images have dtype {images.dtype}, but codes live in the model's normalised float "
        "space (a code cast to integers is all zeros); normalise the batch first, as fit "
        "does: mnemonic_jax.bundle.normalize(images, mean, std), or images / 255.0")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise errors.BadRequestType(f"labels must be integer class ids, got dtype {labels.dtype}; "
                                "cast them with .astype(int)")
  if not jnp.issubdtype(codes.dtype, jnp.floating):
    raise errors.BadRequestType(f"codes must be floating-point (C, *input_shape), from "
                                f"generate_codes, got dtype {codes.dtype}")
  if labels.ndim != 1:
    raise errors.BadRequest(
        f"labels must have shape (N,), got {labels.shape}"
        + ("; one-hot labels? pass class ids, labels.argmax(-1)" if labels.ndim == 2 else ""))
  if images.ndim < 1 or images.shape[0] != labels.shape[0]:
    raise errors.BadRequest(f"labels has {labels.shape[0]} entries but images has shape "
                            f"{images.shape}: give one label per example")
  if codes.ndim < 1 or codes.shape[0] < 1 or codes.shape[1:] != images.shape[1:]:
    raise errors.BadRequest(
        f"codes have shape {codes.shape}, one code of shape {codes.shape[1:]}, but one "
        f"image has shape {images.shape[1:]}; codes must be (C, *input_shape) of the same "
        "layout as the images (NHWC)")
  if isinstance(labels, jax.core.Tracer) or labels.size == 0:
    return  # Under jit: the caller's program is responsible for the values.
  values = np.asarray(labels)  # Concrete: one small transfer, checked on the host.
  low, high = int(values.min()), int(values.max())
  if low < 0 or high >= codes.shape[0]:  # The fix that fits: a negative label is no class.
    fix = ("a negative label is no class (padding?): pass class ids in that range" if low < 0
           else "generate one code per class")
    raise errors.BadRequest(
        f"labels run from {low} to {high} but there are {codes.shape[0]} codes (classes "
        f"0..{codes.shape[0] - 1}); {fix}")


@jax.jit
def _mix(key, images, labels, codes, t_mix):
  """The mixing of :func:`mix_codes`, checked before: one program per shapes and dtypes
  (``t_mix`` and the key are traced), inlined when called inside a caller's ``jit``."""
  if not jnp.issubdtype(jnp.result_type(t_mix), jnp.floating):
    t_mix = jnp.asarray(t_mix, jnp.float32)  # A traced int rate: bernoulli takes floats.
  replaced = jax.random.bernoulli(key, t_mix, labels.shape)
  mask = replaced.reshape(replaced.shape + (1,) * (images.ndim - 1))
  mixed = jnp.where(mask, codes[labels].astype(images.dtype), images)
  return mixed, replaced


def mix_codes(
    key: chex.PRNGKey,
    images: chex.Array,
    labels: chex.Array,
    codes: chex.Array,
    t_mix: float,
) -> tuple[jax.Array, jax.Array]:
  """Replaces each example by its class's code with probability ``t_mix``.

  Labels are unchanged, so the network learns to classify the codes as their classes.
  One jitted program (compiled once per shapes and dtypes; ``t_mix`` and the key are
  traced, so a new rate compiles nothing, and a concrete rate enters as float32 whatever
  its kind: ``0.1``, ``np.float64(0.1)``, ``1`` or a 0-d array share one program), usable
  inside a caller's ``jax.jit`` and ``vmap``, where ``t_mix`` may be a traced scalar.
  Under ``jax.jit`` only the dtypes and shapes are checked (traced labels and ``t_mix``
  cannot be read without waiting for the device); called eagerly, the labels' range and
  ``t_mix`` are checked too.

  Args:
    key: one PRNG key; draw a fresh one per step (e.g. ``jax.random.fold_in(key, step)``).
    images: a float batch ``(N, *shape)`` in the model's normalised input space (uint8
      images must be normalised first, as :func:`mnemonic_jax.training.fit` does).
    labels: integer labels ``(N,)`` in ``[0, C)``.
    codes: float ``(C, *shape)`` from :func:`generate_codes`.
    t_mix: replacement probability, one real number in [0, 1] for the whole batch (a
      per-example array is refused: ``vmap`` over examples for per-example rates).

  Returns:
    ``(mixed, replaced)``: the batch with replaced examples swapped for codes, and the
    boolean mask ``(N,)`` of replaced examples.

  Raises:
    BadRequestType: ``key`` is not one PRNG key (an int seed, a uint32 array that is not
      a raw key); integer images (not normalised); non-integer labels; non-float codes;
      ``t_mix`` not one real number (a string, None, a bool, an array with dimensions);
      images, labels or codes that are not arrays of numbers.
    BadRequest: a batch of keys; labels not of shape ``(N,)`` for ``N`` images (one-hot
      labels); codes whose per-example shape differs from the images'; concrete labels
      outside ``[0, C)``; a concrete ``t_mix`` outside [0, 1] or NaN (traced ones are not
      checked).
  """
  check_key(key)
  t_mix = _check_t_mix(t_mix)
  images, labels, codes = (_array(v, n) for v, n in ((images, "images"), (labels, "labels"),
                                                     (codes, "codes")))
  _check_mix(images, labels, codes)
  return _mix(key, images, labels, codes, t_mix)
