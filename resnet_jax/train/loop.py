"""The trainer: from a validated config to a trained, checkpointed, evaluated model.

Read top to bottom: `setup` builds data, model, optimiser and compiled steps; `train`
restores the latest checkpoint if there is one and runs the loop; `evaluate_checkpoint`
re-evaluates a finished or running work directory.
"""

from __future__ import annotations

import collections
import dataclasses
import json
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

from resnet_jax.config import resolve, validate
from resnet_jax.errors import ConfigError
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_params
from resnet_jax.train import metrics as metrics_lib
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer, latest_step
from resnet_jax.train.optimizer import describe_learning_rate, make_optimizer
from resnet_jax.train.writer_lock import WriterLock
from resnet_jax.train.inputs import InMemoryInputs, StreamedInputs, make_inputs
from resnet_jax.train.parallel import initialize_distributed, make_mesh, put_replicated
from resnet_jax.train.step import (LAYER_GRAD_NORMS, DeviceData, StepConfig, TrainState, evaluate, layer_names,
                                   make_eval_step, make_train_step)


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


def prepare(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, InMemoryInputs | StreamedInputs,
                                                     jax.sharding.Mesh]:
  """Validate, load the data and resolve the config (`derived`: durations and schedule in steps)."""
  initialize_distributed(config.distributed)
  validate(config, jax.device_count())
  mesh = make_mesh()
  inputs = make_inputs(config, mesh)
  if config.data.batch_size > inputs.num_train:
    raise ConfigError(f"data.batch_size={config.data.batch_size} exceeds the {inputs.num_train} "
                      f"training examples of {config.data.name}")
  return resolve(config, inputs.steps_per_epoch), inputs, mesh


def build(config: ml_collections.ConfigDict, inputs: InMemoryInputs | StreamedInputs,
          mesh: jax.sharding.Mesh) -> Experiment:
  """Models (one per seed), optimiser and compiled steps for a resolved config."""
  tx, schedule = make_optimizer(config)
  seeds = member_seeds(config)
  members = [initial_state(config, tx, num_classes=inputs.num_classes, in_channels=inputs.image_shape[-1], seed=seed)
             for seed in seeds]
  graphdef, state, num_params = members[0]
  if len(seeds) > 1:
    state = jax.tree.map(lambda *leaves: np.stack(leaves), *[m[1] for m in members])
  step_config = StepConfig.from_config(config, inputs.num_train)
  return Experiment(config, inputs, seeds, graphdef, put_replicated(state, mesh), num_params,
                    *_compiled_steps(config, graphdef, tx, schedule, step_config, mesh))


# This process's compiled steps by what they compute: the model's graph, the steps' settings, the devices
# and every config field but the seed (which only draws the initial state). A sweep worker's later seeds
# of a member reuse its steps, with their traced and compiled programs; the oldest go beyond a few.
_STEPS: collections.OrderedDict = collections.OrderedDict()
_STEPS_KEPT = 8


def programs_key(config: ml_collections.ConfigDict) -> str:
  """Every field of `config` but the seed: runs whose keys are equal compile the same steps."""
  return json.dumps({k: v for k, v in config.to_dict().items() if k != "seed"}, sort_keys=True, default=str)


def _compiled_steps(config, graphdef, tx, schedule, step_config, mesh) -> tuple[Callable, Callable]:
  """(train, eval) steps, made once per key of _STEPS."""
  key = (graphdef, step_config, mesh, programs_key(config))
  if key not in _STEPS:
    _STEPS[key] = (make_train_step(graphdef, tx, schedule, step_config, mesh),
                   make_eval_step(graphdef, step_config, mesh))
    while len(_STEPS) > _STEPS_KEPT:
      _STEPS.popitem(last=False)
  _STEPS.move_to_end(key)
  return _STEPS[key]


def setup(config: ml_collections.ConfigDict) -> Experiment:
  """Validate, load data onto the devices, resolve the config, build models, optimiser and compiled steps."""
  return build(*prepare(config))


class _StopRequest:
  """Turns SIGTERM into a request to checkpoint and exit at the next logging step.

  Stopping on a logging step keeps metrics.jsonl of a stopped-and-resumed run identical to an
  uninterrupted one; it costs at most train.log_every_steps more steps before exit. In a
  multi-process job the processes agree at every logging step (`agreed`), so a signal that
  reaches one process stops them all at the same step and their collective save completes.
  """

  def __init__(self):
    self.requested = False
    self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    """Whether any process was asked to stop (every process must call this at the same step)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.asarray(self.requested))))

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
    metrics_lib.truncate_after(directory, resume_step)
    member_config = ml_collections.ConfigDict(config.to_dict())
    member_config.seed = seed
    workdir_lib.save_config(directory, member_config)
    workdir_lib.save_environment(directory, resume_step or 0)
  return dirs


def _finished_summaries(workdir: str, seeds: list[int], num_steps: int) -> list[dict] | None:
  """The recorded final metrics of every model, when the run already finished; else None."""
  records = [workdir_lib.read_finished(d) for d in member_workdirs(workdir, seeds)]
  return records if all(r is not None and r.get("step") == num_steps for r in records) else None


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Train to the config's length, resuming from the latest checkpoint in `workdir`.

  A work directory holds one experiment, written by one run at a time: a config that differs from
  the recorded one in what the run computes, or a directory another live process holds, is refused
  before anything is written, and re-running a finished run changes nothing. Returns the last logged
  scalars of the first model.
  """
  workdir_lib.check_workdir(workdir)
  config, inputs, mesh = prepare(config)
  lock = _hold(workdir)
  try:
    return _train(config, inputs, mesh, workdir, lock)
  finally:
    if lock:
      lock.release()


