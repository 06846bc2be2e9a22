"""Device mesh and shardings: the batch is split over a 'data' axis, the state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(distributed) -> None:
  """Join a multi-process job (config.distributed); a no-op for single-process runs."""
  if not distributed.enabled or jax.distributed.is_initialized():
    return
  jax.config.update("jax_cpu_collectives_implementation", distributed.cpu_collectives)
  jax.distributed.initialize(
      coordinator_address=distributed.coordinator_address,
      num_processes=distributed.num_processes,
      process_id=distributed.process_id,
      initialization_timeout=distributed.initialization_timeout_s,
      heartbeat_timeout_seconds=distributed.heartbeat_timeout_s,
  )


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process (Auto axes: XLA propagates shardings)."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def put_replicated(tree, mesh: Mesh):
  """Host arrays (the same on every process) as global arrays replicated on all devices."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)
