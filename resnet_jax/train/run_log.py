"""The run's records: each model's metrics as the trainer logs them (metrics.jsonl, TensorBoard, the progress
line, finished.json), the work directories they go to, and the finiteness check of each logging interval."""

from __future__ import annotations

import math
import time

import jax
import ml_collections
import numpy as np

from resnet_jax import storage
from resnet_jax.train import metrics as metrics_lib
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.step import layer_names


class TrainingDiverged(RuntimeError):
  """The loss or gradient norm became NaN or infinite."""


_SHOWN = ("train_loss", "train_error", "eval_error", "learning_rate", "examples_per_second")


class RunLog:
  """Each model's metrics: its work directory prepared (config, environment, records a resumed run writes
  again dropped), the training metrics of each logging interval, evaluations, per-layer gradient norms, the
  progress line, and what `finished.json` records. Only process 0 writes."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, seeds: list[int], start: int | None):
    self.config, self.seeds, self.lead = config, seeds, jax.process_index() == 0
    self.dirs = _prepare_workdirs(workdir, config, seeds, start) if self.lead else []
    self.writers = [metrics_lib.MetricsWriter(d) for d in self.dirs]
    self.progress = metrics_lib.Progress(config.derived.num_steps, start or 0, enabled=self.lead)
    self.pending: list[dict] = []  # this logging interval's step metrics, still on the devices
    self.records: list[dict] = [{} for _ in seeds]  # what this step writes, per model
    self.summaries: list[dict] = [{} for _ in seeds]

  def add(self, metrics: dict) -> None:
    self.pending.append(metrics)

  def layer_gradient_norms(self, step: int, norms, params) -> None:
    """On analysis steps, each parameter's gradient norm on the batch of `step`, before it trained."""
    if norms is None or step % self.config.train.analysis_every_steps:
      return
    for writer, member in zip(self.writers, np.reshape(jax.device_get(norms), (len(self.seeds), -1))):
      writer.write(step, {f"grad_norm/{name}": float(v) for name, v in zip(layer_names(params), member)})

  def training(self, step: int, last_checkpoint: int | None) -> None:
    """The interval's mean train loss, error and gradient norm, the latest learning rate and the throughput;
    raises TrainingDiverged on a non-finite loss or gradient norm."""
    fetched = jax.device_get(self.pending)
    self.pending = []
    means = {k: np.mean([m[k] for m in fetched], axis=0) for k in ("loss", "error", "grad_norm")}
    members = per_member(dict(train_loss=means["loss"], train_error=means["error"], grad_norm=means["grad_norm"],
                               learning_rate=fetched[-1]["learning_rate"]), len(self.seeds))
    _check_finite(members, step, last_checkpoint)
    rate = self.progress.throughput(step, self.config.data.batch_size)
    for record, member in zip(self.records, members):
      record.update(member, examples_per_second=rate)

  def evaluation(self, evaluate) -> None:
    """Every model's eval metrics; their time is kept out of the training throughput."""
    start = time.perf_counter()
    for record, result in zip(self.records, evaluate()):
      record.update(result)
    self.progress.last_time += time.perf_counter() - start

  def write(self, step: int) -> None:
    """This step's records, if it has any, to metrics.jsonl, TensorBoard and the progress line."""
    if not self.records[0]:
      return
    epoch = step / self.config.derived.steps_per_epoch
    for writer, summary, record in zip(self.writers, self.summaries, self.records):
      writer.write(step, dict(record, epoch=epoch))
      summary.update(record, epoch=epoch)
    shown = {k: float(np.mean([r[k] for r in self.records])) for k in _SHOWN if k in self.records[0]}
    self.progress.report(step, shown)
    self.records = [{} for _ in self.seeds]

  def finish(self, step: int, num_params: int) -> dict[str, float]:
    """Mark every model's run finished; the first model's last scalars."""
    for directory, summary in zip(self.dirs, self.summaries):
      if not summary:  # resumed at the last step, finished.json not yet written: its final records
        summary.update({k: v for r in metrics_lib.read_metrics(directory) if r["step"] == step for k, v in r.items()})
      workdir_lib.mark_finished(directory, dict(summary, step=step, num_params=num_params))
    return self.summaries[0]

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def _prepare_workdirs(workdir: str, config, seeds: list[int], resume_step: int | None) -> list[str]:
  """Record config and environment per model; drop metrics a resumed run will write again."""
  dirs = workdir_lib.member_workdirs(workdir, seeds)
  if len(seeds) > 1:  # the shared checkpoints' config, for `resnet-jax eval --workdir`
    workdir_lib.save_config(workdir, config)
  for directory, seed in zip(dirs, seeds):
    storage.makedirs(directory)
    metrics_lib.truncate_after(directory, resume_step)
    member_config = ml_collections.ConfigDict(config.to_dict())
    member_config.seed = seed
    workdir_lib.save_config(directory, member_config)
    workdir_lib.save_environment(directory, resume_step or 0)
  return dirs


def per_member(tree: dict, num_members: int) -> list[dict[str, float]]:
  """Split fetched metrics (scalars, or [K] arrays with K seeds) into one dict of floats per model."""
  flat = {k: np.reshape(np.asarray(v, np.float64), (num_members,)) for k, v in tree.items()}
  return [{k: float(v[i]) for k, v in flat.items()} for i in range(num_members)]


def _check_finite(members: list[dict[str, float]], step: int, last_checkpoint: int | None) -> None:
  bad = sorted({k for scalars in members for k in ("train_loss", "grad_norm") if not math.isfinite(scalars[k])})
  if bad:
    kept = "no checkpoint was saved yet" if last_checkpoint is None else \
        f"the last good checkpoint (step {last_checkpoint}) is kept"
    raise TrainingDiverged(f"{' and '.join(bad)} became non-finite by step {step}; {kept}. "
                           "Lower optimizer.learning_rate or add optimizer.warmup_steps.")
