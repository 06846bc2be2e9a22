"""Convolution helpers shared by stems, blocks and shortcuts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# He et al. 2015b initialisation: zero-mean normal with variance 2 / fan_in.
he_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def materialize(x: jax.Array) -> jax.Array:
  """Identity that XLA must write to memory: a conditional whose two branches both return x.

  XLA:CPU otherwise fuses a convolution input's producers (BN, ReLU, residual additions) into
  the transpose that the filter gradient needs, recomputing them in cache-hostile order; this
  made a ResNet-20 step 1.27x and a ResNet-110 step 2.6x slower (BENCHMARKS.md). Exact.
  """
  return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), lambda a, b: a, lambda a, b: b, x, x)


class Conv(nnx.Conv):
  """nnx.Conv that materialises its input on CPU (see `materialize`); unchanged elsewhere."""

  def __call__(self, inputs: jax.Array) -> jax.Array:
    if jax.default_backend() == "cpu":
      inputs = materialize(inputs)
    return super().__call__(inputs)


def conv(
    in_features: int,
    out_features: int,
    kernel: int,
    stride: int = 1,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
    zero_init: bool = False,
) -> Conv:
  """A bias-free square convolution with symmetric 'same' padding, as in the paper's Caffe nets."""
  pad = kernel // 2
  return Conv(
      in_features, out_features, (kernel, kernel), strides=stride,
      padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
      kernel_init=nnx.initializers.zeros if zero_init else he_normal, rngs=rngs)


def response_std(y: jax.Array) -> jax.Array:
  """Std of a layer's response per channel (over batch and space), averaged over channels (Fig. 7)."""
  return jnp.std(y.astype(jnp.float32), axis=tuple(range(y.ndim - 1))).mean()
