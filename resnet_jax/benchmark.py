"""`resnet-jax benchmark`: compile time, train/eval throughput, input cost, memory and FLOPs of a config.

Everything is measured on the compiled steps that `train` runs (`loop.setup`), on the devices
present. Throughput is the median over timed windows of `steps` steps after warm-up, each
window ended by `jax.block_until_ready`; the per-window numbers are kept so noise is visible.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from typing import Any, Callable

import jax
import ml_collections
from flax import nnx

from resnet_jax.errors import ConfigError
from resnet_jax.models import build_model
from resnet_jax.platforms import local_platform
from resnet_jax.models.analysis import count_macs
from resnet_jax.train.loop import Experiment, setup
from resnet_jax.train.step import _over_seeds, train_batch

def time_windows(run: Callable[[int], Any], steps: int, windows: int) -> list[float]:
  """Seconds of each of `windows` calls of `run(steps)`, after one untimed warm-up call.

  `run` must return what it computed so the timer can block on it.
  """
  jax.block_until_ready(run(steps))
  seconds = []
  for _ in range(windows):
    start = time.perf_counter()
    jax.block_until_ready(run(steps))
    seconds.append(time.perf_counter() - start)
  return seconds


def _rates(name: str, seconds: list[float], steps: int, examples: int) -> dict[str, Any]:
  """Median examples/s over the windows, the matching time per step, and every window's rate."""
  rates = [steps * examples / s for s in seconds]
  median = statistics.median(rates)
  return {f"{name}_examples_per_s": median, f"{name}_step_ms": 1e3 * examples / median,
          f"{name}_window_examples_per_s": [round(r, 2) for r in rates]}


def _xla_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def _peak_memory_bytes(device: jax.Device) -> int | None:
  """The backend's peak bytes in use; None where it keeps no statistics (the CPU)."""
  stats = device.memory_stats()
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def _compiled_memory(compiled) -> dict[str, int] | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return dict(argument_bytes=analysis.argument_size_in_bytes, output_bytes=analysis.output_size_in_bytes,
              alias_bytes=analysis.alias_size_in_bytes, temp_bytes=analysis.temp_size_in_bytes)


def _data_step(exp: Experiment) -> Callable:
  """The train step's input side alone (on-device gather, augmentation, normalisation), jitted."""
  settings = exp.train_step.settings
  return jax.jit(_over_seeds(lambda state, data: train_batch(settings, data, state), settings.num_seeds,
                             exp.config.train.seeds_together))


def _model_train_flops(exp: Experiment) -> int:
  """6 x forward multiply-adds per example: 2 FLOPs per MAC, backward about twice the forward."""
  shape = exp.inputs.image_shape
  model = nnx.eval_shape(lambda: build_model(exp.config.model, num_classes=exp.inputs.num_classes,
                                             in_channels=shape[-1], seed=0, platform=local_platform()))
  return 6 * count_macs(model, shape)


def _measure_train(exp: Experiment, data, examples: int, steps: int, windows: int) -> tuple[dict[str, Any], Any, Any]:
  """Compile time, then timed windows of train steps on `data`; returns (timings, compiled step, live state)."""
  start = time.perf_counter()
  lowered = exp.train_step.lower(exp.state, data)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  compiled_at = time.perf_counter()
  state, _ = exp.train_step(exp.state, data)  # finds the executable just compiled in jit's cache
  jax.block_until_ready(state)
  timings = dict(train_lower_s=lowered_at - start, train_compile_s=compiled_at - lowered_at,
                 train_first_call_s=time.perf_counter() - compiled_at)
  holder = [state]

  def run(n: int):
    for _ in range(n):
      holder[0], _ = exp.train_step(holder[0], data)
    return holder[0]

  timings.update(_rates("train", time_windows(run, steps, windows), steps, examples))
  return timings, compiled, holder[0]


def _measure_eval(exp: Experiment, state, steps: int, windows: int) -> dict[str, Any]:
  batches = list(itertools.islice(exp.inputs.eval_batches(), steps))
  batches = list(itertools.islice(itertools.cycle(batches), steps))
  run = lambda n: [exp.eval_step(state, data, index) for data, index in batches[:n]]
  return _rates("eval", time_windows(run, steps, windows), steps, exp.config.data.eval_batch_size * len(exp.seeds))


def _measure_data(exp: Experiment, state, data, examples: int, steps: int, windows: int) -> dict[str, Any]:
  data_step = _data_step(exp)
  run = lambda n: [data_step(state, data) for _ in range(n)]
  rates = _rates("data", time_windows(run, steps, windows), steps, examples)
  del rates["data_window_examples_per_s"]
  return dict(rates, data_augment=exp.config.data.augment, data_normalize=exp.config.data.normalize)


