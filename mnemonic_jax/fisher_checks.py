"""The input checks of :mod:`mnemonic_jax.fisher`'s public entry points (``eps``,
``loss_fn``, ``microbatch_size``, float inputs, label arrays), apart from the Fisher itself.

Every name is importable from :mod:`mnemonic_jax.fisher` as before.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, environment, errors


def _check_eps(eps: Any) -> None:
  """Refuses an ``eps`` that is not a finite number ``>= 0`` (a negative one makes the
  Fishers of few-gradient parameters negative, and eq. (6)'s log-ratio NaN)."""
  try:
    value = (None if isinstance(eps, (bool, np.bool_, str, bytes, jax.core.Tracer))
             or np.ndim(eps) != 0 else float(eps))
  except (TypeError, ValueError):
    value = None
  if value is None:
    raise errors.BadRequestType(f"eps must be a number >= 0 (e.g. {1e-16!r}), got {eps!r}")
  with np.errstate(over="ignore"):  # Finite as the float32 the sums start from (not 1e40).
    start = np.float32(value)
  if not (np.isfinite(start) and value >= 0):  # The reason that fits the value given.
    why = (f"every Fisher would be {start:g} (float32, the Fishers' dtype, reaches "
           f"{np.finfo(np.float32).max:.3g})" if value >= 0 or not np.isfinite(value)
           else "a negative one makes Fishers negative")
    raise errors.BadRequest(f"eps must be a finite number >= 0 (where the Fisher sums start), "
                            f"got {value:g}: {why}")


#: A loss on logits and labels, jitted once per loss: ``eval_shape`` on it reuses jax.jit's
#: trace cache, so a second check of the same loss and shapes traces nothing.
_loss = jax.jit(lambda loss_fn, logits, labels: loss_fn(logits, labels), static_argnums=0)


def _check_loss_fn(loss_fn: Any, num_classes: int) -> None:
  """Checks on shapes only (``eval_shape``: nothing compiled) that ``loss_fn`` maps logits
  ``(N, C)`` and labels ``(N,)`` to per-example losses ``(N,)``."""
  if not callable(loss_fn):
    raise errors.BadRequestType(f"loss_fn must be callable as loss_fn(logits, labels) -> (N,) "
                                f"losses, got {type(loss_fn).__name__}")
  logits = jax.ShapeDtypeStruct((2, num_classes), jnp.float32)
  labels = jax.ShapeDtypeStruct((2,), jnp.int32)
  try:
    out = _loss.eval_shape(loss_fn, logits, labels)
  except Exception as e:  # Any loss-side failure becomes one clear message.
    environment.reraise(e)  # The machine's failure is not the loss's.
    text = str(e).splitlines()[0] if str(e) else ""
    raise errors.BadRequest(
        f"loss_fn(logits, labels) fails on float logits (N, {num_classes}) and integer labels "
        f"(N,): {type(e).__name__}: {text}") from e
  shape = getattr(out, "shape", None)
  if not isinstance(out, jax.ShapeDtypeStruct) or shape != (2,):
    got = f"shape {tuple(shape)}" if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
    raise errors.BadRequest(
        f"loss_fn must return per-example losses of shape (N,), unreduced; for 2 examples it "
        f"returned {got}" + (" (a mean or sum? drop the reduction: the Fisher squares each "
                             "example's gradient)" if shape == () else ""))
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise errors.BadRequestType(f"loss_fn must return float losses, got dtype {out.dtype}")


def _check_microbatch(size: Any) -> None:
  """Refuses a ``microbatch_size`` that is not a positive int or None (0.5 and 2.5 too)."""
  if size is not None and (not _validate.is_integer(size) or int(size) < 1):
    raise errors.BadRequest(f"microbatch_size must be a positive integer or None, got {size!r}")


def _float_inputs(inputs: Any, name: str) -> None:
  """Refuses ``inputs`` that are not a float array ``(N, ...)`` (a list, integer pixels)."""
  if (not hasattr(inputs, "shape") or not hasattr(inputs, "dtype") or np.ndim(inputs) < 1
      or not jnp.issubdtype(inputs.dtype, jnp.floating)):
    raise errors.BadRequestType(f"{name} must be a float array (N, *input_shape), got "
                                f"{getattr(inputs, 'dtype', type(inputs).__name__)}")


def _array(value: Any, name: str) -> Any:
  """``value`` if it is an array (NumPy, jax, traced), else ``np.asarray(value)`` (a list
  or tuple of numbers; ``jnp.asarray`` where it holds tracers).

  Raises:
    BadRequestType: naming ``name``, for what NumPy cannot make one array of (ragged), or a
      list holding a bool (:func:`mnemonic_jax._validate.listed_bool`).
  """
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    return value
  _validate.listed_bool(value, name)
  try:
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(value)):
      return jnp.asarray(value)
    return np.asarray(value)
  except (TypeError, ValueError) as e:
    raise errors.BadRequestType(f"{name} must be an array, or a list of numbers NumPy takes "
                                f"as one, got {type(value).__name__}: {e}") from None
