"""The trained models of a work directory, restored for the analyses that run after training (loss
landscapes, lesions), and the record each analysis keeps in <model folder>/analysis/.

A work directory holds one model, or with train.num_seeds = K > 1 the shared checkpoint of K models
whose metrics live in seed<s>/: each model's analyses go beside its metrics, into W or W/seed<s>.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from resnet_jax import storage
from resnet_jax.data.registry import DATASETS, STREAMED_DATASETS, was_streamed
from resnet_jax.errors import ConfigError
from resnet_jax.train.checkpoint import CHECKPOINT_DIR, Checkpointer, latest_step
from resnet_jax.train.loop import abstract_state, member_seeds, prepare
from resnet_jax.train.optimizer import make_optimizer
from resnet_jax.train.parallel import batch_sharded, make_mesh
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.workdir import recorded_config

ANALYSIS_DIR = "analysis"


@dataclasses.dataclass
class Checkpoint:
  """What a work directory's latest checkpoint holds, read without restoring it."""
  workdir: str
  config: ml_collections.ConfigDict
  step: int
  seeds: list[int]
  folders: list[str]  # each model's metrics folder: W, or W/seed<s> per seed

  def analysis_path(self, index: int, name: str) -> str:
    return storage.join(self.folders[index], ANALYSIS_DIR, f"{name}.json")


@dataclasses.dataclass
class TrainedModels:
  checkpoint: Checkpoint
  config: ml_collections.ConfigDict  # the recorded config, resolved
  inputs: object  # resnet_jax.train.inputs.InMemoryInputs or StreamedInputs
  graphdef: nnx.GraphDef
  states: list[tuple[nnx.State, nnx.State]]  # (params, batch_stats) per model, in seed order

  def model(self, index: int) -> nnx.Module:
    return nnx.merge(self.graphdef, *self.states[index])


def read_checkpoint(workdir: str, *, in_memory_data: bool = True) -> Checkpoint:
  """The latest checkpoint's step, seeds and model folders; one clear error when there is none, or
  with `in_memory_data` (the landscape and lesion analyses) when its dataset is streamed."""
  step = latest_step(workdir)
  if step is None:
    raise ConfigError(f"--workdir {workdir} has no checkpoint ({storage.join(workdir, CHECKPOINT_DIR)}): train it "
                      "first, and pass the folder that holds checkpoints/ (not a seed<s>/ folder)")
  config = recorded_config(workdir)
  if in_memory_data and was_streamed(config):
    in_memory = ", ".join([d for d in DATASETS if d not in STREAMED_DATASETS] + ["folder:, npz: and tfds: sets "
                                                                                 "held in memory"])
    raise ConfigError(f"--workdir {workdir} trained on {config.data.name}, which is streamed: the analyses need a "
                      f"dataset held in memory ({in_memory})")
  config.distributed.enabled = False  # one local process reads the checkpoint
  seeds = member_seeds(config)
  return Checkpoint(workdir, config, step, seeds, workdir_lib.member_workdirs(workdir, seeds))


def restore(checkpoint: Checkpoint) -> TrainedModels:
  """Load the recorded experiment's data onto the devices and restore its models.

  The state to restore into is built abstractly (shapes and shardings only): initialising a network
  that is about to be overwritten would compile every initialiser.
  """
  config, inputs, mesh = prepare(checkpoint.config)
  tx, _ = make_optimizer(config)
  graphdef, like = abstract_state(config, tx, num_classes=inputs.num_classes, in_channels=inputs.image_shape[-1],
                                  mesh=mesh)
  checkpointer = Checkpointer(checkpoint.workdir, keep=config.train.keep_checkpoints)
  try:
    state = checkpointer.restore(like, checkpoint.step)
  finally:
    checkpointer.close()
  seeds = len(checkpoint.seeds)
  models = [(state.params, state.batch_stats)] if seeds == 1 else [
      jax.tree.map(lambda x: x[k], (state.params, state.batch_stats)) for k in range(seeds)]
  return TrainedModels(checkpoint, config, inputs, graphdef, models)


def option(default, help: str, flag: str | None = None):
  """A field of an analysis's options: its default, its help, and its command-line flag where that is not
  --<name with dashes>."""
  return dataclasses.field(default=default, metadata=dict(help=help, flag=flag))


def option_flag(field: dataclasses.Field) -> str:
  return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def check_options(options, name: str, fields: tuple[str, ...], valid: Callable[[Any], bool], allowed: str) -> None:
  """One ConfigError line naming the flag of the first of `fields` whose value is not `valid`."""
  for field in dataclasses.fields(options):
    value = getattr(options, field.name)
    if field.name in fields and not valid(value):
      raise ConfigError(f"{name} {option_flag(field)}={value!r} is invalid: allowed values are {allowed}")


def read_record(path: str) -> dict | None:
  """An analysis record, or None when it was not computed."""
  return storage.read_json(path)


def is_current(path: str, key: dict) -> bool:
  """Whether `path` holds a record computed with `key` (checkpoint step and analysis options)."""
  record = read_record(path)
  return record is not None and record.get("key") == json.loads(json.dumps(key))


def write_record(path: str, record: dict) -> None:
  """Write an analysis record whole or not at all."""
  storage.makedirs(storage.dirname(path))
  storage.write_text(path, json.dumps(record, indent=1))


def padded_examples(images: jax.Array, labels: jax.Array, mask: jax.Array):
  """Examples padded (mask 0) to a multiple of the device count and sharded over the devices, so
  that each device evaluates its share."""
  padding = -len(labels) % jax.device_count()
  pad = lambda x: jnp.concatenate([x, jnp.zeros((padding, *x.shape[1:]), x.dtype)])
  return jax.device_put((pad(images), pad(labels), pad(mask)), batch_sharded(make_mesh()))


def masked_loss_error(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy and top-1 error over the examples whose mask is 1."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  errors = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  count = jnp.sum(mask)
  return jnp.sum(loss * mask) / count, jnp.sum(errors * mask) / count


def round_floats(values, digits: int = 6) -> list:
  """A (nested) array as lists of floats rounded for the JSON record."""
  return np.round(np.asarray(values, np.float64), digits).tolist()


def run_analysis(workdir: str, name: str, key_options: dict, all_seeds: bool,
                 compute: Callable[[TrainedModels], Callable[[int], dict]],
                 written: Callable[[dict, str], None] | None = None) -> list[str]:
  """Write <model folder>/analysis/<name>.json for the first model of a work directory, or every model
  with `all_seeds`. A record already computed for this checkpoint step and these options is kept as it
  is. `compute(trained)` returns the function that makes model i's record; `written(record, stem)` is
  called after each record written (the report draws its figure there). Returns the JSON paths."""
  checkpoint = read_checkpoint(workdir)
  indices = range(len(checkpoint.seeds)) if all_seeds else range(1)
  key = dict(step=checkpoint.step, options=key_options)
  paths = [checkpoint.analysis_path(i, name) for i in indices]
  todo = [i for i, path in zip(indices, paths) if not is_current(path, key)]
  if todo:
    record_of = compute(restore(checkpoint))
    for index in todo:
      record = record_of(index)
      write_record(paths[index], record)
      if written is not None:
        written(record, paths[index][:-len(".json")])
  return paths
