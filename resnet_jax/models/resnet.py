"""ResNet and plain networks for CIFAR (depth 6n+2 / 9n+2) and ImageNet (18-152).

An `Architecture` names the stem and the stages; `ResNet` builds any of them as residual,
plain or pre-activation networks. Presets are in `architecture()`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from resnet_jax.models.batchnorm import BatchNorm
from resnet_jax.models.blocks import BLOCKS, UnitSettings
from resnet_jax.models.layers import Layers, response_std

FAMILIES = ("cifar", "imagenet")
VARIANTS = ("residual", "plain", "preact")
BLOCK_TYPES = ("basic", "bottleneck")
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


@dataclasses.dataclass(frozen=True)
class Architecture:
  """Stem type, block type, blocks per stage and base width per stage."""
  stem: str
  block: str
  stage_sizes: tuple[int, ...]
  widths: tuple[int, ...]


def architecture(family: str, depth: int, block: str | None = None) -> Architecture:
  """The paper's layouts: CIFAR 3 stages of 16/32/64, ImageNet 4 stages of 64-512.

  CIFAR depth is 6n+2 with basic blocks (paper) or 9n+2 with bottlenecks (He et al. 2016).
  """
  if family == "cifar":
    block = block or "basic"
    if block not in BLOCK_TYPES:
      raise ValueError(f"block must be one of {BLOCK_TYPES}, got {block!r}")
    layers_per_block = 2 if block == "basic" else 3
    n, rem = divmod(depth - 2, 3 * layers_per_block)
    if rem or n < 1:
      raise ValueError(
          f"CIFAR {block} blocks need depth {3 * layers_per_block}n+2 with n >= 1 (e.g. "
          f"{', '.join(str(3 * layers_per_block * k + 2) for k in (1, 3, 5, 7, 9))}), got {depth}")
    return Architecture("cifar", block, (n, n, n), (16, 32, 64))
  if family == "imagenet":
    if depth not in IMAGENET_STAGES:
      raise ValueError(f"ImageNet depth must be one of {sorted(IMAGENET_STAGES)}, got {depth}")
    preset_block, stages = IMAGENET_STAGES[depth]
    if block not in (None, preset_block):
      raise ValueError(f"block {block!r} does not match ImageNet depth {depth}, which uses {preset_block!r}")
    return Architecture("imagenet", preset_block, stages, (64, 128, 256, 512))
  raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


class ResNet(nnx.Module):
  """Stem, stages of blocks, global average pool, dense classifier.

  variant: 'residual' (He et al. 2015), 'plain' (the same layers without shortcuts) or
  'preact' (He et al. 2016 pre-activation residual units).
  Parameters, optimiser state and BN statistics are float32; `dtype` is the compute dtype.
  `layers`: how the layers compute (models/layers.py); the network is the same whatever they are.
  """

  def __init__(
      self,
      arch: Architecture,
      *,
      num_classes: int,
      variant: str = "residual",
      shortcut: str = "A",
      in_channels: int = 3,
      width_multiplier: float = 1.0,
      bottleneck_version: str = "v1",
      zero_init_residual: bool = False,
      bn_momentum: float = 0.9,
      bn_epsilon: float = 1e-5,
      bn_group_size: int | None = None,
      dtype: jnp.dtype = jnp.float32,
      layers: Layers = Layers(),
      rngs: nnx.Rngs,
  ):
    if variant not in VARIANTS:
      raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if zero_init_residual and variant == "plain":
      raise ValueError("zero_init_residual would zero a plain network's output: allowed only with variant "
                       "'residual' or 'preact'")
    if width_multiplier <= 0:
      raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.preact = variant == "preact"
    self.dtype = dtype
    norm = functools.partial(BatchNorm, momentum=bn_momentum, epsilon=bn_epsilon,
                             group_size=bn_group_size, dtype=dtype)
    scale = lambda width: max(1, int(round(width * width_multiplier)))
    stem_width = scale(arch.widths[0])
    self.stem_kernel = 3 if arch.stem == "cifar" else 7
    self.stem_conv = layers.conv(in_channels, stem_width, self.stem_kernel, 1 if arch.stem == "cifar" else 2,
                                 dtype=dtype, rngs=rngs)
    # A pre-activation CIFAR net starts its first unit from the raw conv output.
    self.stem_norm = None if self.preact and arch.stem == "cifar" else norm(stem_width)
    self.max_pool = arch.stem == "imagenet"
    self.record_responses = False

    block_cls = BLOCKS[(arch.block, self.preact)]
    self.act = layers.act
    settings = UnitSettings(residual=variant != "plain", shortcut=shortcut, norm=norm, dtype=dtype, layers=layers,
                            zero_init_residual=zero_init_residual, bottleneck_version=bottleneck_version)
    stages, features = [], stem_width
    for index, (size, width) in enumerate(zip(arch.stage_sizes, arch.widths)):
      blocks = []
      for position in range(size):
        stride = 2 if index > 0 and position == 0 else 1
        blocks.append(block_cls(features, scale(width), stride, settings, rngs=rngs))
        features = scale(width) * block_cls.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.final_norm = norm(features) if self.preact else None
    self.num_features = features
    self.head = layers.dense(features, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool, apply_block: Callable | None = None) -> jax.Array:
    """Logits (float32) for NHWC images.

    `apply_block(name, block, x)`, where given, runs each block in place of `block(x, train=train)`:
    how analyses see or change what passes between blocks (names as in `named_blocks`).
    """
    x = self.apply_stem(x, train=train)
    for name, block in self.named_blocks():
      x = block(x, train=train) if apply_block is None else apply_block(name, block, x)
    return self.classify(x, train=train)

  def named_blocks(self) -> list[tuple[str, nnx.Module]]:
    """Every block in network order, named 'stage<s>.block<b>' from 1."""
    return [(f"stage{s + 1}.block{b + 1}", block) for s, stage in enumerate(self.stages)
            for b, block in enumerate(stage)]

  def apply_stem(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.stem_conv(x.astype(self.dtype))
    if self.stem_norm is not None:
      x = self.stem_norm(x, train=train)
      if self.record_responses and self.stem_kernel == 3:
        self.sow(nnx.Intermediate, "responses", response_std(x))
      x = self.act(x)
    if self.max_pool:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return x

  def classify(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Final pre-activation BN (pre-act nets only), global average pool, dense layer."""
    if self.final_norm is not None:
      x = self.act(self.final_norm(x, train=train))
    return self.head(x.mean(axis=(1, 2))).astype(jnp.float32)
