"""Model library: residual, plain and pre-activation ResNets for CIFAR and ImageNet."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
from flax import nnx

from resnet_jax.models.layers import Layers
from resnet_jax.models.resnet import FAMILIES, VARIANTS, Architecture, ResNet, architecture
from resnet_jax.models.shortcuts import SHORTCUT_OPTIONS

DTYPES = {"auto": None, "float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str, platform: str) -> jnp.dtype:
  """The compute dtype on `platform` ('cpu', 'gpu', 'tpu'); 'auto' is bfloat16 on GPU and TPU,
  float32 on CPU (where bf16 is slow)."""
  if name not in DTYPES:
    raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
  if name == "auto":
    return jnp.float32 if platform == "cpu" else jnp.bfloat16
  return DTYPES[name]


def build_model(model: Mapping[str, Any], *, num_classes: int, in_channels: int, seed: int, platform: str,
                layers: Layers = Layers()) -> ResNet:
  """A ResNet from a config's `model` section (resnet_jax/config.py lists the fields) for the devices
  of `platform`, its layers computed by `layers`."""
  return ResNet(
      architecture(model["family"], model["depth"], model.get("block")),
      num_classes=num_classes,
      in_channels=in_channels,
      variant=model["variant"],
      shortcut=model["shortcut"],
      width_multiplier=model.get("width_multiplier", 1.0),
      bottleneck_version=model.get("bottleneck_version", "v1"),
      zero_init_residual=model.get("zero_init_residual", False),
      bn_momentum=model.get("bn_momentum", 0.9),
      bn_epsilon=model.get("bn_epsilon", 1e-5),
      bn_group_size=model.get("bn_group_size"),
      dtype=compute_dtype(model.get("dtype", "float32"), platform),
      layers=layers,
      rngs=nnx.Rngs(seed),
  )


__all__ = ["Architecture", "Layers", "ResNet", "architecture", "build_model", "compute_dtype",
           "FAMILIES", "VARIANTS", "SHORTCUT_OPTIONS", "DTYPES"]
