"""`resnet-jax describe`: a model's stages, output shapes, parameters and multiply-adds."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
from flax import nnx

from resnet_jax.config import validate
from resnet_jax.data.registry import DATASET_FACTS, is_streamed
from resnet_jax.data.sources import load_dataset
from resnet_jax.data.tfds_data import inspect
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_macs, count_params, stage_table
from resnet_jax.platforms import local_platform

@dataclasses.dataclass(frozen=True)
class DataLayout:
  """What a config's dataset gives the trainer, in shapes: examples per split, image shape, classes."""
  num_train: int
  num_eval: int
  image_shape: tuple[int, int, int]
  num_classes: int
  streamed: bool


def data_layout(data: ml_collections.ConfigDict) -> DataLayout:
  """A config's dataset in shapes; built-in sets need no files, your own are read (a streamed tfds: set: its
  metadata)."""
  if data.name == "synthetic":
    size = (data.image_size, data.image_size, 3)
    return DataLayout(data.num_train_examples, data.eval_batch_size, size, data.num_classes, False)
  if data.name in DATASET_FACTS:
    num_train, num_eval, shape, classes = DATASET_FACTS[data.name]
    streamed = is_streamed(data)
    if streamed:
      shape = (data.image_size, data.image_size, 3)
    elif data.validation_size:
      num_eval = data.validation_size if data.eval_split == "validation" else num_eval
      num_train -= data.validation_size
    return DataLayout(num_train, num_eval, shape, classes, streamed)
  if is_streamed(data):
    found = inspect(data)
    return DataLayout(found.num_train, found.builder.info.splits[found.eval_split].num_examples,
                      (data.image_size, data.image_size, 3), found.num_classes, True)
  dataset = load_dataset(data)
  return DataLayout(len(dataset.train), len(dataset.eval), dataset.image_shape, dataset.num_classes, False)


def describe(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Parameters (trainable), forward multiply-adds per example and a per-stage table."""
  validate(config, num_devices=1)
  layout = data_layout(config.data)
  image_shape, num_classes = layout.image_shape, layout.num_classes
  model = nnx.eval_shape(lambda: build_model(config.model, num_classes=num_classes, in_channels=image_shape[-1],
                                             seed=0, platform=local_platform()))
  macs = count_macs(model, image_shape)
  return dict(
      model=f"{config.model.variant}-{config.model.depth} ({config.model.family}, shortcut "
            f"{config.model.shortcut}, bottleneck {config.model.bottleneck_version})",
      dataset=config.data.name, image_shape=list(image_shape), num_classes=num_classes,
      num_params=count_params(model),
      # The paper's "FLOPs" are multiply-adds of the conv and dense layers; both names are given.
      flops_per_example=macs, macs_per_example=macs,
      stages=[dict(row, output_shape=list(row["output_shape"])) for row in stage_table(model, image_shape)],
  )


def format_table(info: dict[str, Any]) -> str:
  lines = [f"{info['model']} on {info['dataset']} {tuple(info['image_shape'])}",
           f"{'stage':<8} {'blocks':>6} {'output shape':>16} {'params':>12}"]
  for row in info["stages"]:
    lines.append(f"{row['name']:<8} {row['blocks']:>6} {str(tuple(row['output_shape'])):>16} {row['params']:>12,}")
  macs = info["macs_per_example"]
  lines.append(f"total parameters: {info['num_params']:,}   forward multiply-adds per example: {macs:,} "
               f"({macs / 1e6:,.1f}M)")
  return "\n".join(lines)
