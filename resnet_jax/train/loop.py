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
import optax
from flax import nnx

from resnet_jax.config import ConfigError, validate
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_params
from resnet_jax.train import metrics as metrics_lib
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer
from resnet_jax.train.optimizer import make_optimizer
from resnet_jax.train.inputs import InMemoryInputs, StreamedInputs, make_inputs
from resnet_jax.train.parallel import initialize_distributed, make_mesh, put_replicated
from resnet_jax.train.step import (DeviceData, StepConfig, TrainState, evaluate, make_eval_step,
                                   make_gradient_norm_step, make_train_step)


class TrainingDiverged(RuntimeError):
  """The loss or gradient norm became NaN or infinite."""


class TrainingStopped(RuntimeError):
  """SIGTERM arrived; a checkpoint was saved and the same command resumes."""


@dataclasses.dataclass
class Experiment:
  config: ml_collections.ConfigDict
  inputs: InMemoryInputs | StreamedInputs
  seeds: list[int]  # one model per seed; several train together, vmapped
  graphdef: nnx.GraphDef
  state: TrainState
  num_params: int
  train_step: Callable
  eval_step: Callable
  gradient_norm_step: Callable

  @property
  def data(self) -> DeviceData:
    """The in-memory dataset on the devices (in-memory datasets only)."""
    return self.inputs.data

  def evaluate(self, state: TrainState) -> list[dict[str, float]]:
    """Eval metrics of every model (seed) over the whole eval split."""
    results = _per_member(evaluate(self.eval_step, state, self.inputs.eval_batches()), len(self.seeds))
    return [dict(r, eval_count=int(r["eval_count"])) for r in results]


def member_seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.seed + k for k in range(config.train.num_seeds)]


def member_workdirs(workdir: str, seeds: list[int]) -> list[str]:
  """Where each model's metrics go: the workdir itself, or workdir/seed<s> for several seeds."""
  return [workdir] if len(seeds) == 1 else [os.path.join(workdir, f"seed{s}") for s in seeds]


def initial_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation, *, num_classes: int,
                  in_channels: int, seed: int) -> tuple[nnx.GraphDef, TrainState, int]:
  """A freshly initialised model of `config.model` as (graphdef, TrainState at step 0, parameter count)."""
  model = build_model(config.model, num_classes=num_classes, in_channels=in_channels, seed=seed)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  state = TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), jax.random.PRNGKey(seed))
  return graphdef, state, count_params(model)


def setup(config: ml_collections.ConfigDict) -> Experiment:
  """Validate, load data onto the devices, build models, optimiser and compiled steps."""
  initialize_distributed(config.distributed)
  validate(config, jax.device_count())
  mesh = make_mesh()
  inputs = make_inputs(config, mesh)
  if config.data.batch_size > inputs.num_train:
    raise ConfigError(f"data.batch_size={config.data.batch_size} exceeds the {inputs.num_train} "
                      f"training examples of {config.data.name}")
  tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
  seeds = member_seeds(config)
  members = [initial_state(config, tx, num_classes=inputs.num_classes, in_channels=inputs.image_shape[-1], seed=seed)
             for seed in seeds]
  graphdef, state, num_params = members[0]
  if len(seeds) > 1:
    state = jax.tree.map(lambda *leaves: np.stack(leaves), *[m[1] for m in members])
  step_config = StepConfig.from_config(config, inputs.num_train)
  return Experiment(
      config, inputs, seeds, graphdef, put_replicated(state, mesh), num_params,
      make_train_step(graphdef, tx, schedule, step_config, mesh),
      make_eval_step(graphdef, step_config, mesh),
      make_gradient_norm_step(graphdef, step_config, mesh))


class _StopRequest:
  """Turns SIGTERM into a request to checkpoint and exit at the next logging step.

  Stopping on a logging step keeps metrics.jsonl of a stopped-and-resumed run identical to an
  uninterrupted one; it costs at most train.log_every_steps more steps before exit.
  """

  def __init__(self):
    self.requested = False
    self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self.previous)


def _per_member(tree: dict, num_members: int) -> list[dict[str, float]]:
  """Split fetched metrics (scalars, or [K] arrays with K seeds) into one dict of floats per model."""
  flat = {k: np.reshape(np.asarray(v, np.float64), (num_members,)) for k, v in tree.items()}
  return [{k: float(v[i]) for k, v in flat.items()} for i in range(num_members)]


def _train_metrics(pending: list[dict], num_members: int) -> list[dict[str, float]]:
  """Mean train loss, error and gradient norm over the logging interval; the latest learning rate."""
  fetched = jax.device_get(pending)
  means = {k: np.mean([m[k] for m in fetched], axis=0) for k in ("loss", "error", "grad_norm")}
  return _per_member(dict(train_loss=means["loss"], train_error=means["error"], grad_norm=means["grad_norm"],
                          learning_rate=fetched[-1]["learning_rate"]), num_members)


