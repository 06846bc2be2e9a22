"""Accelerators a program can be compiled for without one at hand: their devices as XLA's compilers see them.

A GPU target is described to XLA's CUDA compiler by a GpuTargetConfigProto (the device's published
properties, as CUDA's deviceQuery reports them); a TPU target by its topology name, for libtpu's compiler.
Compiling needs the compiler: CUDA's from `pip install 'resnet-jax[plan]'` (jax[cuda13]: jax's CUDA plugin
with ptxas and libdevice), a TPU's from `pip install 'resnet-jax[plan-tpu]'` (jax[tpu]: libtpu).
"""

from __future__ import annotations

import dataclasses
import os

import jax
from jax.experimental import topologies

from resnet_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Target:
  """An accelerator: its name, XLA platform, memory per device and the share of it JAX allocates."""
  name: str
  platform: str  # 'cuda' or 'tpu'
  device_kind: str
  memory_bytes: int
  usable_fraction: float  # GPU: JAX preallocates 75 % of the memory (XLA_PYTHON_CLIENT_MEM_FRACTION); TPU: all
  extra: str  # the resnet-jax extra that brings its compiler
  describe: dict = dataclasses.field(default_factory=dict)  # GPU: the GpuTargetConfigProto's gpu_device_info

  @property
  def usable_bytes(self) -> int:
    return int(self.memory_bytes * self.usable_fraction)

  def mesh(self, devices: int, axis: str) -> jax.sharding.Mesh:
    """A 1-D mesh of `devices` of this target over `axis`, for compiling (nothing runs on it)."""
    try:
      topology = self._gpu_topology(devices) if self.platform == "cuda" else self._tpu_topology(devices)
    except (RuntimeError, ValueError, jax.errors.JaxRuntimeError) as error:
      first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      raise ConfigError(f"--target {self.name}: cannot compile for {self.device_kind} here ({first}); its compiler "
                        f"comes with pip install 'resnet-jax[{self.extra}]'") from None
    return topologies.make_mesh(topology, (devices,), (axis,))

  def _gpu_topology(self, devices: int):
    info = "\n".join(f"  {key}: {value}" for key, value in self.describe.items())
    config = (f"gpu_device_info {{\n{info}\n}}\nplatform_name: \"CUDA\"\n"
              f"dnn_version_info {{ major: 9 minor: 10 patch: 0 }}\ndevice_description_str: \"{self.device_kind}\"\n")
    return topologies.get_topology_desc(platform="cuda", topology=f"1x1x{devices}", target_config=config)

  def _tpu_topology(self, devices: int):
    shapes = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
    if devices not in shapes:
      raise ConfigError(f"--devices {devices} is invalid for {self.name}: allowed values are "
                        f"{', '.join(map(str, shapes))} (a slice's chips)")
    # Off a TPU VM, libtpu would ask the cloud's metadata server what machine this is: tell it the slice; and
    # compiling needs no TPU of its own, so other processes' libtpu (a second plan) may run beside it.
    for variable, value in (("TPU_SKIP_MDS_QUERY", "1"), ("TPU_ACCELERATOR_TYPE", f"v5litepod-{devices}"),
                            ("TPU_WORKER_HOSTNAMES", "localhost"), ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
      os.environ.setdefault(variable, value)
    bounds = dict(chips_per_host_bounds=(1, 1, 1)) if devices == 1 else {}  # one chip, one host
    return topologies.get_topology_desc(topology_name=f"{self.name}:{shapes[devices]}", platform="tpu", **bounds)


_GIB = 1 << 30

TARGETS = {target.name: target for target in (
    # NVIDIA H100 SXM5 80 GB: 132 SMs of compute capability 9.0 at 1.98 GHz, 228 KiB shared memory per SM
    # (227 KiB to one block), 64 Ki registers per SM, 50 MiB L2, 3.35 TB/s HBM3; nvidia-smi's 81,559 MiB.
    Target("h100", "cuda", "NVIDIA H100 80GB HBM3", 81_559 << 20, 0.75, "plan", dict(
        threads_per_block_limit=1024, threads_per_warp=32, shared_memory_per_block=48 << 10,
        shared_memory_per_core=228 << 10, threads_per_core_limit=2048, core_count=132, fpus_per_core=128,
        block_dim_limit_x=2**31 - 1, block_dim_limit_y=65535, block_dim_limit_z=65535,
        memory_bandwidth=3_352_320_000_000, l2_cache_size=50 << 20, clock_rate_ghz=1.98,
        device_memory_size=81_559 << 20, shared_memory_per_block_optin=227 << 10,
        cuda_compute_capability="{ major: 9 minor: 0 }", registers_per_core_limit=65536,
        registers_per_block_limit=65536)),
    # Google Cloud TPU v5e (v5 lite): 16 GiB of HBM per chip; slices of 1 to 256 chips.
    Target("v5e", "tpu", "TPU v5 lite", 16 * _GIB, 1.0, "plan-tpu"),
)}


def target(name: str) -> Target:
  if name not in TARGETS:
    raise ConfigError(f"--target {name!r} is invalid: allowed values are {', '.join(TARGETS)}")
  return TARGETS[name]
