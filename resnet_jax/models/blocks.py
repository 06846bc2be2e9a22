"""Residual units of He et al. 2015 (post-activation) and He et al. 2016 (pre-activation).

Every block takes `residual`: with False it is the paper's plain twin, the same layers
without the shortcut addition. Downsampling is the stride-2 convolution itself.

Every block's call takes an optional lesion gate `keep` (Veit et al. 2016): 1 runs the block as
trained, 0 deletes its residual branch and keeps the shortcut. It may be traced (many lesion
patterns in one vmapped call); None, the default, adds nothing to the computation.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from resnet_jax.models.layers import conv, response_std, shared_conv_input
from resnet_jax.models.shortcuts import Shortcut

BOTTLENECK_VERSIONS = ("v1", "v1.5")


@dataclasses.dataclass(frozen=True)
class UnitSettings:
  """What every block of a network shares."""
  residual: bool  # False: the plain twin, no shortcut addition
  shortcut: str  # option A, B or C
  norm: Callable[..., nnx.Module]  # BatchNorm factory: norm(features, zero_init_scale=False)
  dtype: jnp.dtype
  zero_init_residual: bool = False
  bottleneck_version: str = "v1"


class _Unit(nnx.Module):
  """Shared plumbing: the optional shortcut and the Fig. 7 response probe."""

  record_responses: bool = False

  def _make_shortcut(self, in_features: int, out_features: int, stride: int, settings: UnitSettings,
                     rngs: nnx.Rngs, preact: bool = False):
    # Pre-activation units project the pre-activated input with a bare 1x1 conv (no BN).
    norm = None if preact else settings.norm
    self.shortcut = (
        Shortcut(in_features, out_features, stride, settings.shortcut, norm=norm, dtype=settings.dtype, rngs=rngs)
        if settings.residual else None)

  def _record(self, y: jax.Array) -> None:
    """Sow the response std of a 3x3 layer when probing is switched on (off: no cost)."""
    if self.record_responses:
      self.sow(nnx.Intermediate, "responses", response_std(y))

  def _add_shortcut(self, branch: jax.Array, x: jax.Array, skip: jax.Array | None,
                    keep: jax.Array | None) -> jax.Array:
    """branch + skip (the shortcut's output; None in a plain block), the branch scaled by the lesion
    gate `keep` when one is given.

    A deleted plain block (keep 0) passes its input on unchanged, the identity its residual twin
    would add; post-activation plain blocks then apply their ReLU to an input that is already a ReLU
    output, so the block is the identity. A plain block that changes the shape has no identity to
    fall back on and cannot be deleted.
    """
    if keep is None:
      return branch if skip is None else branch + skip
    keep = jnp.asarray(keep, branch.dtype)
    if skip is not None:
      return keep * branch + skip
    if branch.shape != x.shape:
      raise ValueError(f"a plain block that maps {x.shape[1:]} to {branch.shape[1:]} cannot be deleted: "
                       "it has no shortcut to keep")
    return keep * branch + (1 - keep) * x


def _stride_positions(stride: int, version: str) -> tuple[int, int]:
  """(1x1 stride, 3x3 stride) of a bottleneck: v1 strides the first 1x1, v1.5 the 3x3."""
  if version not in BOTTLENECK_VERSIONS:
    raise ValueError(f"model.bottleneck_version must be one of {BOTTLENECK_VERSIONS}, got {version!r}")
  return (stride, 1) if version == "v1" else (1, stride)


class BasicBlock(_Unit):
  """Two 3x3 convolutions, BN after each, ReLU after the addition (paper Fig. 2 left)."""

  expansion = 1

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm, dtype = settings.norm, settings.dtype
    self.conv1 = conv(in_features, width, 3, stride, dtype=dtype, rngs=rngs, materialized_input=True)
    self.bn1 = norm(width)
    self.conv2 = conv(width, width, 3, dtype=dtype, rngs=rngs)
    self.bn2 = norm(width, zero_init_scale=settings.zero_init_residual)
    self._make_shortcut(in_features, width, stride, settings, rngs)

  def __call__(self, x: jax.Array, *, train: bool, keep: jax.Array | None = None) -> jax.Array:
    x = shared_conv_input(x)
    y = self.bn1(self.conv1(x), train=train)
    self._record(y)
    y = self.bn2(self.conv2(nnx.relu(y)), train=train)
    self._record(y)
    skip = None if self.shortcut is None else self.shortcut(x, train=train)
    return nnx.relu(self._add_shortcut(y, x, skip, keep))


class BottleneckBlock(_Unit):
  """1x1 reduce, 3x3, 1x1 expand (x4), BN after each, ReLU after the addition (Fig. 5 right)."""

  expansion = 4

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm, dtype = settings.norm, settings.dtype
    stride_1x1, stride_3x3 = _stride_positions(stride, settings.bottleneck_version)
    out_features = width * self.expansion
    self.conv1 = conv(in_features, width, 1, stride_1x1, dtype=dtype, rngs=rngs, materialized_input=True)
    self.bn1 = norm(width)
    self.conv2 = conv(width, width, 3, stride_3x3, dtype=dtype, rngs=rngs)
    self.bn2 = norm(width)
    self.conv3 = conv(width, out_features, 1, dtype=dtype, rngs=rngs)
    self.bn3 = norm(out_features, zero_init_scale=settings.zero_init_residual)
    self._make_shortcut(in_features, out_features, stride, settings, rngs)

  def __call__(self, x: jax.Array, *, train: bool, keep: jax.Array | None = None) -> jax.Array:
    x = shared_conv_input(x)
    y = nnx.relu(self.bn1(self.conv1(x), train=train))
    y = self.bn2(self.conv2(y), train=train)
    self._record(y)
    y = self.bn3(self.conv3(nnx.relu(y)), train=train)
    skip = None if self.shortcut is None else self.shortcut(x, train=train)
    return nnx.relu(self._add_shortcut(y, x, skip, keep))


class PreActBasicBlock(_Unit):
  """BN-ReLU-conv3x3 twice; the shortcut adds to the raw conv output (He et al. 2016).

  A projection shortcut (a bare 1x1 conv) reads the pre-activated input, as in the 2016 paper's code.
  Recorded responses are the 3x3 conv outputs (there is no BN directly after them).
  """

  expansion = 1

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm, dtype = settings.norm, settings.dtype
    self.bn1 = norm(in_features)
    self.conv1 = conv(in_features, width, 3, stride, dtype=dtype, rngs=rngs)
    self.bn2 = norm(width)
    self.conv2 = conv(width, width, 3, dtype=dtype, rngs=rngs, zero_init=settings.zero_init_residual)
    self._make_shortcut(in_features, width, stride, settings, rngs, preact=True)

  def __call__(self, x: jax.Array, *, train: bool, keep: jax.Array | None = None) -> jax.Array:
    pre = nnx.relu(self.bn1(x, train=train))
    y = self.conv1(pre)
    self._record(y)
    y = self.conv2(nnx.relu(self.bn2(y, train=train)))
    self._record(y)
    skip = None if self.shortcut is None else _preact_shortcut(self.shortcut, x, pre, train)
    return self._add_shortcut(y, x, skip, keep)


class PreActBottleneckBlock(_Unit):
  """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), added to the shortcut (He et al. 2016)."""

  expansion = 4

  def __init__(self, in_features: int, width: int, stride: int, settings: UnitSettings, *, rngs: nnx.Rngs):
    norm, dtype = settings.norm, settings.dtype
    stride_1x1, stride_3x3 = _stride_positions(stride, settings.bottleneck_version)
    out_features = width * self.expansion
    self.bn1 = norm(in_features)
    self.conv1 = conv(in_features, width, 1, stride_1x1, dtype=dtype, rngs=rngs)
    self.bn2 = norm(width)
    self.conv2 = conv(width, width, 3, stride_3x3, dtype=dtype, rngs=rngs)
    self.bn3 = norm(width)
    self.conv3 = conv(width, out_features, 1, dtype=dtype, rngs=rngs, zero_init=settings.zero_init_residual)
    self._make_shortcut(in_features, out_features, stride, settings, rngs, preact=True)

  def __call__(self, x: jax.Array, *, train: bool, keep: jax.Array | None = None) -> jax.Array:
    pre = nnx.relu(self.bn1(x, train=train))
    y = self.conv1(pre)
    y = self.conv2(nnx.relu(self.bn2(y, train=train)))
    self._record(y)
    y = self.conv3(nnx.relu(self.bn3(y, train=train)))
    skip = None if self.shortcut is None else _preact_shortcut(self.shortcut, x, pre, train)
    return self._add_shortcut(y, x, skip, keep)


def _preact_shortcut(shortcut: Shortcut, x: jax.Array, pre: jax.Array, train: bool) -> jax.Array:
  return shortcut(pre if shortcut.projects else x, train=train)


BLOCKS = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): BottleneckBlock,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneckBlock,
}
