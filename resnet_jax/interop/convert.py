"""Work directories from torchvision / timm weights files, and weights files from work directories.

An imported work directory is what `resnet-jax train` would leave at step 0 with these weights: the
config (config.json), environment.json, an orbax checkpoint of the whole TrainState at step 0 (fresh
optimiser state), plus imported.json naming the source file, its format and sha256. `eval`, the
analyses and a later `train` with the same config (fine-tuning from the weights) read it as any run.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from resnet_jax import storage
from resnet_jax.config import resolve, validate
from resnet_jax.errors import ConfigError
from resnet_jax.interop import files, layout
from resnet_jax.models import ResNet, build_model
from resnet_jax.platforms import local_platform
from resnet_jax.models.resnet import IMAGENET_STAGES
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer, latest_step
from resnet_jax.train.step import TrainState
from resnet_jax.describe import data_layout
from resnet_jax.train.optimizer import make_optimizer

SOURCES = ("torchvision", "timm")  # timm's plain resnet* share torchvision's names, shapes and blocks (v1.5)
TARGETS = ("torchvision", "timm")
IMPORTED_FILE = "imported.json"
# The optimiser state's structure, all a checkpoint needs, does not depend on the schedule's values: the
# import resolves durations with this nominal epoch length (eval and the analyses resolve their own).
NOMINAL_STEPS_PER_EPOCH = 10_000


def num_classes(config: ml_collections.ConfigDict) -> int:
  """The classes of the config's dataset, known without the data on disk (your own data is read)."""
  return data_layout(config.data).num_classes


def check_config(config: ml_collections.ConfigDict, *, importing: bool = True) -> None:
  """Refuse, with one line naming the field and the value it needs, a config whose model cannot hold
  torchvision ResNet weights (`layout.model_needs`), or that trains several models at once; an import
  also needs the inputs scaled by ImageNet's mean and std, as torchvision and timm trained them."""
  needs = [*layout.model_needs(config.model), ("train.num_seeds", config.train.num_seeds, 1)]
  if importing:
    needs.append(("data.normalize", config.data.normalize, "channel_mean_std"))
  layout.refuse_unfit(needs)


def _check_weights_fit(state_dict: dict, config: ml_collections.ConfigDict, classes: int) -> None:
  """Depth and classes of the weights against the config's, named before any tensor is compared."""
  depth = layout.detected_depth(state_dict)
  if depth is not None and depth != config.model.depth:
    block, stages = IMAGENET_STAGES[depth]
    raise ConfigError(f"model.depth={config.model.depth} does not fit the weights, a ResNet-{depth} "
                      f"({'-'.join(map(str, stages))} {block} blocks): set depth={depth}")
  fc = state_dict.get("fc.weight")
  if fc is not None and getattr(fc, "ndim", 0) == 2 and fc.shape[0] != classes:
    raise ConfigError(f"the weights' fc has {fc.shape[0]} outputs but data.name={config.data.name!r} has "
                      f"{classes} classes: evaluate them on a dataset with {fc.shape[0]} classes")


def _refuse_existing_run(workdir: str) -> None:
  found = [name for name in (workdir_lib.CONFIG_FILE, IMPORTED_FILE) if storage.exists(storage.join(workdir, name))]
  if latest_step(workdir) is not None:
    found.append("checkpoints")
  if found:
    raise ConfigError(f"--workdir {workdir} already holds a run ({', '.join(found)}): convert into a new or empty "
                      "--workdir; nothing was changed")


def _optimizer(config: ml_collections.ConfigDict):
  resolved = config if "derived" in config else resolve(config, NOMINAL_STEPS_PER_EPOCH)
  return make_optimizer(resolved)[0]


def _train_state(tx, params: nnx.State, batch_stats: nnx.State, *, seed: int) -> TrainState:
  """What `train.loop.initial_state` makes, around given weights: step 0, a fresh optimiser state."""
  return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), jax.random.PRNGKey(seed))


def import_weights(path: str, config: ml_collections.ConfigDict, workdir: str,
                   source: str = "torchvision") -> dict[str, Any]:
  """Write a work directory holding the torchvision/timm ResNet weights in `path` (.safetensors, or
  .pth/.pt/.bin with torch installed) as a model of `config`. Returns the imported.json record.

  Everything is checked before anything is written: the config (`check_config`), every tensor's name
  and shape, and that `workdir` holds no run yet.
  """
  if source not in SOURCES:
    raise ConfigError(f"--from {source!r} is invalid: allowed values are {', '.join(SOURCES)}")
  workdir_lib.check_workdir(workdir)
  _refuse_existing_run(workdir)
  validate(config, num_devices=1)
  check_config(config)
  classes = num_classes(config)
  state_dict = files.read_state_dict(path)
  _check_weights_fit(state_dict, config, classes)
  model = layout.state_dict_to_model(state_dict, config.model, num_classes=classes, seed=config.seed)
  _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  state = _train_state(_optimizer(config), params, batch_stats, seed=config.seed)
  record = dict(source=source, format=files.file_format(path), file=os.path.abspath(path),
                sha256=files.sha256(path), tensors=len(state_dict), step=0,
                time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
  storage.makedirs(workdir)
  checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  try:
    checkpointer.save(0, state)
  finally:
    checkpointer.close()
  workdir_lib.save_config(workdir, config)
  workdir_lib.save_environment(workdir, start_step=0)
  storage.write_text(storage.join(workdir, IMPORTED_FILE), json.dumps(record, indent=2))
  return record


def load_model(workdir: str, step: int | None = None) -> tuple[ResNet, int]:
  """The model of a work directory's latest (or given) checkpoint and its step, restored without its
  data; the recorded config must describe a torchvision-compatible model (`check_config`)."""
  config = workdir_lib.recorded_config(workdir)
  check_config(config, importing=False)
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise ConfigError(f"--workdir {workdir} has no checkpoint: train or convert into it first")
  model = nnx.eval_shape(lambda: build_model(config.model, num_classes=num_classes(config), in_channels=3,
                                             seed=config.seed, platform=local_platform()))
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local),
                      jax.eval_shape(functools.partial(_train_state, _optimizer(config), seed=config.seed),
                                     params, batch_stats))
  checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  try:
    state = checkpointer.restore(like, step)
  finally:
    checkpointer.close()
  return nnx.merge(graphdef, state.params, state.batch_stats), step


def export_weights(workdir: str, path: str, target: str = "torchvision", step: int | None = None) -> dict[str, Any]:
  """Write a work directory's model as a torchvision/timm `.safetensors` state dict that
  `load_state_dict(strict=True)` accepts (BN num_batches_tracked = the checkpoint's step).
  Returns a record of what was written."""
  if target not in TARGETS:
    raise ConfigError(f"--to {target!r} is invalid: allowed values are {', '.join(TARGETS)}")
  if not path.endswith(files.SAFETENSORS):
    raise ConfigError(f"--output {path}: the export writes .safetensors; name the file <name>.safetensors")
  if storage.exists(path):
    raise ConfigError(f"--output {path} exists: remove it or choose another file; nothing was changed")
  model, step = load_model(workdir, step)
  state_dict = layout.model_to_state_dict(model, num_batches_tracked=step)
  files.write_safetensors(path, state_dict, metadata={"resnet_jax_workdir": storage.shown(workdir),
                                                      "resnet_jax_step": str(step)})
  return dict(target=target, file=storage.shown(path), sha256=files.sha256(path), tensors=len(state_dict),
              step=step, workdir=storage.shown(workdir))
