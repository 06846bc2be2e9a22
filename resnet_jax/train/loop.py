"""The trainer: from a config to a trained, checkpointed, evaluated model.

  setup(config)                 data on the devices, models, optimiser, compiled steps (an Experiment)
  train(config, workdir)        the experiment run, or resumed, in its work directory
  evaluate_checkpoint(workdir)  a work directory's checkpoint evaluated again

The loop (`_train`) reads top to bottom: where the work directory stands, the models restored (from the
newest checkpoint that restores) or new, then the steps, each periodic action a named piece: the run's
records (run_log.RunLog: training metrics, gradient-norm analysis, evaluation), the checkpoint, the stop on
request or on a lost hold (`_StopRequest`), a profile window (profiling.Profile).
"""

from __future__ import annotations

import dataclasses
import json
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from resnet_jax import platforms
from resnet_jax.config import resolve, validate
from resnet_jax.errors import ConfigError
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_params
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer, latest_step
from resnet_jax.train.inputs import InMemoryInputs, StreamedInputs, make_inputs
from resnet_jax.train.optimizer import describe_learning_rate, make_optimizer
from resnet_jax.train.run_log import RunLog, per_member
from resnet_jax.train.parallel import initialize_distributed, make_mesh, put_replicated, replicated
from resnet_jax.train.profiling import Profile
from resnet_jax.train.step import (LAYER_GRAD_NORMS, BoundStep, DeviceData, StepSettings, TrainState, eval_step,
                                   evaluate, program_fields, train_step)
from resnet_jax.train.writer_lock import Hold, WorkdirBusy, WriterLock


class TrainingStopped(RuntimeError):
  """SIGTERM arrived; a checkpoint was saved and the same command resumes."""


# ============================================================================ setup

@dataclasses.dataclass
class Experiment:
  config: ml_collections.ConfigDict
  inputs: InMemoryInputs | StreamedInputs
  seeds: list[int]  # one model per seed; several train together in one program
  graphdef: nnx.GraphDef
  state: TrainState
  num_params: int
  train_step: BoundStep
  eval_step: BoundStep

  @property
  def data(self) -> DeviceData:
    """The in-memory dataset on the devices (in-memory datasets only)."""
    return self.inputs.data

  def evaluate(self, state: TrainState) -> list[dict[str, float]]:
    """Eval metrics of every model (seed) over the whole eval split."""
    results = per_member(evaluate(self.eval_step, state, self.inputs.eval_batches()), len(self.seeds))
    return [dict(r, eval_count=int(r["eval_count"])) for r in results]


def setup(config: ml_collections.ConfigDict) -> Experiment:
  """Validate, load data onto the devices, resolve the config, build models, optimiser and compiled steps."""
  return build(*prepare(config))


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
  """Models (one per seed), optimiser and compiled steps for a resolved config. The steps are jit's, keyed by
  their settings: a later build that differs only in its seed reuses the compiled programs."""
  tx, _ = make_optimizer(config)
  seeds = member_seeds(config)
  members = [initial_state(config, tx, num_classes=inputs.num_classes, in_channels=inputs.image_shape[-1], seed=seed,
                           platform=platforms.mesh_platform(mesh))
             for seed in seeds]
  graphdef, state, num_params = members[0]
  if len(seeds) > 1:
    state = jax.tree.map(lambda *leaves: np.stack(leaves), *[m[1] for m in members])
  settings = StepSettings.of(config, inputs.num_train, mesh, graphdef)
  return Experiment(config, inputs, seeds, graphdef, put_replicated(state, mesh), num_params,
                    BoundStep(train_step, settings), BoundStep(eval_step, settings))


def initial_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation, *, num_classes: int,
                  in_channels: int, seed: int, platform: str) -> tuple[nnx.GraphDef, TrainState, int]:
  """A freshly initialised model of `config.model` for `platform`'s devices as (graphdef, TrainState at
  step 0, parameter count), its layers the platform layer's (the same network on every platform)."""
  model = build_model(config.model, num_classes=num_classes, in_channels=in_channels, seed=seed, platform=platform,
                      layers=platforms.LAYERS)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  state = TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), jax.random.PRNGKey(seed))
  return graphdef, state, count_params(model)


def abstract_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation, *, num_classes: int,
                   in_channels: int, mesh: jax.sharding.Mesh) -> tuple[nnx.GraphDef, TrainState]:
  """`config`'s models (one per seed, stacked) as shapes and shardings only, replicated over `mesh`: what a
  checkpoint restores into, or a plan compiles against; nothing is initialised."""
  graphdefs = []

  def init():
    graphdef, state, _ = initial_state(config, tx, num_classes=num_classes, in_channels=in_channels,
                                       seed=config.seed, platform=platforms.mesh_platform(mesh))
    graphdefs.append(graphdef)
    return state

  shapes = jax.eval_shape(init)
  stack = () if config.train.num_seeds == 1 else (config.train.num_seeds,)
  return graphdefs[0], jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((*stack, *x.shape), x.dtype, sharding=replicated(mesh)), shapes)


def member_seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.seed + k for k in range(config.train.num_seeds)]


def programs_key(config: ml_collections.ConfigDict) -> str:
  """`step.program_fields` as a string: runs whose keys are equal compile the same steps (a sweep gives them to
  the same worker)."""
  return json.dumps(program_fields(config), sort_keys=True, default=str)


# ============================================================================ training

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


