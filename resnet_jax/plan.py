"""`resnet-jax plan`: the memory a config's training needs on accelerators that are not at hand.

  resnet-jax plan --config configs/imagenet.py:depth=50 --target h100 --devices 8

Compiles the trainer's own train and eval steps (train/step.py) for `--devices` devices of the target, from
the shapes of the state and the data alone (nothing is initialised or loaded; built-in data sets need no
files), and reads from XLA what each device holds while a step runs: arguments (the state, and the data
set or the batch), outputs, temporaries. It says whether the larger step fits the memory JAX allocates on
the device, and finds the largest per-device training batch that does: memory grows linearly with the
batch, so two compiles predict it and a third checks the prediction.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from resnet_jax.config import resolve, validate
from resnet_jax.data.order import steps_per_epoch
from resnet_jax.describe import DataLayout, data_layout
from resnet_jax.errors import ConfigError
from resnet_jax.models import compute_dtype
from resnet_jax.platforms import mesh_platform
from resnet_jax.platforms.targets import Target, target
from resnet_jax.train.loop import abstract_state
from resnet_jax.train.optimizer import make_optimizer
from resnet_jax.train.parallel import DATA_AXIS, batch_sharded, replicated
from resnet_jax.train.step import DeviceData, StepSettings, StreamedBatch, eval_step, train_step

_GIB = float(1 << 30)


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """What XLA says one compiled step holds per device, in bytes, and what its program contains."""
  arguments: int
  outputs: int
  aliased: int  # outputs written into donated arguments (the train step's state)
  temporaries: int
  compile_seconds: float
  conditionals: int
  collectives: int  # all-reduces, all-gathers, reduce-scatters, all-to-alls, collective permutes

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries

  @classmethod
  def of(cls, lowered, start: float) -> "StepMemory":
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
    stats, text = compiled.memory_analysis(), compiled.as_text()
    count = lambda ops: len(re.findall(rf"\s(?:{ops})(?:-start)?\(", text))  # an op's name, then its operands
    return cls(stats.argument_size_in_bytes, stats.output_size_in_bytes, stats.alias_size_in_bytes,
               stats.temp_size_in_bytes, round(seconds, 2), count("conditional"),
               count("all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute"))


def _abstract_data(config: ml_collections.ConfigDict, layout: DataLayout, mesh: jax.sharding.Mesh):
  """The train step's data and the eval step's (data, batch index) as shapes: the whole set replicated on
  every device (in memory), or one global batch sharded over 'data' (streamed)."""
  spread, each = batch_sharded(mesh), replicated(mesh)
  shape = lambda dims, dtype, sharding=each: jax.ShapeDtypeStruct(dims, dtype, sharding=sharding)
  image, data = layout.image_shape, config.data
  stats = image if data.normalize == "pixel_mean" and not layout.streamed else (1, 1, image[-1])
  mean = std = shape(stats, jnp.float32)
  if layout.streamed:
    def batch(size, crops=()):
      return StreamedBatch(shape((size, *crops, *image), jnp.uint8, spread), shape((size,), jnp.int32, spread),
                           shape((size,), jnp.float32, spread), mean, std)
    crops = (10,) if data.eval_crops == "ten" else ()
    return batch(data.batch_size), (batch(data.eval_batch_size, crops), shape((), jnp.int32))
  padded = layout.num_eval + -layout.num_eval % data.eval_batch_size
  in_memory = DeviceData(shape((layout.num_train, *image), jnp.uint8), shape((layout.num_train,), jnp.int32),
                         shape((padded, *image), jnp.uint8), shape((padded,), jnp.int32),
                         shape((padded,), jnp.float32), mean, std)
  return in_memory, (in_memory, shape((), jnp.int32))


def _compile(config: ml_collections.ConfigDict, layout: DataLayout, mesh: jax.sharding.Mesh,
             steps: tuple[str, ...] = ("train", "eval")) -> dict[str, StepMemory]:
  """Compile the trainer's steps of `config` for `mesh`; their memory per device."""
  validate(config, mesh.size)
  config = resolve(config, steps_per_epoch(layout.num_train, config.data.batch_size))
  tx, _ = make_optimizer(config)
  graphdef, state = abstract_state(config, tx, num_classes=layout.num_classes, in_channels=layout.image_shape[-1],
                                   mesh=mesh)
  settings = StepSettings.of(config, layout.num_train, mesh, graphdef)
  train_data, eval_args = _abstract_data(config, layout, mesh)
  memory = {}
  if "train" in steps:
    start = time.perf_counter()
    memory["train"] = StepMemory.of(train_step.trace(state, train_data, settings=settings).lower(), start)
  if "eval" in steps:
    start = time.perf_counter()
    memory["eval"] = StepMemory.of(eval_step.trace(state, *eval_args, settings=settings).lower(), start)
  return memory


