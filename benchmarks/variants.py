"""Prototypes of library changes, patched into a worker process so they can be timed side by side.

Each variant replaces one method of resnet_jax's BatchNorm or Flax's Conv for the life of the
process; the library never imports this module. Measured effects are in BENCHMARKS.md.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from resnet_jax.models.batchnorm import BatchNorm

_original_bn = BatchNorm.__call__
_original_conv = nnx.Conv.__call__


def _bn_folded(self: BatchNorm, x: jax.Array, *, train: bool, one_pass: bool) -> jax.Array:
  """Training-mode BN as one x * a + b per element (a, b per channel) instead of (x - m) * r * g + b.

  one_pass: variance as E[x^2] - E[x]^2 (clamped at 0, Flax's default `use_fast_variance`)
  instead of E[(x - E[x])^2].
  """
  if not train:
    return _original_bn(self, x, train=train)
  groups = self._grouped(x.astype(jnp.float32))
  axes = tuple(range(1, groups.ndim - 1))
  mean = groups.mean(axes, keepdims=True)
  if one_pass:
    var = jnp.maximum(jnp.square(groups).mean(axes, keepdims=True) - jnp.square(mean), 0.0)
  else:
    var = jnp.square(groups - mean).mean(axes, keepdims=True)
  scale = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
  y = (groups * scale + (self.bias[...] - mean * scale)).reshape(x.shape)
  m = self.momentum
  self.mean[...] = m * self.mean[...] + (1 - m) * mean.mean(0).reshape(-1)
  self.var[...] = m * self.var[...] + (1 - m) * var.mean(0).reshape(-1)
  return y.astype(self.dtype)


def materialize(x: jax.Array) -> jax.Array:
  """The identity, as a buffer XLA cannot fuse through: a conditional whose branches both return x.

  The predicate is read at run time, so XLA folds neither the conditional nor its branches
  (identical branches, a constant predicate and optimization_barrier are all simplified away).
  """
  return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), lambda a, b: a, lambda a, b: b, x, x)


def _conv_input_materialized(self: nnx.Conv, inputs: jax.Array, out_sharding=None) -> jax.Array:
  """Convolve a materialised input.

  XLA:CPU fuses the elementwise producers of a conv input (BN, ReLU, the residual chain back to
  the stage's first block) into the transpose that the filter gradient needs; that fused
  transpose reads 5-20 tensors in a cache-hostile order. From a buffer it is a plain copy.
  """
  return _original_conv(self, materialize(inputs), out_sharding)


def _conv_input_barrier(self: nnx.Conv, inputs: jax.Array, out_sharding=None) -> jax.Array:
  """The same intent with optimization_barrier: XLA:CPU expands the barrier before fusion (no effect)."""
  return _original_conv(self, jax.lax.optimization_barrier(inputs), out_sharding)


VARIANTS: dict[str, tuple[type, str, Callable]] = {
    "bn_folded": (BatchNorm, "__call__", functools.partialmethod(_bn_folded, one_pass=False)),
    "bn_one_pass": (BatchNorm, "__call__", functools.partialmethod(_bn_folded, one_pass=True)),
    "conv_input_materialized": (nnx.Conv, "__call__", _conv_input_materialized),
    "conv_input_barrier": (nnx.Conv, "__call__", _conv_input_barrier),
}


def use(names: list[str]) -> None:
  """Patch the named variants in (for this process)."""
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise ValueError(f"unknown variants {unknown}: choose from {sorted(VARIANTS)}")
  for name in names:
    owner, attribute, replacement = VARIANTS[name]
    setattr(owner, attribute, replacement)
