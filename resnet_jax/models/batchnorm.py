"""BatchNorm with explicit statistics semantics: whole batch or groups of examples.

The paper trained with BN statistics computed per GPU (32 images on ImageNet).
`group_size` reproduces that inside the module, so a run gives the same result on
1 device or 8: the groups are fixed by example index, not by device placement.
Statistics and parameters are float32 whatever the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BatchNorm(nnx.Module):
  """Batch normalisation over the batch, or over consecutive groups of `group_size` examples.

  Running averages follow Flax's convention: new = momentum * old + (1 - momentum) * batch
  (PyTorch's momentum 0.1 is 0.9 here). Variances are biased (divide by the count).
  """

  def __init__(
      self,
      features: int,
      *,
      momentum: float = 0.9,
      epsilon: float = 1e-5,
      group_size: int | None = None,
      zero_init_scale: bool = False,
      dtype: jnp.dtype = jnp.float32,
  ):
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if epsilon <= 0:
      raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if group_size is not None and group_size < 1:
      raise ValueError(f"group_size must be a positive integer or None, got {group_size}")
    init_scale = jnp.zeros if zero_init_scale else jnp.ones
    self.scale = nnx.Param(init_scale((features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
    self.momentum = momentum
    self.epsilon = epsilon
    self.group_size = group_size
    self.dtype = dtype

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x32 = x.astype(jnp.float32)
    if train:
      groups = self._grouped(x32)
      reduce_axes = tuple(range(1, groups.ndim - 1))
      mean = groups.mean(reduce_axes, keepdims=True)
      var = jnp.square(groups - mean).mean(reduce_axes, keepdims=True)  # two-pass: exact for large means
      m = self.momentum
      # set_value, not `self.mean[...] =`: Flax's indexed assignment asks the traced value for its
      # sharding, and JAX's error for that scans the whole trace so far (residual-110's train step
      # traced and lowered in 4.5-4.9 s instead of 2.7-2.8; the program is the same; BENCHMARKS.md).
      self.mean.set_value(m * self.mean[...] + (1 - m) * mean.mean(0).reshape(-1))
      self.var.set_value(m * self.var[...] + (1 - m) * var.mean(0).reshape(-1))
    else:
      groups, mean, var = x32, self.mean[...], self.var[...]
    # Normalisation and affine folded into one multiply-add: fewer elementwise ops for XLA to
    # fuse and recompute (1.14x faster ResNet-20 training step on CPU, BENCHMARKS.md).
    scale = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
    return (groups * scale + (self.bias[...] - mean * scale)).reshape(x.shape).astype(self.dtype)

  def _grouped(self, x: jax.Array) -> jax.Array:
    """Reshape (B, ...) to (num_groups, group, ...)."""
    batch = x.shape[0]
    size = self.group_size or batch
    if batch % size:
      raise ValueError(f"group_size {size} must divide the batch of {batch}")
    return x.reshape(batch // size, size, *x.shape[1:])
