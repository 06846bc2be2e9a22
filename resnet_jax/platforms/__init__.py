"""Platform layers: how each compiler is given the network so that it runs it fast.

The network is resnet_jax/models; a platform layer changes how its layers compute, never what they
compute. `LAYERS` is what every program the project builds uses: XLA:CPU's rewrites (xla_cpu.py) in
a program lowered for a CPU, JAX's own operations in one lowered for a GPU or TPU, whatever host
traces it. The choice follows the platform the program is lowered for, never the host's backend.
"""

from __future__ import annotations

import jax

from resnet_jax.platforms.xla_cpu import LAYERS


def mesh_platform(mesh: jax.sharding.Mesh) -> str:
  """The platform of a mesh's devices ('cpu', 'gpu', 'tpu'): where its programs run."""
  return mesh.devices.flat[0].platform


def local_platform() -> str:
  """The platform of this process's devices, for what runs outside a mesh (a model summary, a weight file)."""
  return jax.local_devices()[0].platform


__all__ = ["LAYERS", "local_platform", "mesh_platform"]