def _with_batch(config: ml_collections.ConfigDict, global_batch: int) -> ml_collections.ConfigDict:
  changed = ml_collections.ConfigDict(config.to_dict())
  changed.data.batch_size = global_batch
  return changed


def largest_batch(peak_of: Callable[[int], int], per_device: int, first_peak: int, limit: int, unit: int = 1,
                  cap: int | None = None, compiles: int = 6) -> dict[str, Any]:
  """The largest per-device batch (a multiple of `unit`, at most `cap`) whose peak memory `peak_of(batch)` is
  within `limit`, aiming within 5 % of it: secant steps (memory is nearly linear in the batch) from the
  config's batch and twice it, halving the interval between the largest batch that fits and the smallest
  that does not where a step would leave it; at most `compiles` evaluations of `peak_of` in all."""
  points = {per_device: first_peak, 2 * per_device: peak_of(2 * per_device)}
  while len(points) < compiles:
    fits = [b for b, m in points.items() if m <= limit]
    over = [b for b, m in points.items() if m > limit]
    low, high = max(fits, default=0), min(over, default=None)
    if (high is not None and high - low <= unit) or (cap and low == cap) or \
        (fits and points[low] >= 0.95 * limit and high is not None):
      break
    (b1, m1), (b2, m2) = sorted(points.items(), key=lambda point: abs(point[1] - limit))[:2]
    batch = int(b1 + (limit - m1) * (b2 - b1) / (m2 - m1)) // unit * unit if m2 != m1 else -1
    if not low < batch < (high or math.inf):
      if high is None:
        break
      batch = (low + high) // 2 // unit * unit
    batch = max(unit, min(batch, cap) if cap else batch)
    if batch in points:
      break
    points[batch] = peak_of(batch)
    if limit * 0.95 <= points[batch] <= limit:
      break
  fitting = [(b, m) for b, m in points.items() if m <= limit]
  best = max(fitting) if fitting else (None, None)
  return dict(per_device=best[0], peak_bytes=best[1], compiled={b: m for b, m in points.items()},
              capped_by_data=best[0] is not None and best[0] == cap)


def _search(config, layout: DataLayout, mesh, machine: Target, first: StepMemory) -> dict[str, Any]:
  """`largest_batch` of the train step on `mesh`, each evaluation a compile."""
  devices, per_device = mesh.size, config.data.batch_size // mesh.size
  group = config.model.bn_group_size or 1
  # Per-device batches of whole BN groups (a group that straddles devices makes XLA gather it: memory
  # grows with the global batch), unless the config's own groups span devices.
  unit = group if per_device % group == 0 else group // math.gcd(group, devices)
  cap = layout.num_train // devices // unit * unit if not layout.streamed else None
  peak_of = lambda batch: _compile(_with_batch(config, batch * devices), layout, mesh, ("train",))["train"].peak
  found = largest_batch(peak_of, per_device, first.peak, machine.usable_bytes, unit, cap)
  return dict(found, global_batch=found["per_device"] and found["per_device"] * devices)


