"""Starting JAX's multi-controller runtime: one process per host, one global mesh.

Several hosts (a TPU pod slice, a multi-node GPU cluster) run one copy of the same program
each; ``jax.distributed.initialize()`` connects them, after which ``jax.devices()`` lists
every device of every process and :func:`mnemonic_jax.parallel.make_mesh` spans them all.
It must run before anything else touches JAX's devices.

:func:`initialize` starts the runtime when the process was launched under a cluster
launcher (the environment variables ``jax.distributed.initialize()`` itself reads:
SLURM's ``srun``, Open MPI's ``mpirun``, a GKE TPU slice, or ``JAX_COORDINATOR_ADDRESS``
with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``), or explicitly from a coordinator
address, a number of processes and a process id (the command line's ``--coordinator``,
``--num-processes`` and ``--process-id``). A single process (no launcher, or a launcher
with one task) starts nothing: everything then runs as before.

Example (in your own program, before any other JAX call)::

  from mnemonic_jax import distributed
  distributed.initialize()                                   # under srun / a TPU pod
  distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # by hand
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Callable, Mapping

from mnemonic_jax import errors

#: ``--coordinator auto``: let ``jax.distributed.initialize()`` detect everything (e.g. a
#: Cloud TPU VM pod slice, which it recognises from the TPU metadata server).
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Launch:
  """How this process was started.

  Attributes:
    launcher: ``"explicit"``, ``"env"`` (``JAX_COORDINATOR_ADDRESS``), ``"slurm"``,
      ``"openmpi"``, ``"tpu"``, ``"auto"`` or ``None`` (a single process).
    coordinator: ``HOST:PORT`` of process 0's coordinator, or None to let JAX find it.
    num_processes: number of processes, or None to let JAX find it.
    process_id: this process's index, or None to let JAX find it.
  """

  launcher: str | None
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


def _int_env(env: Mapping[str, str], name: str) -> int | None:
  try:
    return int(env[name])
  except (KeyError, ValueError):
    return None


def detect(env: Mapping[str, str] | None = None) -> Launch:
  """The cluster launcher this process runs under, from its environment variables.

  The variables are those ``jax.distributed.initialize()`` reads (``jax/_src/clusters``):
  ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, this
  module's own); SLURM's ``SLURM_JOB_ID``, ``SLURM_NTASKS``, ``SLURM_PROCID``,
  ``SLURM_STEP_NODELIST``; Open MPI's ``OMPI_MCA_orte_hnp_uri`` and
  ``OMPI_COMM_WORLD_SIZE``; a GKE TPU slice's ``TPU_WORKER_HOSTNAMES`` or
  ``TPU_PROCESS_ADDRESSES``. A launcher with a single task counts as no launcher: there
  is nothing to connect (an ``sbatch`` script run outside ``srun`` stays one process).

  Args:
    env: the environment (``os.environ`` by default).

  Returns:
    A :class:`Launch`; ``launcher`` is None for a single process.
  """
  env = os.environ if env is None else env
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return Launch("env", env["JAX_COORDINATOR_ADDRESS"], _int_env(env, "JAX_NUM_PROCESSES"),
                  _int_env(env, "JAX_PROCESS_ID"))
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID")
  if all(v in env for v in slurm) and (_int_env(env, "SLURM_NTASKS") or 1) > 1:
    return Launch("slurm")
  if "OMPI_MCA_orte_hnp_uri" in env and (_int_env(env, "OMPI_COMM_WORLD_SIZE") or 1) > 1:
    return Launch("openmpi")
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  if len([h for h in hosts.split(",") if h.strip()]) > 1:
    return Launch("tpu")
  return Launch(None)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, env: Mapping[str, str] | None = None,
               on_connect: Callable[[Launch], None] | None = None) -> bool:
  """Starts JAX's multi-process runtime if this process is one of several; idempotent.

  Call it before anything else uses JAX's devices. With no arguments, the runtime starts
  only under a detected launcher (:func:`detect`); ``coordinator="auto"`` always calls
  ``jax.distributed.initialize()`` and lets JAX detect the rest (a Cloud TPU VM pod
  slice); a ``HOST:PORT`` coordinator needs ``num_processes`` and ``process_id``.

  Args:
    coordinator: ``HOST:PORT`` of process 0 (every process passes the same), ``"auto"``,
      or None to detect a launcher.
    num_processes: total number of processes (with an explicit ``coordinator``).
    process_id: this process's index in ``[0, num_processes)``.
    env: the environment to detect a launcher in (``os.environ`` by default).
    on_connect: called with the checked launch just before connecting (the command line
      says there that it waits for the other processes).

  Returns:
    Whether the runtime is running (started now or before) with more than one process.

  Raises:
    mnemonic_jax.errors.BadRequest: (a ``ValueError``) an explicit coordinator without
      ``num_processes`` / ``process_id``, a number of processes below 1, or a process id
      out of range; a coordinator that is not ``HOST:PORT``; ``"auto"`` where JAX finds
      no cluster.
  """
  import jax  # pylint: disable=import-outside-toplevel  (the command line's --help stays light)

  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  if coordinator is None:
    if num_processes is not None or process_id is not None:
      raise errors.BadRequest("--num-processes and --process-id need --coordinator HOST:PORT")
    launch = detect(env)
  elif coordinator == AUTO:
    launch = Launch(AUTO, None, num_processes, process_id)
  else:
    launch = Launch("explicit", coordinator, num_processes, process_id)
  if launch.launcher is None:
    return False
  if launch.launcher in ("explicit", "env"):
    _check_explicit(launch)
  if on_connect is not None:
    on_connect(launch)
  try:
    jax.distributed.initialize(coordinator_address=launch.coordinator,
                               num_processes=launch.num_processes,
                               process_id=launch.process_id)
  except ValueError as e:  # JAX found no cluster to take the coordinator from.
    if launch.launcher != AUTO:
      raise
    raise errors.BadRequest(
        "--coordinator auto found no cluster to join (JAX detects the coordinator on Cloud "
        "TPU pods, SLURM and Open MPI); elsewhere give --coordinator HOST:PORT "
        f"--num-processes N --process-id I ({e})") from e
  return jax.process_count() > 1


def _check_explicit(launch: Launch) -> None:
  host, _, port = (launch.coordinator or "").rpartition(":")
  if not host or not port.isdigit():
    raise errors.BadRequest(f"coordinator {launch.coordinator!r} is not HOST:PORT "
                     "(e.g. --coordinator 10.0.0.1:1234)")
  if launch.num_processes is None or launch.process_id is None:
    raise errors.BadRequest(f"coordinator {launch.coordinator} needs the number of processes "
                     "and this process's id (--num-processes N --process-id I, or "
                     "JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
  if launch.num_processes < 1:
    raise errors.BadRequest(
        f"the number of processes must be >= 1, got {launch.num_processes}")
  if not 0 <= launch.process_id < launch.num_processes:
    raise errors.BadRequest(
        f"process id {launch.process_id} is outside [0, {launch.num_processes})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds ``--coordinator``, ``--num-processes`` and ``--process-id`` to a command's parser.

  Args:
    parser: the command's argparse parser (or an argument group).
  """
  group = parser.add_argument_group(
      "many hosts", "one process per host; under srun, mpirun or a GKE TPU slice the "
      "runtime starts by itself")
  group.add_argument("--coordinator", metavar="HOST:PORT",
                     help="process 0's address, the same for every process (or 'auto': "
                     "let JAX detect it, e.g. on a Cloud TPU VM pod slice)")
  group.add_argument("--num-processes", type=int, metavar="N",
                     help="number of processes (with --coordinator HOST:PORT)")
  group.add_argument("--process-id", type=int, metavar="I",
                     help="this process's index in [0, N) (with --coordinator HOST:PORT)")


def initialize_from_args(args: argparse.Namespace,
                         on_connect: Callable[[Launch], None] | None = None) -> bool:
  """:func:`initialize` from the flags :func:`add_arguments` added (absent ones: None).

  Returns:
    Whether more than one process runs.

  Raises:
    mnemonic_jax.errors.BadRequest: as :func:`initialize`.
  """
  return initialize(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                    getattr(args, "process_id", None), on_connect=on_connect)


def is_main_process() -> bool:
  """Whether this is process 0, the one that logs, shows progress and writes reports."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (no-op on one process)."""
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def process_zero_says(flag: bool) -> bool:
  """Process 0's ``flag``, on every process (a collective; ``flag`` on one process).

  For a decision only process 0 can take (it alone wrote a file, or took a lock) that
  every process must follow.
  """
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() == 1:
    return bool(flag)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))
