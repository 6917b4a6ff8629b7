"""One device mesh with a single ``data`` axis, and the shardings built on it.

The same code runs on one CPU, several GPUs or a TPU slice: batches are split along their
leading axis over ``data``; parameters and optimiser state are replicated. On one device
every sharding is trivial and nothing changes.
"""

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all local devices)."""
  devices = jax.local_devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Splits the leading (batch) axis over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full copy on every device."""
  return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, tree: Any) -> Any:
  """Places every array of ``tree`` with its leading axis split over ``data``.

  Raises:
    ValueError: if a leading axis is not divisible by the number of devices.
  """
  size = mesh.shape[DATA_AXIS]
  for leaf in jax.tree.leaves(tree):
    if leaf.shape[0] % size:
      raise ValueError(
          f"batch of {leaf.shape[0]} does not split over {size} devices; "
          f"use a batch size divisible by {size}")
  return jax.device_put(tree, batch_sharding(mesh))


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places a full copy of ``tree`` on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  """Inside jit: asks XLA to split ``x``'s leading axis over ``data`` (no-op without a mesh)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def num_shards(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape[DATA_AXIS]
