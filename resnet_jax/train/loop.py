"""The trainer: from a validated config to a trained, checkpointed, evaluated model.

Read top to bottom: `setup` builds data, model, optimiser and compiled steps; `train`
restores the latest checkpoint if there is one and runs the loop; `evaluate_checkpoint`
re-evaluates a finished or running work directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from resnet_jax.config import ConfigError, validate
from resnet_jax.data.augment import normalization_stats
from resnet_jax.data.sources import Dataset, load_dataset
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_params
from resnet_jax.train import metrics as metrics_lib
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer
from resnet_jax.train.optimizer import make_optimizer
from resnet_jax.train.parallel import initialize_distributed, make_mesh, put_replicated
from resnet_jax.train.step import (DeviceData, StepConfig, TrainState, evaluate, make_eval_step,
                                   make_gradient_norm_step, make_train_step, pad_eval_split)


class TrainingDiverged(RuntimeError):
  """The loss or gradient norm became NaN or infinite."""


@dataclasses.dataclass
class Experiment:
  config: ml_collections.ConfigDict
  dataset: Dataset
  graphdef: nnx.GraphDef
  state: TrainState
  data: DeviceData
  num_params: int
  train_step: Callable
  eval_step: Callable
  gradient_norm_step: Callable


def setup(config: ml_collections.ConfigDict) -> Experiment:
  """Validate, load data onto the devices, build model, optimiser and compiled steps."""
  initialize_distributed(config.distributed)
  validate(config, jax.device_count())
  dataset = load_dataset(config.data)
  if config.data.batch_size > len(dataset.train):
    raise ConfigError(f"data.batch_size={config.data.batch_size} exceeds the {len(dataset.train)} "
                      f"training examples of {config.data.name}")
  mesh = make_mesh()
  model = build_model(config.model, num_classes=dataset.num_classes, in_channels=dataset.image_shape[-1],
                      seed=config.seed)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
  state = put_replicated(TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params)), mesh)
  mean, std = normalization_stats(dataset.train.images, config.data.normalize)
  eval_images, eval_labels, eval_mask = pad_eval_split(
      dataset.eval.images, dataset.eval.labels, config.data.eval_batch_size)
  data = put_replicated(DeviceData(dataset.train.images, dataset.train.labels, eval_images, eval_labels,
                                   eval_mask, mean, std), mesh)
  step_config = StepConfig.from_config(config, len(dataset.train))
  return Experiment(
      config, dataset, graphdef, state, data, count_params(model),
      make_train_step(graphdef, tx, schedule, step_config, mesh),
      make_eval_step(graphdef, step_config, mesh),
      make_gradient_norm_step(graphdef, step_config, mesh))


class _StopRequest:
  """Turns SIGTERM into a request to checkpoint and exit at the next step boundary."""

  def __init__(self):
    self.requested = False
    self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self.previous)


def _mean_train_metrics(pending: list[dict]) -> dict[str, float]:
  fetched = jax.device_get(pending)
  means = {k: float(np.mean([m[k] for m in fetched])) for k in ("loss", "error", "grad_norm")}
  return dict(train_loss=means["loss"], train_error=means["error"], grad_norm=means["grad_norm"],
              learning_rate=float(fetched[-1]["learning_rate"]))


def _check_finite(scalars: dict[str, float], step: int, last_checkpoint: int | None) -> None:
  bad = [k for k in ("train_loss", "grad_norm") if not math.isfinite(scalars[k])]
  if bad:
    raise TrainingDiverged(
        f"{' and '.join(bad)} became non-finite by step {step}; the last good checkpoint "
        f"(step {last_checkpoint}) is kept. Lower optimizer.learning_rate or add optimizer.warmup_steps.")


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Train to config.train.num_steps, resuming from the latest checkpoint in `workdir`."""
  exp = setup(config)
  cfg = config.train
  lead = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  state, start = exp.state, checkpointer.latest_step()
  if start is not None:
    state = checkpointer.restore(exp.state)
    if lead:
      metrics_lib.truncate_after(workdir, start)
      print(f"resuming from step {start} in {workdir}", flush=True)
  start = start or 0
  if lead:
    workdir_lib.save_config(workdir, config)
    workdir_lib.save_environment(workdir)
  writer = metrics_lib.MetricsWriter(workdir, enabled=lead)
  progress = metrics_lib.Progress(cfg.num_steps, start, enabled=lead)
  stop = _StopRequest()
  pending, step, last_saved, summary = [], start, start or None, {}
  try:
    while step < cfg.num_steps and not stop.requested:
      if cfg.analysis_every_steps and step % cfg.analysis_every_steps == 0:
        norms = jax.device_get(exp.gradient_norm_step(state, exp.data))
        writer.write(step, {f"grad_norm/{k}": float(v) for k, v in norms.items()})
      state, step_metrics = exp.train_step(state, exp.data)
      pending.append(step_metrics)
      step += 1
      last = step == cfg.num_steps
      if step % cfg.log_every_steps == 0 or last or stop.requested:
        scalars = _mean_train_metrics(pending)
        _check_finite(scalars, step, last_saved)
        scalars["examples_per_second"] = progress.throughput(step, config.data.batch_size)
        scalars["epoch"] = step * config.data.batch_size / len(exp.dataset.train)
        pending = []
        if step % cfg.eval_every_steps == 0 or last:
          eval_start = time.perf_counter()
          scalars.update(evaluate(exp.eval_step, state, exp.data, config.data.eval_batch_size))
          progress.last_time += time.perf_counter() - eval_start  # keep eval out of throughput
        writer.write(step, scalars)
        progress.report(step, {k: v for k, v in scalars.items() if k in _SHOWN})
        summary.update(scalars)
      if step % cfg.checkpoint_every_steps == 0 or last or stop.requested:
        if pending:  # never save a state that has gone non-finite since the last log
          _check_finite(_mean_train_metrics(pending), step, last_saved)
        checkpointer.save(step, state)
        last_saved = step
  finally:
    stop.restore()
    checkpointer.close()
    writer.close()
  if step == cfg.num_steps and lead:
    workdir_lib.mark_finished(workdir, dict(step=step, num_params=exp.num_params, **summary))
  return summary


_SHOWN = ("train_loss", "train_error", "eval_error", "learning_rate", "examples_per_second")


def evaluate_checkpoint(workdir: str, step: int | None = None) -> dict[str, float]:
  """Evaluate a work directory's latest (or given) checkpoint on its configured eval split."""
  config = workdir_lib.load_config(workdir)
  exp = setup(config)
  checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f"--workdir {workdir!r} has no checkpoint yet")
  try:
    state = checkpointer.restore(exp.state, step)
  finally:
    checkpointer.close()
  return dict(step=int(state.step), **evaluate(exp.eval_step, state, exp.data, config.data.eval_batch_size))
