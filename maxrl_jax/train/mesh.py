"""Device mesh for data parallelism on one host or many (a Cloud TPU pod slice, a GPU cluster).

Every driver uses one program for every topology: a 1-D mesh with axis ``"data"`` over all
devices of all processes, parameters and optimiser state *replicated* (``P()``), batches *sharded*
on their batch axis (``P("data")``), and the train step compiled once with ``jax.jit`` and these
shardings. XLA's SPMD partitioner then inserts the gradient all-reduce: for a loss

  L(theta) = (1/B) sum_{b=1}^{B} l(theta; x_b),

each device computes the partial sum over its B/D examples and the partials are summed over the
mesh, which is exactly what ``pmap`` + ``lax.pmean`` did by hand.

Multi-process runs (one process per host) call :func:`initialize_distributed` first; each process
then feeds only its own slice of the global batch and :func:`host_local_to_global` assembles the
global ``jax.Array`` with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from maxrl_jax.train.errors import ConfigError

DATA_AXIS = "data"

_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
_ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
_ENV_PROCESS_ID = "JAX_PROCESS_ID"
# Set to 1 on a Cloud TPU pod slice (or a SLURM/Open MPI cluster): jax.distributed.initialize()
# then detects coordinator, process count and id by itself.
_ENV_AUTO = "MAXRL_DISTRIBUTED"

_initialized_here = False


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = 120,
) -> None:
  """Calls ``jax.distributed.initialize`` iff this is a multi-process run; idempotent.

  A run is multi-process when the arguments or the environment say so:

  * explicit ``coordinator_address`` / ``num_processes`` / ``process_id`` arguments, or the
    environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID`` (``num_processes > 1``): e.g. several processes on localhost;
  * ``MAXRL_DISTRIBUTED=1``: plain ``jax.distributed.initialize()``, which auto-detects the
    cluster on Cloud TPU pod slices, SLURM and Open MPI.

  Otherwise (one process) it does nothing. On the CPU backend it selects the ``gloo``
  cross-process collectives, which must happen before the backend starts.

  Must be called before any other JAX call that touches devices.
  """
  global _initialized_here
  if _initialized_here or jax.distributed.is_initialized():
    return
  coordinator_address = coordinator_address or os.environ.get(_ENV_COORDINATOR)
  if num_processes is None and os.environ.get(_ENV_NUM_PROCESSES):
    num_processes = int(os.environ[_ENV_NUM_PROCESSES])
  if process_id is None and os.environ.get(_ENV_PROCESS_ID):
    process_id = int(os.environ[_ENV_PROCESS_ID])
  auto = os.environ.get(_ENV_AUTO, "0").lower() in ("1", "true", "yes")

  explicit = coordinator_address is not None and num_processes is not None and num_processes > 1
  if not explicit and not auto:
    return
  if explicit and process_id is None:
    raise ConfigError(_ENV_PROCESS_ID, "multi-process run without a process id")

  # Cross-process collectives for the CPU backend (tests, CPU clusters); harmless elsewhere.
  # Tolerate a JAX where the option has gone (gloo is the default there).
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, KeyError, ValueError) as e:
    logging.warning("could not select gloo CPU collectives: %s", e)
  if explicit:
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=initialization_timeout,
    )
  else:
    jax.distributed.initialize(initialization_timeout=initialization_timeout)
  _initialized_here = True
  logging.info(
      "jax.distributed initialised: process %d of %d, %d local / %d global devices",
      jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(devices: Sequence[jax.Device] | None = None,
              axis_type: AxisType = AxisType.Auto) -> Mesh:
  """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices of all processes).

  The axis is ``Auto`` by default: shardings given to ``jax.jit`` (and
  ``with_sharding_constraint``) are propagated through the program by the SPMD partitioner, as
  with classic GSPMD. ``jax.make_mesh``'s own default became ``Explicit`` ("sharding in types")
  in recent JAX, under which every op needs a sharding rule (batched ``searchsorted`` or a
  ``while_loop`` sampler have none); pass ``axis_type=AxisType.Explicit`` to opt in.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("make_mesh: empty device list")
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(axis_type,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device (``P()``): parameters, optimiser state."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Sharding that splits axis ``batch_axis`` over ``"data"`` (``P("data")`` for axis 0).

  ``batch_axis=1`` suits a chunk of batches stacked as ``[num_steps, batch, ...]``.
  """
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def num_processes_in(mesh: Mesh) -> int:
  """Number of distinct processes owning the devices of ``mesh``."""
  return len({d.process_index for d in mesh.devices.flat})


def check_global_batch(global_batch: int, mesh: Mesh, field: str) -> int:
  """Validates a global batch size for ``mesh`` and returns the per-process batch size.

  Raises:
    ConfigError: naming ``field`` unless ``global_batch >= 1`` and divisible by the number of
      devices in the mesh (hence also by the number of processes).
  """
  if isinstance(global_batch, bool) or not isinstance(global_batch, (int, np.integer)):
    raise ConfigError(field, f"must be an integer, got {global_batch!r}")
  if global_batch < 1:
    raise ConfigError(field, f"must be >= 1, got {global_batch}")
  num_devices = mesh.devices.size
  if global_batch % num_devices:
    raise ConfigError(
        field, f"global batch {global_batch} is not divisible by the {num_devices} devices of "
        f"the mesh; use a multiple of {num_devices}")
  procs = num_processes_in(mesh)
  if global_batch % procs:  # Implied by the above on uniform hosts; kept for odd meshes.
    raise ConfigError(field, f"global batch {global_batch} not divisible by {procs} processes")
  return int(global_batch) // procs


def process_batch_slice(mesh: Mesh, global_batch: int) -> slice:
  """The rows ``[start, stop)`` of a global batch that this process must load.

  Derived from the batch sharding itself (the devices of this process may sit anywhere in the
  mesh); raises ValueError if this process's rows are not contiguous.
  """
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  rows = sorted({(idx[0].start or 0, global_batch if idx[0].stop is None else idx[0].stop)
                 for idx in index_map.values()})
  for (_, stop), (start, _) in zip(rows[:-1], rows[1:]):
    if stop != start:
      raise ValueError(f"process {jax.process_index()} owns non-contiguous batch rows {rows}")
  return slice(rows[0][0], rows[-1][1])


def host_local_to_global(mesh: Mesh, local_tree: Any, batch_axis: int = 0) -> Any:
  """Assembles per-process batch slices into global arrays sharded on ``batch_axis``.

  Process ``p`` of ``P`` passes the rows ``[p * b, (p + 1) * b)`` of the global batch (``b`` =
  local batch); the result has global batch ``P * b`` on ``batch_axis``. With one process this is
  a plain sharded ``device_put``.
  """
  sharding = batch_sharding(mesh, batch_axis)

  def to_global(x):
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree.map(to_global, local_tree)


def put_global(x: Any, sharding: NamedSharding) -> jax.Array:
  """A global array with ``sharding`` from a host value that is THE SAME in every process
  (e.g. mazes generated from the step number). One process: a plain ``device_put``."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places every leaf of ``tree`` replicated over ``mesh``.

  Leaves must hold the same value in every process (e.g. parameters initialised from the same
  seed). Works for host values and for arrays already on devices, in one process or many.
  """
  sharding = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array):
      if x.sharding == sharding:
        return x
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # Typed keys: via key data.
        return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
      if not x.is_fully_addressable:  # Already global (multi-process): reshard on device.
        return jax.jit(lambda a: a, out_shardings=sharding)(x)
      if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def is_chief() -> bool:
  """True in the process that writes files (process 0)."""
  return jax.process_index() == 0
