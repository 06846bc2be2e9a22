"""`resnet-jax describe`: a model's stages, output shapes, parameters and multiply-adds."""

from __future__ import annotations

from typing import Any

import ml_collections
from flax import nnx

from resnet_jax.config import validate
from resnet_jax.data.registry import is_streamed
from resnet_jax.data.sources import load_dataset
from resnet_jax.data.tfds_data import inspect
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_macs, count_params, stage_table
from resnet_jax.platforms import local_platform

# (image shape, classes) of each dataset, so describe needs no data on disk.
DATASET_SHAPES = {
    "digits": ((8, 8, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "imagenet2012": ((224, 224, 3), 1000),
    "imagenette": ((224, 224, 3), 10),
}


def data_shape(data: ml_collections.ConfigDict) -> tuple[tuple[int, int, int], int]:
  """(image shape, classes) of a config's dataset; your own data is read for it (a streamed tfds: set: its metadata)."""
  if data.name == "synthetic":
    return (data.image_size, data.image_size, 3), data.num_classes
  if data.name in DATASET_SHAPES:
    return DATASET_SHAPES[data.name]
  if is_streamed(data):
    return (data.image_size, data.image_size, 3), inspect(data).num_classes
  dataset = load_dataset(data)
  return dataset.image_shape, dataset.num_classes


def describe(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Parameters (trainable), forward multiply-adds per example and a per-stage table."""
  validate(config, num_devices=1)
  image_shape, num_classes = data_shape(config.data)
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
  lines.append(f"total parameters: {info['num_params']:,}   "
               f"forward multiply-adds per example: {info['flops_per_example'] / 1e6:,.1f}M")
  return "\n".join(lines)