def plan(config: ml_collections.ConfigDict, target_name: str, devices: int, search: bool = True) -> dict[str, Any]:
  """Per-device memory of the config's train and eval steps on `devices` of the target, whether they fit,
  and (with `search`) the largest per-device training batch that fits."""
  if devices < 1:
    raise ConfigError(f"--devices {devices} is invalid: allowed values are whole numbers >= 1")
  machine = target(target_name)
  layout = data_layout(config.data)
  mesh = machine.mesh(devices, DATA_AXIS)
  memory = _compile(config, layout, mesh)
  peak = max(m.peak for m in memory.values())
  result = dict(
      target=machine.name, device_kind=machine.device_kind, devices=devices, dataset=config.data.name,
      streamed=layout.streamed, model=f"{config.model.variant}-{config.model.depth}", family=config.model.family,
      dtype=jnp.dtype(compute_dtype(config.model.dtype, mesh_platform(mesh))).name,
      batch_size=config.data.batch_size, per_device_batch=config.data.batch_size // devices,
      steps={name: dict(dataclasses.asdict(m), peak=m.peak) for name, m in memory.items()},
      peak_bytes=peak, device_memory_bytes=machine.memory_bytes, usable_bytes=machine.usable_bytes,
      usable_fraction=machine.usable_fraction, fits=peak <= machine.usable_bytes)
  if search:
    result["largest_batch"] = _search(config, layout, mesh, machine, memory["train"])
  return result


def _size(num_bytes: int) -> str:
  return f"{num_bytes / _GIB:,.2f} GiB" if num_bytes >= _GIB else f"{num_bytes / (1 << 20):,.1f} MiB"


def format_plan(result: dict[str, Any]) -> str:
  gib = _size
  steps = result["steps"]
  lines = [f"{result['model']} ({result['family']}, dtype {result['dtype']}) on {result['dataset']}"
           f"{' (streamed)' if result['streamed'] else ' (held in device memory)'}: {result['devices']} x "
           f"{result['device_kind']}, global batch {result['batch_size']} ({result['per_device_batch']} per device)",
           f"{'per device':<22}" + "".join(f"{name + ' step':>16}" for name in steps)]
  for field, label in (("arguments", "arguments"), ("outputs", "outputs"), ("aliased", "  donated, reused"),
                       ("temporaries", "temporaries"), ("peak", "peak")):
    lines.append(f"{label:<22}" + "".join(f"{gib(m[field]):>16}" for m in steps.values()))
  lines.append(f"{'compile':<22}" + "".join(f"{m['compile_seconds']:>14.1f} s" for m in steps.values()))
  lines.append(f"device memory {gib(result['device_memory_bytes'])}, of which JAX allocates "
               f"{100 * result['usable_fraction']:.0f} %: {gib(result['usable_bytes'])}: "
               f"{'fits' if result['fits'] else 'DOES NOT FIT'} "
               f"({100 * result['peak_bytes'] / result['usable_bytes']:.1f} %"
               " used at the peak)")
  largest = result.get("largest_batch")
  if largest and largest["per_device"]:
    lines.append(f"largest per-device training batch that fits: {largest['per_device']:,} (global "
                 f"{largest['global_batch']:,}; peak {gib(largest['peak_bytes'])}"
                 f"{'; all the training data' if largest['capped_by_data'] else ''})")
  if largest:
    tried = ", ".join(f"{b} ({gib(m)})" for b, m in largest["compiled"].items())
    lines.append(f"{'' if largest['per_device'] else 'no per-device batch fits; '}train step peaks compiled, per "
                 f"device: {tried}")
  train = steps.get("train", {})
  lines.append(f"train step: {train.get('conditionals', 0)} conditionals, {train.get('collectives', 0)} collectives "
               "(all-reduce and kin)")
  return "\n".join(lines)
