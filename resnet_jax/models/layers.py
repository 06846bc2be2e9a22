"""Convolution helpers shared by stems, blocks and shortcuts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# He et al. 2015b initialisation: zero-mean normal with variance 2 / fan_in.
he_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv(
    in_features: int,
    out_features: int,
    kernel: int,
    stride: int = 1,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
    zero_init: bool = False,
) -> nnx.Conv:
  """A bias-free square convolution with symmetric 'same' padding, as in the paper's Caffe nets."""
  pad = kernel // 2
  return nnx.Conv(
      in_features, out_features, (kernel, kernel), strides=stride,
      padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
      kernel_init=nnx.initializers.zeros if zero_init else he_normal, rngs=rngs)


def response_std(y: jax.Array) -> jax.Array:
  """Std of a layer's response per channel (over batch and space), averaged over channels (Fig. 7)."""
  return jnp.std(y.astype(jnp.float32), axis=tuple(range(y.ndim - 1))).mean()
