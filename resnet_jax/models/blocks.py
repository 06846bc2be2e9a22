"""Residual units of He et al. 2015 (post-activation) and He et al. 2016 (pre-activation).

Every block takes `residual`: with False it is the paper's plain twin, the same layers without the
shortcut addition. Downsampling is the stride-2 convolution itself. A block is its two parts, the
residual branch and the shortcut (`parts`), and how they are joined (`join`), so that an analysis can
recombine them (the lesion study scales the branch).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from resnet_jax.models.layers import Layers, response_std
from resnet_jax.models.shortcuts import Shortcut

BOTTLENECK_VERSIONS = ("v1", "v1.5")


@dataclasses.dataclass(frozen=True)
class UnitSettings:
  """What every block of a network shares."""
  residual: bool  # False: the plain twin, no shortcut addition
  shortcut: str  # option A, B or C
  norm: Callable[..., nnx.Module]  # BatchNorm factory: norm(features, zero_init_scale=False)
  dtype: jnp.dtype
  layers: Layers = Layers()
  zero_init_residual: bool = False
  bottleneck_version: str = "v1"

  def conv(self, in_features: int, out_features: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs,
           zero_init: bool = False) -> nnx.Conv:
    return self.layers.conv(in_features, out_features, kernel, stride, dtype=self.dtype, rngs=rngs,
                            zero_init=zero_init)


class _Unit(nnx.Module):
  """Shared plumbing: the optional shortcut, the join, and the Fig. 7 response probe."""

  record_responses: bool = False
  preact: bool = False

  def _make_shortcut(self, in_features: int, out_features: int, stride: int, settings: UnitSettings,
                     rngs: nnx.Rngs):
    # Pre-activation units project the pre-activated input with a bare 1x1 conv (no BN).
    self.shortcut = (
        Shortcut(in_features, out_features, stride, settings.shortcut, norm=None if self.preact else settings.norm,
                 conv=settings.conv, rngs=rngs)
        if settings.residual else None)
    self.act = settings.layers.act

  def _record(self, y: jax.Array) -> None:
    """Sow the response std of a 3x3 layer when probing is switched on (off: no cost)."""
    if self.record_responses:
      self.sow(nnx.Intermediate, "responses", response_std(y))

  def parts(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
    """The residual branch's output and the shortcut's (None in a plain block)."""
    raise NotImplementedError

  def join(self, branch: jax.Array, skip: jax.Array | None) -> jax.Array:
    """The block's output: branch + skip, then the ReLU of a post-activation unit."""
    y = branch if skip is None else branch + skip
    return y if self.preact else self.act(y)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.join(*self.parts(x, train=train))


def _stride_positions(stride: int, version: str) -> tuple[int, int]:
  """(1x1 stride, 3x3 stride) of a bottleneck: v1 strides the first 1x1, v1.5 the 3x3."""
  if version not in BOTTLENECK_VERSIONS:
    raise ValueError(f"bottleneck version must be one of {BOTTLENECK_VERSIONS}, got {version!r}")
  return (stride, 1) if version == "v1" else (1, stride)


class BasicBlock(_Unit):
  """Two 3x3 convolutions, BN after each, ReLU after the addition (paper Fig. 2 left)."""

  expansion = 1

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm = settings.norm
    self.conv1 = settings.conv(in_features, width, 3, stride, rngs=rngs)
    self.bn1 = norm(width)
    self.conv2 = settings.conv(width, width, 3, rngs=rngs)
    self.bn2 = norm(width, zero_init_scale=settings.zero_init_residual)
    self._make_shortcut(in_features, width, stride, settings, rngs)

  def parts(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
    y = self.bn1(self.conv1(x), train=train)
    self._record(y)
    y = self.bn2(self.conv2(self.act(y)), train=train)
    self._record(y)
    return y, None if self.shortcut is None else self.shortcut(x, train=train)


class BottleneckBlock(_Unit):
  """1x1 reduce, 3x3, 1x1 expand (x4), BN after each, ReLU after the addition (Fig. 5 right)."""

  expansion = 4

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm = settings.norm
    stride_1x1, stride_3x3 = _stride_positions(stride, settings.bottleneck_version)
    out_features = width * self.expansion
    self.conv1 = settings.conv(in_features, width, 1, stride_1x1, rngs=rngs)
    self.bn1 = norm(width)
    self.conv2 = settings.conv(width, width, 3, stride_3x3, rngs=rngs)
    self.bn2 = norm(width)
    self.conv3 = settings.conv(width, out_features, 1, rngs=rngs)
    self.bn3 = norm(out_features, zero_init_scale=settings.zero_init_residual)
    self._make_shortcut(in_features, out_features, stride, settings, rngs)

  def parts(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
    y = self.act(self.bn1(self.conv1(x), train=train))
    y = self.bn2(self.conv2(y), train=train)
    self._record(y)
    y = self.bn3(self.conv3(self.act(y)), train=train)
    return y, None if self.shortcut is None else self.shortcut(x, train=train)


class PreActBasicBlock(_Unit):
  """BN-ReLU-conv3x3 twice; the shortcut adds to the raw conv output (He et al. 2016).

  A projection shortcut (a bare 1x1 conv) reads the pre-activated input, as in the 2016 paper's code.
  Recorded responses are the 3x3 conv outputs (there is no BN directly after them).
  """

  expansion = 1
  preact = True

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm = settings.norm
    self.bn1 = norm(in_features)
    self.conv1 = settings.conv(in_features, width, 3, stride, rngs=rngs)
    self.bn2 = norm(width)
    self.conv2 = settings.conv(width, width, 3, rngs=rngs, zero_init=settings.zero_init_residual)
    self._make_shortcut(in_features, width, stride, settings, rngs)

  def parts(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
    pre = self.act(self.bn1(x, train=train))
    y = self.conv1(pre)
    self._record(y)
    y = self.conv2(self.act(self.bn2(y, train=train)))
    self._record(y)
    return y, _preact_shortcut(self.shortcut, x, pre, train)


class PreActBottleneckBlock(_Unit):
  """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), added to the shortcut (He et al. 2016)."""

  expansion = 4
  preact = True

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm = settings.norm
    stride_1x1, stride_3x3 = _stride_positions(stride, settings.bottleneck_version)
    out_features = width * self.expansion
    self.bn1 = norm(in_features)
    self.conv1 = settings.conv(in_features, width, 1, stride_1x1, rngs=rngs)
    self.bn2 = norm(width)
    self.conv2 = settings.conv(width, width, 3, stride_3x3, rngs=rngs)
    self.bn3 = norm(width)
    self.conv3 = settings.conv(width, out_features, 1, rngs=rngs, zero_init=settings.zero_init_residual)
    self._make_shortcut(in_features, out_features, stride, settings, rngs)

  def parts(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
    pre = self.act(self.bn1(x, train=train))
    y = self.conv1(pre)
    y = self.conv2(self.act(self.bn2(y, train=train)))
    self._record(y)
    y = self.conv3(self.act(self.bn3(y, train=train)))
    return y, _preact_shortcut(self.shortcut, x, pre, train)


def _preact_shortcut(shortcut: Shortcut | None, x: jax.Array, pre: jax.Array, train: bool) -> jax.Array | None:
  if shortcut is None:
    return None
  return shortcut(pre if shortcut.projects else x, train=train)


BLOCKS = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): BottleneckBlock,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneckBlock,
}