def _check_finite(members: list[dict[str, float]], step: int, last_checkpoint: int | None) -> None:
  bad = sorted({k for scalars in members for k in ("train_loss", "grad_norm") if not math.isfinite(scalars[k])})
  if bad:
    kept = "no checkpoint was saved yet" if last_checkpoint is None else \
        f"the last good checkpoint (step {last_checkpoint}) is kept"
    raise TrainingDiverged(f"{' and '.join(bad)} became non-finite by step {step}; {kept}. "
                           "Lower optimizer.learning_rate or add optimizer.warmup_steps.")


def _prepare_workdirs(workdir: str, config, seeds: list[int], resume_step: int | None) -> list[str]:
  """Record config and environment per model; drop metrics a resumed run will write again."""
  dirs = member_workdirs(workdir, seeds)
  if len(seeds) > 1:  # the shared checkpoints' config, for `resnet-jax eval --workdir`
    workdir_lib.save_config(workdir, config)
  for directory, seed in zip(dirs, seeds):
    os.makedirs(directory, exist_ok=True)
    if resume_step is not None:
      metrics_lib.truncate_after(directory, resume_step)
    member_config = ml_collections.ConfigDict(config.to_dict())
    member_config.seed = seed
    workdir_lib.save_config(directory, member_config)
    workdir_lib.save_environment(directory)
  return dirs


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Train to config.train.num_steps, resuming from the latest checkpoint in `workdir`.

  Returns the last logged scalars of the first model.
  """
  exp = setup(config)
  cfg, num_members = config.train, len(exp.seeds)
  lead = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  state, start = exp.state, checkpointer.latest_step()
  if start is not None:
    state = checkpointer.restore(exp.state)
    if lead:
      print(f"resuming from step {start} in {workdir}", flush=True)
  dirs = _prepare_workdirs(workdir, config, exp.seeds, start) if lead else []
  writers = [metrics_lib.MetricsWriter(d) for d in dirs]
  progress = metrics_lib.Progress(cfg.num_steps, start or 0, enabled=lead)
  stop = _StopRequest()
  step, pending, last_saved = start or 0, [], start
  summaries = [{} for _ in exp.seeds]
  batches = exp.inputs.train_batches(step)
  try:
    while step < cfg.num_steps and not (stop.requested and step == last_saved):
      batch = next(batches)
      if cfg.analysis_every_steps and step % cfg.analysis_every_steps == 0:
        norms = _per_member(jax.device_get(exp.gradient_norm_step(state, batch)), num_members)
        for writer, member in zip(writers, norms):
          writer.write(step, {f"grad_norm/{k}": v for k, v in member.items()})
      state, step_metrics = exp.train_step(state, batch)
      pending.append(step_metrics)
      step += 1
      last = step == cfg.num_steps
      logging_step = step % cfg.log_every_steps == 0 or last
      if logging_step:
        members = _train_metrics(pending, num_members)
        _check_finite(members, step, last_saved)
        pending = []
        shared = dict(examples_per_second=progress.throughput(step, config.data.batch_size),
                      epoch=step * config.data.batch_size / exp.inputs.num_train)
        if step % cfg.eval_every_steps == 0 or last:
          eval_start = time.perf_counter()
          evals = exp.evaluate(state)
          progress.last_time += time.perf_counter() - eval_start  # keep eval out of throughput
          members = [dict(m, **e) for m, e in zip(members, evals)]
        for writer, summary, scalars in zip(writers, summaries, members):
          writer.write(step, dict(scalars, **shared))
          summary.update(scalars, **shared)
        progress.report(step, {k: float(np.mean([m[k] for m in members])) for k in _SHOWN if k in members[0]}
                        | {"examples_per_second": shared["examples_per_second"]})
      if step % cfg.checkpoint_every_steps == 0 or last or (stop.requested and logging_step):
        if pending:  # never save a state that has gone non-finite since the last log
          _check_finite(_train_metrics(pending, num_members), step, last_saved)
        checkpointer.save(step, state)
        last_saved = step
  finally:
    stop.restore()
    checkpointer.close()
    for writer in writers:
      writer.close()
  if step < cfg.num_steps:
    raise TrainingStopped(f"stopped by SIGTERM at step {step}; checkpoint saved in {workdir}; "
                          "run the same command to resume")
  if step > (start or 0):  # a re-run of a finished run trains nothing and keeps its record
    for directory, summary in zip(dirs, summaries):
      workdir_lib.mark_finished(directory, dict(step=step, num_params=exp.num_params, **summary))
  return summaries[0]


_SHOWN = ("train_loss", "train_error", "eval_error", "learning_rate")


def evaluate_checkpoint(workdir: str, step: int | None = None) -> list[dict[str, float]]:
  """Evaluate a work directory's latest (or given) checkpoint: one dict per model (seed)."""
  config = workdir_lib.recorded_config(workdir)
  exp = setup(config)
  checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f"--workdir {workdir!r} has no checkpoint yet")
  try:
    state = checkpointer.restore(exp.state, step)
  finally:
    checkpointer.close()
  restored_step = int(np.max(jax.device_get(state.step)))
  return [dict(seed=seed, step=restored_step, **r) for seed, r in zip(exp.seeds, exp.evaluate(state))]