def run_benchmark(config: ml_collections.ConfigDict, steps: int = 20, peak_tflops: float | None = None,
                  windows: int = 5) -> dict[str, Any]:
  """Measure a config's compiled steps; a JSON-ready dict with the units in the field names."""
  if steps < 1 or windows < 1:
    raise ConfigError(f"--steps and windows must be >= 1, got steps={steps}, windows={windows}")
  if peak_tflops is not None and peak_tflops <= 0:
    raise ConfigError(f"--peak-tflops must be > 0, got {peak_tflops}")
  load_before = os.getloadavg()[0]
  exp = setup(config)
  examples = config.data.batch_size * len(exp.seeds)  # per train step, all seeds together
  batch_data = next(exp.inputs.train_batches(0))
  train, compiled, state = _measure_train(exp, batch_data, examples, steps, windows)
  evaluation = _measure_eval(exp, state, steps, windows)
  data = _measure_data(exp, state, batch_data, examples, steps, windows)
  flops = _xla_flops(compiled)
  achieved = flops * train["train_examples_per_s"] / examples / 1e12 if flops else None
  device = jax.devices()[0]
  return dict(
      model=f"{config.model.variant}-{config.model.depth} ({config.model.family})",
      image_shape=list(exp.inputs.image_shape), batch_size=config.data.batch_size,
      eval_batch_size=config.data.eval_batch_size, num_seeds=len(exp.seeds), dtype=config.model.dtype,
      num_params=exp.num_params, platform=device.platform, device_kind=device.device_kind,
      device_count=jax.device_count(), jax_version=jax.__version__, steps_per_window=steps, windows=windows,
      **train, **evaluation, **data,
      data_fraction_of_train_step=data["data_step_ms"] / train["train_step_ms"],
      peak_memory_bytes=_peak_memory_bytes(device), train_compiled_memory_bytes=_compiled_memory(compiled),
      train_flops_per_step_xla=flops, train_flops_per_example_xla=flops / examples if flops else None,
      model_train_flops_per_example=_model_train_flops(exp),
      achieved_tflops=achieved, peak_tflops=peak_tflops,
      mfu=achieved / peak_tflops if achieved and peak_tflops else None,
      load_average_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)],
  )


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
  return "n/a" if value is None else f"{value / scale:,.{digits}f}"


def format_benchmark(result: dict[str, Any]) -> str:
  """A short human-readable table of `run_benchmark`'s result."""
  memory = result["train_compiled_memory_bytes"] or {}
  mfu = "n/a (no --peak-tflops)" if result["mfu"] is None else f"{100 * result['mfu']:.2f}%"
  rows = [
      ("model", f"{result['model']}, {tuple(result['image_shape'])}, batch {result['batch_size']} x "
                f"{result['num_seeds']} seed(s), "
                f"{result['dtype']}, {result['num_params']:,} params"),
      ("devices", f"{result['device_count']} x {result['device_kind']} ({result['platform']}), "
                  f"jax {result['jax_version']}"),
      ("train compile", f"{_fmt(result['train_lower_s'], digits=2)} s lower + "
                        f"{_fmt(result['train_compile_s'], digits=2)} s compile"),
      ("train", f"{_fmt(result['train_examples_per_s'])} examples/s ({_fmt(result['train_step_ms'], digits=2)} "
                f"ms/step; windows {result['train_window_examples_per_s']})"),
      ("eval", f"{_fmt(result['eval_examples_per_s'])} examples/s ({_fmt(result['eval_step_ms'], digits=2)} ms/batch "
               f"of {result['eval_batch_size']})"),
      ("input alone", f"{_fmt(result['data_step_ms'], digits=3)} ms/batch = "
                      f"{100 * result['data_fraction_of_train_step']:.1f}% of a train step "
                      f"(augment {result['data_augment']}, normalize {result['data_normalize']})"),
      ("peak memory", f"{_fmt(result['peak_memory_bytes'], 2**20)} MiB (device); compiled train step temp "
                      f"{_fmt(memory.get('temp_bytes'), 2**20)} MiB, "
                      f"arguments {_fmt(memory.get('argument_bytes'), 2**20)} MiB"),
      ("train FLOPs", f"{_fmt(result['train_flops_per_example_xla'], 1e9, 3)} GFLOP/example (XLA), "
                      f"{_fmt(result['model_train_flops_per_example'], 1e9, 3)} (6 x MACs)"),
      ("achieved", f"{_fmt(result['achieved_tflops'], digits=3)} TFLOP/s; MFU {mfu}"),
      ("load average", f"{result['load_average_1m'][0]} before, {result['load_average_1m'][1]} after (1 min)"),
  ]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