def _hold(workdir: str) -> WriterLock | None:
  """Process 0 holds the work directory for the whole job; every process learns whether it could."""
  refusal = None
  if jax.process_index() == 0:
    try:
      lock = WriterLock(workdir, sign=False)
    except ConfigError as error:
      lock, refusal = None, error
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    if not bool(multihost_utils.broadcast_one_to_all(np.asarray(refusal is None))):
      raise refusal or ConfigError(f"--workdir {workdir} is held by another run (process 0 says why)")
  if refusal:
    raise refusal
  return lock if jax.process_index() == 0 else None


def _train(config, inputs, mesh, workdir: str, lock: WriterLock | None) -> dict[str, float]:
  cfg, derived = config.train, config.derived
  lead = jax.process_index() == 0
  start = latest_step(workdir)
  workdir_lib.check_continues(workdir, config, start)
  seeds = member_seeds(config)
  if start == derived.num_steps and (finished := _finished_summaries(workdir, seeds, start)):
    if lead:
      print(f"{workdir} finished at step {start}: nothing to do", flush=True)
    return {k: v for k, v in finished[0].items() if k not in ("step", "num_params")}
  if lock:
    lock.sign()  # from here on this run writes
  exp = build(config, inputs, mesh)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  state = exp.state
  if start is not None:
    state = checkpointer.restore(exp.state, start)
    if lead:
      print(f"resuming from step {start} in {workdir}", flush=True)
  if lead:
    print(describe_learning_rate(config), flush=True)
  dirs = _prepare_workdirs(workdir, config, seeds, start) if lead else []
  writers = [metrics_lib.MetricsWriter(d) for d in dirs]
  progress = metrics_lib.Progress(derived.num_steps, start or 0, enabled=lead)
  stop = _StopRequest()
  step, pending, last_saved, stopping = start or 0, [], start, False
  summaries = [{} for _ in seeds]
  batches = exp.inputs.train_batches(step)
  try:
    while step < derived.num_steps and not (stopping and step == last_saved):
      batch = next(batches)
      state, step_metrics = exp.train_step(state, batch)
      layer_norms = step_metrics.pop(LAYER_GRAD_NORMS, None)
      if layer_norms is not None and step % cfg.analysis_every_steps == 0:
        for writer, member in zip(writers, np.reshape(jax.device_get(layer_norms), (len(seeds), -1))):
          writer.write(step, {f"grad_norm/{name}": float(v) for name, v in zip(layer_names(state.params), member)})
      pending.append(step_metrics)
      step += 1
      last = step == derived.num_steps
      checkpoint_step = step % cfg.checkpoint_every_steps == 0 or last
      # Checkpoint steps log too: a run resumed from one then averages its first logging interval
      # over exactly the steps an uninterrupted run does.
      logging_step = step % cfg.log_every_steps == 0 or checkpoint_step
      records = [{} for _ in seeds]
      if logging_step:
        members = _train_metrics(pending, len(seeds))
        _check_finite(members, step, last_saved)
        pending = []
        shared = dict(examples_per_second=progress.throughput(step, config.data.batch_size))
        records = [dict(m, **shared) for m in members]
        stopping = stop.agreed()
      if step % derived.eval_every_steps == 0 or last:
        eval_start = time.perf_counter()
        records = [dict(r, **e) for r, e in zip(records, exp.evaluate(state))]
        progress.last_time += time.perf_counter() - eval_start  # keep eval out of throughput
      if records[0]:
        epoch = step / derived.steps_per_epoch
        for writer, summary, scalars in zip(writers, summaries, records):
          writer.write(step, dict(scalars, epoch=epoch))
          summary.update(scalars, epoch=epoch)
        progress.report(step, {k: float(np.mean([r[k] for r in records])) for k in _SHOWN if k in records[0]})
      if checkpoint_step or (stopping and logging_step):  # a logging step: its metrics were checked finite
        checkpointer.save(step, state)
        last_saved = step
  finally:
    stop.restore()
    checkpointer.close()
    for writer in writers:
      writer.close()
  if step < derived.num_steps:
    raise TrainingStopped(f"stopped by SIGTERM at step {step}; checkpoint saved in {workdir}; "
                          "run the same command to resume")
  if lead:
    for directory, summary in zip(dirs, summaries):
      if not summary:  # resumed at the last step, finished.json not yet written: its final records
        summary = {k: v for r in metrics_lib.read_metrics(directory) if r["step"] == step for k, v in r.items()}
      workdir_lib.mark_finished(directory, dict(summary, step=step, num_params=exp.num_params))
  return summaries[0]


_SHOWN = ("train_loss", "train_error", "eval_error", "learning_rate", "examples_per_second")


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
