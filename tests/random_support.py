"""Random test inputs and parameters drawn with NumPy, so that making them compiles nothing.

Every ``jax.random`` draw of a new shape compiles a program (~0.3 s of CPU each: a
threefry hash and a transform), and an eager ``model.init`` compiles one per parameter
shape. Where a test only needs some inputs or some parameters (not ``generate_codes`` or
``model.init`` themselves, which their own tests check), these give them for free.
"""

import functools

import jax
import numpy as np


def uniform(seed: int, shape, low: float = 0.0, high: float = 1.0) -> jax.Array:
  """float32 uniform on ``[low, high)`` of ``shape`` (uncommitted, as a fresh jax.Array)."""
  values = np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
  return jax.device_put(values)


def normal(seed: int, shape, scale: float = 1.0) -> jax.Array:
  """float32 N(0, scale^2) of ``shape`` (uncommitted, as a fresh jax.Array)."""
  values = (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
  return jax.device_put(values)


def init_variables(model, x, seed: int = 0, **init_kwargs) -> dict:
  """Variables of ``model`` for inputs like ``x``, as ``model.init`` shapes them.

  The shapes come from ``jax.eval_shape(model.init, ...)`` (traced, not compiled); the
  values from NumPy: ``scale`` and ``var`` ones, ``bias`` and ``mean`` zeros (Flax's
  defaults), every other leaf N(0, 1/fan_in) with fan_in the product of all but its last
  axis (LeCun's scale, untruncated).

  Args:
    model: a Flax Linen module.
    x: an input batch (array or ``jax.ShapeDtypeStruct``).
    seed: NumPy seed.
    **init_kwargs: passed to ``model.init`` (e.g. ``train=False``).

  Returns:
    The variables dict (``{"params": ..., "batch_stats": ...}``), leaves uncommitted
    jax.Arrays of the dtypes ``model.init`` gives.
  """
  shapes = jax.eval_shape(functools.partial(model.init, **init_kwargs), jax.random.key(0), x)
  rng = np.random.default_rng(seed)

  def leaf(path, spec):
    name = getattr(path[-1], "key", None)
    if name in ("scale", "var"):
      return np.ones(spec.shape, spec.dtype)
    if name in ("bias", "mean"):
      return np.zeros(spec.shape, spec.dtype)
    fan_in = max(1, int(np.prod(spec.shape[:-1])))
    return (rng.standard_normal(spec.shape) / np.sqrt(fan_in)).astype(spec.dtype)

  return jax.device_put(jax.tree_util.tree_map_with_path(leaf, shapes))
