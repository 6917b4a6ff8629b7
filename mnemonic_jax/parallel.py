"""One device mesh with a single ``data`` axis, and the shardings built on it.

The same code runs on one CPU, several GPUs, a TPU slice or several hosts: batches are
split along their leading axis over ``data``; parameters and optimiser state are
replicated. On one device every sharding is trivial and nothing changes.

Several processes (:mod:`mnemonic_jax.distributed`): the mesh spans every process's
devices (``jax.devices()``). A global batch is assembled from each process's own rows
(:func:`process_rows`, :func:`shard_batch`, through
``jax.make_array_from_process_local_data``); what a process reads back it gathers first
(:func:`to_host`, :func:`to_local`). With one process these are ``jax.device_put`` and
``np.asarray`` as before.
"""

from collections.abc import Iterable
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mnemonic_jax import errors

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: every process's devices).

  Args:
    devices: the devices, in mesh order (a list or tuple of ``jax.Device``, each once);
      ``jax.devices()`` (all global devices, process by process) when None.

  Returns:
    The mesh.

  Raises:
    BadRequestType: ``devices`` that is not a sequence of ``jax.Device`` (a string such
      as ``"cpu"``, a number, a list holding something else).
    BadRequest: an empty ``devices`` (a mesh of no device splits nothing and aborts JAX
      later), or a device given twice.
  """
  if devices is None:
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
  fix = "pass a list of devices, e.g. jax.devices() or jax.devices('cpu'), or None for all"
  if isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable):
    raise errors.BadRequestType(f"devices must be a sequence of jax.Device, got "
                                f"{type(devices).__name__} {devices!r:.60}; {fix}")
  devices = list(devices)
  wrong = [d for d in devices if not isinstance(d, jax.Device)]
  if wrong:
    raise errors.BadRequestType(f"devices must hold jax.Device objects only, got "
                                f"{type(wrong[0]).__name__} {wrong[0]!r:.60}; {fix}")
  if not devices:
    raise errors.BadRequest(f"devices is empty: a mesh needs at least one device; {fix}")
  if len(set(devices)) != len(devices):
    raise errors.BadRequest("devices holds a device more than once; give each device once")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_mesh(mesh: Any, name: str = "mesh") -> None:
  """The one check of every ``mesh=`` argument: None, or a ``jax.sharding.Mesh`` holding
  at least one device and an axis named ``data`` (the batch axis; other axes may sit
  beside it, e.g. ``("data", "model")``).

  Args:
    mesh: the value given.
    name: the argument, named in the message (``"mesh"``, ``"Paper.mesh"``).

  Raises:
    BadRequestType: ``mesh`` that is not a ``Mesh`` (a string, a list of devices).
    BadRequest: a mesh of no device, or without a ``data`` axis.
  """
  if mesh is None:
    return
  fix = "build one with mnemonic_jax.make_mesh(devices)"
  if not isinstance(mesh, Mesh):
    raise errors.BadRequestType(
        f"{name} must be a jax.sharding.Mesh with a {DATA_AXIS!r} axis, or None, got "
        f"{type(mesh).__name__}; {fix}")
  if mesh.devices.size == 0:
    raise errors.BadRequest(f"{name} holds no device; {fix}")
  if DATA_AXIS not in mesh.axis_names:
    raise errors.BadRequest(
        f"{name} has no {DATA_AXIS!r} axis (its axes: {tuple(mesh.axis_names)}): the batch "
        f"is split over the axis named {DATA_AXIS!r}; name it so, or {fix}")


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Splits the batch axis (``batch_axis``, leading by default) over ``data``."""
  return NamedSharding(mesh, P(*[None] * batch_axis, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full copy on every device."""
  return NamedSharding(mesh, P())


def multiprocess(mesh: Mesh | None) -> bool:
  """Whether ``mesh`` holds devices of other processes (then arrays must be assembled)."""
  return mesh is not None and not batch_sharding(mesh).is_fully_addressable


def num_shards(mesh: Mesh | None) -> int:
  """Number of devices along ``data`` (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[DATA_AXIS]


def _check_divisible(mesh: Mesh, size: int) -> None:
  shards = num_shards(mesh)
  if size % shards:
    raise errors.BadRequest(f"batch of {size} does not split over {shards} devices; "
                            f"use a batch size divisible by {shards}")


def process_rows(mesh: Mesh | None, batch_size: int) -> slice:
  """The rows of a global batch of ``batch_size`` that this process's devices hold.

  Args:
    mesh: the mesh (None, or one process: every row).
    batch_size: rows of the global batch.

  Returns:
    A ``slice`` of ``range(batch_size)``: this process reads (and places) only these.

  Raises:
    ValueError: ``batch_size`` does not split over the mesh, or this process's devices
      do not hold one contiguous block (a mesh ordered other than process by process).
  """
  if not multiprocess(mesh):
    return slice(0, batch_size)
  _check_divisible(mesh, batch_size)
  blocks = sorted({(i[0].start or 0, i[0].stop or batch_size) for i in
                   batch_sharding(mesh).addressable_devices_indices_map(
                       (batch_size,)).values()})
  for (_, stop), (start, _) in zip(blocks, blocks[1:]):
    if stop != start:
      raise errors.BadRequest("this process's devices are not contiguous in the mesh; build the "
                              "mesh from jax.devices() (process by process)")
  return slice(blocks[0][0], blocks[-1][1])


def local_rows(mesh: Mesh | None, tree: Any) -> Any:
  """This process's rows (:func:`process_rows`) of every array of a global batch ``tree``."""
  if not multiprocess(mesh):
    return tree
  leaves = jax.tree.leaves(tree)
  rows = process_rows(mesh, leaves[0].shape[0]) if leaves else slice(None)
  return jax.tree.map(lambda a: a[rows], tree)


def shard_batch(mesh: Mesh, tree: Any, batch_axis: int = 0) -> Any:
  """Global arrays split along their batch axis over ``data``, from this process's rows.

  With one process ``tree`` is the whole batch (``jax.device_put``). With several, it
  is this process's rows (:func:`process_rows`) and the global batch is assembled with
  ``jax.make_array_from_process_local_data`` (every process calls this, in step).

  Args:
    mesh: the mesh.
    tree: a pytree of arrays.
    batch_axis: the axis holding the examples (0; 1 for ``(K, B, ...)`` groups of
      batches).

  Raises:
    ValueError: if a batch axis (the global one) is not divisible by the number of
      devices.
  """
  sharding = batch_sharding(mesh, batch_axis)
  if not multiprocess(mesh):
    for leaf in jax.tree.leaves(tree):
      _check_divisible(mesh, leaf.shape[batch_axis])
    return jax.device_put(tree, sharding)
  local_share = len(mesh.local_devices) / mesh.size

  def assemble(leaf):
    shape = list(leaf.shape)
    shape[batch_axis] = round(shape[batch_axis] / local_share)
    _check_divisible(mesh, shape[batch_axis])
    return jax.make_array_from_process_local_data(sharding, np.asarray(leaf), tuple(shape))

  return jax.tree.map(assemble, tree)


def shard_global_batch(mesh: Mesh, tree: Any) -> Any:
  """:func:`shard_batch` from the whole batch, which every process holds alike."""
  return shard_batch(mesh, local_rows(mesh, tree))


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places a full copy of ``tree`` on every device of ``mesh``.

  With several processes every process must pass the same values (e.g. parameters
  initialised from the same key); each places its own copy.
  """
  if not multiprocess(mesh):
    return jax.device_put(tree, replicated(mesh))
  sharding = replicated(mesh)

  def place(leaf):
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      # Typed keys have no NumPy form: their data travels, wrapped again on the devices.
      return jax.random.wrap_key_data(place(jax.random.key_data(leaf)),
                                      impl=jax.random.key_impl(leaf))
    return jax.make_array_from_process_local_data(sharding, np.asarray(to_host(leaf)))

  return jax.tree.map(place, tree)


def _gather(leaf: Any, local: bool) -> Any:
  if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
    return np.asarray(leaf) if not local and isinstance(leaf, jax.Array) else leaf
  if leaf.is_fully_replicated:
    value = leaf.addressable_data(0)
  else:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    value = multihost_utils.process_allgather(leaf, tiled=True)
  return jax.device_put(value, jax.local_devices()[0]) if local else np.asarray(value)


def to_host(tree: Any) -> Any:
  """Every array of ``tree`` as a whole NumPy array on this process (gathered if needed).

  A global array whose shards sit on other processes is gathered
  (``multihost_utils.process_allgather``, a collective: every process calls it); a
  replicated one is read from a local copy.
  """
  return jax.tree.map(lambda leaf: _gather(leaf, local=False), tree)


def to_local(tree: Any) -> Any:
  """Every global array of ``tree`` as a whole array on this process's first device.

  Arrays this process can address whole are returned unchanged (one process: a no-op);
  the others are gathered as in :func:`to_host`.
  """
  return jax.tree.map(lambda leaf: _gather(leaf, local=True), tree)


def constrain_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  """Inside jit: asks XLA to split ``x``'s leading axis over ``data`` (no-op without a mesh)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))
