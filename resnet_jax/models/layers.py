"""Convolution helpers shared by stems, blocks and shortcuts."""

from __future__ import annotations

from typing import Sequence

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


def conv_as_matmul(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
                   precision=None, preferred_element_type=None) -> jax.Array:
  """An NHWC x HWIO convolution as one matrix product over its kh x kw shifted windows (im2col)."""
  kh, kw, in_features, out_features = kernel.shape
  (sh, sw), ((top, bottom), (left, right)) = strides, padding
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  windows = [x[:, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw] for i in range(kh) for j in range(kw)]
  return jax.lax.dot_general(jnp.concatenate(windows, axis=-1), kernel.reshape(kh * kw * in_features, out_features),
                             (((3,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=preferred_element_type)


def conv_general_dilated(lhs, rhs, window_strides, padding, *, lhs_dilation, rhs_dilation, dimension_numbers,
                         feature_group_count, precision, out_sharding=None, preferred_element_type=None):
  """`jax.lax.conv_general_dilated` for `conv`'s layers (NHWC, HWIO), with two XLA:CPU workarounds.

  On CPU, an input smaller than the kernel (3x3 convolutions on the 2x2 maps of the digits' last
  stage) is convolved as `conv_as_matmul`: XLA would swap the operands of that convolution and run
  a generic kernel 10x slower (BENCHMARKS.md). Every other input is first `materialize`d.
  """
  lax_conv = lambda x: jax.lax.conv_general_dilated(
      x, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision,
      out_sharding=out_sharding, preferred_element_type=preferred_element_type)
  if jax.default_backend() != "cpu":
    return lax_conv(lhs)
  plain = max(*lhs_dilation, *rhs_dilation) == 1 and feature_group_count == 1 and out_sharding is None
  if plain and any(size < k for size, k in zip(lhs.shape[1:3], rhs.shape[:2])):
    return conv_as_matmul(lhs, rhs, window_strides, padding, precision, preferred_element_type)
  return lax_conv(materialize(lhs))


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
      kernel_init=nnx.initializers.zeros if zero_init else he_normal,
      conv_general_dilated=conv_general_dilated, rngs=rngs)


def response_std(y: jax.Array) -> jax.Array:
  """Std of a layer's response per channel (over batch and space), averaged over channels (Fig. 7)."""
  return jnp.std(y.astype(jnp.float32), axis=tuple(range(y.ndim - 1))).mean()
