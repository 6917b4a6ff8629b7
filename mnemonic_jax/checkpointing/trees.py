"""Pytrees as stored: paths, stored shapes, mismatches, abstract restore targets and
non-finite leaves."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.checkpointing._common import PyTree


def _path_str(path: tuple[Any, ...]) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"


def _is_key_dtype(dtype: Any) -> bool:
  try:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
  except TypeError:
    return False


def _stored_shape(leaf: Any) -> tuple[int, ...] | None:
  """Shape a leaf has on disk: a typed PRNG key is stored as its ``key_data``."""
  if isinstance(leaf, (int, float, complex, bool)):
    return ()  # Orbax stores Python scalars as 0-d values.
  shape = getattr(leaf, "shape", None)
  if shape is None:
    return None
  if _is_key_dtype(leaf.dtype):
    return tuple(jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, leaf.dtype)).shape)
  return tuple(shape)


def _tree_mismatch(actual: PyTree, expected: PyTree) -> str | None:
  """Describes how ``actual``'s paths and shapes differ from ``expected``'s, or None.

  Both trees are compared leaf by leaf on their paths (``Dense_0/kernel``) and stored
  shapes; containers are not compared by type, so a FrozenDict matches a dict.
  """
  flat_actual = {_path_str(p): _stored_shape(x) for p, x in
                 jax.tree_util.tree_flatten_with_path(actual)[0]}
  flat_expected = {_path_str(p): _stored_shape(x) for p, x in
                   jax.tree_util.tree_flatten_with_path(expected)[0]}
  problems = []
  missing = sorted(set(flat_expected) - set(flat_actual))
  extra = sorted(set(flat_actual) - set(flat_expected))
  if missing:
    problems.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
  if extra:
    problems.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
  wrong = [k for k in sorted(set(flat_actual) & set(flat_expected))
           if flat_actual[k] != flat_expected[k]]
  for k in wrong[:3]:
    problems.append(f"{k} has shape {flat_actual[k]}, expected {flat_expected[k]}")
  if len(wrong) > 3:
    problems.append(f"{len(wrong) - 3} more shape mismatches")
  return "; ".join(problems) or None


def _leaf_dtype(leaf: Any) -> np.dtype | None:
  """A leaf's dtype (a Python number's as numpy gives it), or None if it has none."""
  dtype = getattr(leaf, "dtype", None)
  if dtype is None and isinstance(leaf, (int, float, complex, bool)):
    dtype = np.asarray(leaf).dtype
  try:
    return None if dtype is None else np.dtype(dtype)
  except TypeError:
    return None  # A typed PRNG key's dtype is not a numpy one.


def _dtype_mismatch(actual: PyTree, expected: PyTree, strict: bool = False) -> str | None:
  """Describes leaves of ``actual`` whose dtype is of another kind than ``expected``'s.

  A floating-point leaf may have another floating-point dtype than expected (bfloat16
  params of a float32 model are kept as they are); any other difference (integers for
  floats, complex, booleans) is a mismatch. With ``strict`` every difference is one,
  except where ``expected`` has a Python number (its type, not a dtype, is asked for).
  Leaves on paths only one tree has, and typed PRNG keys, are left to
  :func:`_tree_mismatch`.

  Returns:
    ``"Dense_0/kernel has dtype int32, expected float32"`` (at most three, then a count),
    or None.
  """
  flat_expected = jax.tree_util.tree_flatten_with_path(expected)[0]
  want = {_path_str(p): _leaf_dtype(x) for p, x in flat_expected}
  python_numbers = {_path_str(p) for p, x in flat_expected if not hasattr(x, "dtype")}
  problems = []
  for p, x in jax.tree_util.tree_flatten_with_path(actual)[0]:
    path, have = _path_str(p), _leaf_dtype(x)
    expected_dtype = want.get(path)
    if have is None or expected_dtype is None or have == expected_dtype:
      continue
    if strict and path in python_numbers:
      continue
    if (not strict and jnp.issubdtype(have, jnp.floating)
        and jnp.issubdtype(expected_dtype, jnp.floating)):
      continue
    problems.append(f"{path} has dtype {have.name}, expected {expected_dtype.name}")
  if len(problems) > 3:
    problems = problems[:3] + [f"{len(problems) - 3} more dtype mismatches"]
  return "; ".join(problems) or None


def _jax_holds(dtype: Any) -> bool:
  """Whether a jax Array of this process can hold ``dtype`` exactly (float64 cannot
  unless ``jax_enable_x64``: JAX would make it float32)."""
  return np.dtype(jax.dtypes.canonicalize_dtype(dtype)) == np.dtype(dtype)


def _uncommitted(value: Any) -> Any:
  """A restored array as a fresh one is: uncommitted (typed PRNG keys stay typed).

  Orbax returns arrays committed to a device, and jit compiles a program again for the
  other kind, so restored arrays beside fresh ones would compile every program twice.
  """
  if not isinstance(value, jax.Array):
    return value
  if _is_key_dtype(value.dtype):
    data = jax.device_put(np.asarray(jax.random.key_data(value)))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
  return jax.device_put(np.asarray(value))


def _abstract(tree: PyTree) -> PyTree:
  """Abstract restore target: ShapeDtypeStructs placed on the default device if unplaced.

  Leaves that are already ``jax.ShapeDtypeStruct`` keep their sharding when they have one;
  concrete arrays are replaced by their shape, dtype and (for jax Arrays) sharding.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # This process's.

  def leaf(x):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      return x
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = device
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


def _count_nonfinite(leaf: Any) -> int:
  """Number of NaN/inf entries of a floating-point leaf (0 for other dtypes).

  Counted on the host (no compilation per shape), except for arrays spread over several
  hosts, which are counted where they live.
  """
  if isinstance(leaf, jax.Array):
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
      return 0
    if not leaf.is_fully_addressable:
      return int(leaf.size - jnp.count_nonzero(jnp.isfinite(leaf)))
  array = np.asarray(leaf)
  if not jnp.issubdtype(array.dtype, jnp.inexact):  # jnp's knows bfloat16 and float8 too.
    return 0
  return int(array.size - np.count_nonzero(np.isfinite(array)))


def nonfinite_leaves(tree: PyTree) -> list[tuple[str, int]]:
  """``[(path, count), ...]`` of the leaves of ``tree`` holding NaN or inf values.

  Args:
    tree: a pytree of arrays.

  Returns:
    One ``("Dense_0/kernel", number of non-finite entries)`` per offending leaf, in
    tree order; empty if every entry is finite.
  """
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    count = _count_nonfinite(leaf)
    if count:
      found.append((_path_str(path), count))
  return found