def _train(config, inputs, mesh, workdir: str, lock: Hold | None) -> dict[str, float]:
  every, num_steps = config.train, config.derived.num_steps
  seeds = member_seeds(config)
  # --------------------------------------------------------------- where the work directory stands
  start = latest_step(workdir)
  workdir_lib.check_continues(workdir, config, start)
  if start == num_steps and (finished := _finished_summaries(workdir, seeds, start)):
    if jax.process_index() == 0:
      print(f"{workdir} finished at step {start}: nothing to do", flush=True)
    return {k: v for k, v in finished[0].items() if k not in ("step", "num_params")}
  if lock:
    lock.sign()  # from here on this run writes
  # --------------------------------------------------------------- the models, restored or new
  exp = build(config, inputs, mesh)
  checkpointer = Checkpointer(workdir, keep=every.keep_checkpoints)
  state = exp.state
  if start is not None:
    state, start = _resume(checkpointer, exp.state, workdir)
  if jax.process_index() == 0:
    print(describe_learning_rate(config), flush=True)
  # --------------------------------------------------------------- the loop
  log = RunLog(workdir, config, seeds, start)
  stop = _StopRequest(lock)
  profile = Profile(config, workdir)
  step = start or 0
  batches = exp.inputs.train_batches(step)
  try:
    while step < num_steps:
      with profile.step(step):
        state, metrics = exp.train_step(state, next(batches))
      log.layer_gradient_norms(step, metrics.pop(LAYER_GRAD_NORMS, None), state.params)
      log.add(metrics)
      step += 1
      profile.end_window(step, state)
      checkpoint = _itstime(step, every.checkpoint_every_steps, num_steps)
      # Checkpoint steps log too: a run resumed from one then averages its first logging interval over exactly
      # the steps an uninterrupted run does. Only a logging step (its metrics checked finite) can stop the run.
      stopping = False
      if checkpoint or _itstime(step, every.log_every_steps):
        log.training(step, checkpointer.last_saved)
        stopping = stop.agreed()
      if _itstime(step, config.derived.eval_every_steps, num_steps):
        log.evaluation(lambda: exp.evaluate(state))
      log.write(step)
      if checkpoint or stopping:
        checkpointer.save(step, state)
      if stopping:
        break
  finally:
    profile.close()
    stop.restore()
    checkpointer.close()
    log.close()
  if step < num_steps:
    raise TrainingStopped(f"stopped by SIGTERM at step {step}; checkpoint saved in {workdir}; "
                          "run the same command to resume")
  return log.finish(step, exp.num_params)


def _hold(workdir: str) -> Hold | None:
  """Process 0 holds the work directory for the whole job; every process learns whether it could."""
  refusal = None
  if jax.process_index() == 0:
    try:
      lock = WriterLock(workdir, sign=False)
    except ConfigError as error:
      lock, refusal = None, error
  if jax.process_count() > 1:
    if not bool(multihost_utils.broadcast_one_to_all(np.asarray(refusal is None))):
      raise refusal or ConfigError(f"--workdir {workdir} is held by another run (process 0 says why)")
  if refusal:
    raise refusal
  return lock if jax.process_index() == 0 else None


def _resume(checkpointer: Checkpointer, like: TrainState, workdir: str) -> tuple[TrainState, int]:
  """The newest checkpoint that restores, and its step; each damaged newer one named in a line."""
  state, step, damaged = checkpointer.restore_newest(like)
  if jax.process_index() == 0:
    for bad, reason, moved in damaged:
      print(f"checkpoint {bad} is damaged ({reason}): moved to {moved}", flush=True)
    print(f"resuming from step {step} in {workdir}", flush=True)
  return state, step


def _finished_summaries(workdir: str, seeds: list[int], num_steps: int) -> list[dict] | None:
  """The recorded final metrics of every model, when the run already finished; else None."""
  records = [workdir_lib.read_finished(d) for d in workdir_lib.member_workdirs(workdir, seeds)]
  return records if all(r is not None and r.get("step") == num_steps for r in records) else None


def _itstime(step: int, every: int, last: int | None = None) -> bool:
  """Whether a periodic action runs after `step`: every `every` steps, and after the last."""
  return step % every == 0 or step == last


# ============================================================================ stopping on request

class _StopRequest:
  """Turns SIGTERM into a request to checkpoint and exit at the next logging step.

  Stopping on a logging step keeps metrics.jsonl of a stopped-and-resumed run identical to an
  uninterrupted one; it costs at most train.log_every_steps more steps before exit. In a
  multi-process job the processes agree at every logging step (`agreed`), so a signal that
  reaches one process stops them all at the same step and their collective save completes.
  A run whose hold on the work directory was taken over (a lease that ran out) stops there without saving.
  """

  def __init__(self, lock: Hold | None = None):
    self.requested, self.lock = False, lock
    self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    """Whether any process was asked to stop (every process must call this at the same step); raises
    WorkdirBusy in every process when the lead lost its hold."""
    flags = np.asarray([self.requested, bool(self.lock and self.lock.lost)])
    if jax.process_count() > 1:
      flags = np.any(multihost_utils.process_allgather(flags), axis=0)
    if flags[1]:
      who = self.lock.lost_to() if self.lock else "another run (process 0 says which)"
      raise WorkdirBusy(f"this run's hold on its work directory ran out and {who} took it over: stopped "
                        "without saving (the new holder writes there now)")
    return bool(flags[0])

  def restore(self):
    signal.signal(signal.SIGTERM, self.previous)


# ============================================================================ evaluating a work directory

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
