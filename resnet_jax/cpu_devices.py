"""Split the host CPU into several XLA devices before JAX's backend starts, so data parallelism uses every core.

XLA:CPU runs one program on one device with a thread pool that keeps about 1.2-1.5 of 2 cores busy
on this project's CIFAR steps; the same step data-parallel over one device per core keeps 1.8 busy
and runs 1.5x faster on ResNet-20, 3.0x on ResNet-56 (BENCHMARKS.md, "One XLA device per core").
`configure` sets `--xla_force_host_platform_device_count` in XLA_FLAGS, which XLA reads once, when
JAX first starts its backend: the command line calls it before any command starts it. It changes nothing on a GPU or TPU
(their devices are used; the CPU devices are not), nor where the user set the flag, nor once JAX's
backend is running. Results do not depend on the device count:
BatchNorm statistics are global (or in fixed groups of examples) and evaluation is padded and
masked, so the batch only has to divide over the devices.
"""

from __future__ import annotations

import os

from resnet_jax.errors import ConfigError

FLAG = "--xla_force_host_platform_device_count"
VARIABLE = "RESNET_JAX_CPU_DEVICES"  # auto (default) or a number; the --cpu-devices option sets it
CORES_VARIABLE = "RESNET_JAX_CPU_CORES"  # the cores to run on, e.g. "0,1" (a CPU sweep sets it per member)
USER_FLAGS_VARIABLE = "RESNET_JAX_USER_XLA_FLAGS"  # XLA_FLAGS as the user gave them, before `configure` added the split


def pinnable_cores() -> list[int] | None:
  """The cores this process may run on (its CPU affinity), or None where the OS cannot pin (not Linux)."""
  return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def available_cores() -> int:
  """How many cores this process may run on, at least 1."""
  cores = pinnable_cores()
  return max(1, len(cores)) if cores is not None else os.cpu_count() or 1


def pin_to_cores() -> None:
  """Run this process on the cores that RESNET_JAX_CPU_CORES lists, if it is set (before JAX starts
  its threads: they inherit the affinity, and available_cores then counts these)."""
  value = os.environ.get(CORES_VARIABLE)
  if not value:
    return
  try:
    os.sched_setaffinity(0, {int(core) for core in value.split(",")})
  except (ValueError, OSError):
    raise ConfigError(f"{CORES_VARIABLE}={value!r} is invalid: allowed values are comma-separated numbers of "
                      f"this machine's cores ({','.join(map(str, pinnable_cores()))})") from None


def choose(choice: str, cores: int, batch_sizes: tuple[int, ...] | None) -> int:
  """The CPU device count: N as given, or for 'auto' the most devices, at most one per core, over
  which every batch size divides (2 cores and batch 128: 2; 3 cores and batch 128: 2); 'auto' with
  batch_sizes None (a multi-process job) is 1."""
  if choice != "auto":
    if not choice.isdigit() or int(choice) < 1:
      raise ConfigError(f"{VARIABLE} / --cpu-devices={choice!r} is invalid: allowed values are auto or a whole "
                        "number >= 1")
    return int(choice)
  if batch_sizes is None:
    return 1
  return max(d for d in range(1, cores + 1) if all(size % d == 0 for size in batch_sizes))


def xla_flags(choice: str | None, batch_sizes: tuple[int, ...] | None, flags: str) -> str:
  """The user's XLA_FLAGS `flags` with the chosen device count added, unless they already set one."""
  choice = choice or os.environ.get(VARIABLE, "auto")
  count = choose(choice, available_cores(), batch_sizes)  # validates the choice even when XLA_FLAGS wins
  return flags if FLAG in flags else f"{flags} {FLAG}={count}".strip()


def configure(choice: str | None, batch_sizes: tuple[int, ...] | None = ()) -> None:
  """Put the chosen device count into XLA_FLAGS unless the user's XLA_FLAGS already sets one."""
  flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = xla_flags(choice, batch_sizes, flags)
  if FLAG not in flags:
    os.environ.setdefault(USER_FLAGS_VARIABLE, flags)


def child_environment(**extra: str) -> dict[str, str]:
  """This process's environment for a process that splits its own CPU (a sweep member): the user's own
  XLA_FLAGS, not the device count `configure` chose for this process's cores, plus `extra`."""
  env = dict(os.environ, **extra)
  if USER_FLAGS_VARIABLE in env:
    env["XLA_FLAGS"] = env.pop(USER_FLAGS_VARIABLE)
  return env
