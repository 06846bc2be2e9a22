"""Convolution helpers shared by stems, blocks and shortcuts."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# The smallest draw of the initialisers' one-program path: every kernel of a CIFAR-family net fits in it.
_MIN_DRAW = 2 ** 16
_TRUNCATED_NORMAL_STD = .87962566103423978  # of a standard normal truncated to (-2, 2), as in variance_scaling


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normals(key: jax.Array, size: int, dtype) -> jax.Array:
  return jax.random.normal(key, (size,), dtype)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _truncated_normals(key: jax.Array, lower, upper, size: int, dtype) -> jax.Array:
  # The bounds are arguments, as in jax.random's own program: folded as constants, erf(bound) may round apart.
  return jax.random.truncated_normal(key, lower, upper, (size,), dtype)


def _one_draw_program(key: jax.Array, out_sharding) -> bool:
  """Whether element i of a draw depends only on the key and i here: JAX's partitionable threefry
  (its default) with a concrete key on CPU, unsharded."""
  impl = jax.random.key_impl(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else None
  return (jax.default_backend() == "cpu" and out_sharding is None and not isinstance(key, jax.core.Tracer)
          and jax.config.jax_threefry_partitionable
          and str(impl or jax.config.jax_default_prng_impl) == "threefry2x32")


def _fan_in_scaling(scale: float, distribution: str):
  """`nnx.initializers.variance_scaling(scale, "fan_in", distribution)` bit for bit ("normal" or
  "truncated_normal"), from one compiled draw program per distribution on CPU.

  With `_one_draw_program`, a kernel is the first prod(shape) values of one longer draw of a power-of-two
  size: one program for all of a net's kernel shapes instead of one per shape (0.2-1.5 s of compile each
  on one core, most of a first run's model build; BENCHMARKS.md). Elsewhere the library's initialiser.
  """
  library = nnx.initializers.variance_scaling(scale, "fan_in", distribution)

  def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32, out_sharding=None) -> jax.Array:
    if not _one_draw_program(key, out_sharding):
      return library(key, shape, dtype, out_sharding)
    size = math.prod(shape)
    variance = jnp.array(scale / (size // shape[-1]), dtype)  # fan_in: all axes but the output channels
    length, dtype = max(_MIN_DRAW, 1 << (size - 1).bit_length()), jnp.dtype(dtype)
    # Scaled outside the draw's program, as variance_scaling does: fused into it, XLA rounds differently.
    if distribution == "normal":
      draw = _normals(key, length, dtype) * jnp.sqrt(variance)
    else:
      stddev = jnp.sqrt(variance) / jnp.array(_TRUNCATED_NORMAL_STD, dtype)
      draw = _truncated_normals(key, -2, 2, length, dtype) * stddev
    return jnp.asarray(np.asarray(draw)[:size].reshape(shape))

  return init


# He et al. 2015b: zero-mean normal with variance 2 / fan_in, for every convolution.
he_normal = _fan_in_scaling(2.0, "normal")
# LeCun normal (truncated, variance 1 / fan_in): nnx.Linear's default, for the classifier.
lecun_normal = _fan_in_scaling(1.0, "truncated_normal")


def materialize(x: jax.Array) -> jax.Array:
  """Identity that XLA must write to memory: a conditional whose two branches both return x.

  XLA:CPU otherwise fuses a convolution input's producers (BN, ReLU, residual additions) into
  the transpose that the filter gradient needs, recomputing them in cache-hostile order; this
  made a ResNet-20 step 1.27x and a ResNet-110 step 2.6x slower (BENCHMARKS.md). Exact.
  """
  return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), lambda a, b: a, lambda a, b: b, x, x)


def shared_conv_input(x: jax.Array) -> jax.Array:
  """On CPU, `materialize` a block's input once for every reader: its first convolution (built with
  `materialized_input=True`) and its shortcut. Elsewhere the identity.

  Given the unmaterialized input, XLA:CPU's fusion recomputes the residual stream (BN, additions,
  ReLUs of the blocks before) inside each reader, the gradient's included: residual-110's train step
  compiled 1.4x and ran 1.15x as long (BENCHMARKS.md). Exact.
  """
  return materialize(x) if jax.default_backend() == "cpu" else x


@functools.lru_cache(maxsize=None)
def _taps(in_hw: tuple[int, int], kernel_hw: tuple[int, int], strides: tuple[int, int],
          padding: tuple[tuple[int, int], tuple[int, int]]) -> tuple[np.ndarray, int, int]:
  """taps[p, i, t] = 1 where output pixel p reads input pixel i through kernel tap t; the output size."""
  (h, w), (kh, kw), (sh, sw), ((top, bottom), (left, right)) = in_hw, kernel_hw, strides, padding
  out_h, out_w = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
  taps = np.zeros((out_h * out_w, h * w, kh * kw), np.float32)
  for p, (oi, oj) in enumerate(np.ndindex(out_h, out_w)):
    for t, (di, dj) in enumerate(np.ndindex(kh, kw)):
      i, j = oi * sh + di - top, oj * sw + dj - left
      if 0 <= i < h and 0 <= j < w:
        taps[p, i * w + j, t] = 1.0
  taps.flags.writeable = False  # cached: shared by every call
  return taps, out_h, out_w


def conv_as_matmul(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
                   precision=None, preferred_element_type=None) -> jax.Array:
  """An NHWC x HWIO convolution as one matrix product: the flattened image times the dense matrix that
  maps every input pixel to every output pixel (each entry a kernel tap or zero).

  Meant for maps no larger than the kernel, where that matrix is small (2x2 maps, 3x3 kernels: 4x4
  pixel pairs against 9 taps). The dense matrix is `taps x kernel`, exact since each pixel pair has
  at most one tap; its gradient flows back to the kernel through the same product.
  """
  batch, h, w, in_features = x.shape
  kh, kw, _, out_features = kernel.shape
  taps, out_h, out_w = _taps((h, w), (kh, kw), tuple(strides), tuple(map(tuple, padding)))
  dense = jnp.einsum("pit,tco->icpo", jnp.asarray(taps, kernel.dtype),
                     kernel.reshape(kh * kw, in_features, out_features))
  y = jax.lax.dot_general(x.reshape(batch, h * w * in_features), dense.reshape(h * w * in_features, -1),
                          (((1,), (0,)), ((), ())), precision=precision, preferred_element_type=preferred_element_type)
  return y.reshape(batch, out_h, out_w, out_features)


def conv_general_dilated(lhs, rhs, window_strides, padding, *, lhs_dilation, rhs_dilation, dimension_numbers,
                         feature_group_count, precision, out_sharding=None, preferred_element_type=None,
                         materialized_input: bool = False):
  """`jax.lax.conv_general_dilated` for `conv`'s layers (NHWC, HWIO), with two XLA:CPU workarounds.

  On CPU, an input smaller than the kernel (3x3 convolutions on the 2x2 maps of the digits' last
  stage) is convolved as `conv_as_matmul`: XLA would swap the operands of that convolution and run
  a generic kernel 10x slower (BENCHMARKS.md). Every other input is first `materialize`d, unless
  its producer did (`materialized_input`, `shared_conv_input`).
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
  return lax_conv(lhs if materialized_input else materialize(lhs))


# One object for every such layer: it is part of the model's graphdef, which keys jit's caches.
_conv_of_materialized_input = functools.partial(conv_general_dilated, materialized_input=True)


def conv(
    in_features: int,
    out_features: int,
    kernel: int,
    stride: int = 1,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
    zero_init: bool = False,
    materialized_input: bool = False,
) -> nnx.Conv:
  """A bias-free square convolution with symmetric 'same' padding, as in the paper's Caffe nets.

  `materialized_input`: its caller passes `shared_conv_input`'s output (see there).
  """
  pad = kernel // 2
  return nnx.Conv(
      in_features, out_features, (kernel, kernel), strides=stride,
      padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
      kernel_init=nnx.initializers.zeros if zero_init else he_normal,
      conv_general_dilated=_conv_of_materialized_input if materialized_input else conv_general_dilated,
      rngs=rngs)


def response_std(y: jax.Array) -> jax.Array:
  """Std of a layer's response per channel (over batch and space), averaged over channels (Fig. 7)."""
  return jnp.std(y.astype(jnp.float32), axis=tuple(range(y.ndim - 1))).mean()
