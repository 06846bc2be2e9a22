"""What XLA:CPU needs to run the network fast: `LAYERS`, the network's layers with three rewrites.

Each rewrite is exact and applies only where XLA:CPU runs the result; a program lowered for a GPU or
TPU (from any host) gets JAX's own operations (BENCHMARKS.md has the measurements):

- Activations are written to memory (`materialize`). Otherwise XLA:CPU fuses a convolution input's
  producers (BN, ReLU, residual additions) into the transposes its gradient needs and recomputes them,
  in cache-hostile order, inside every reader: ResNet-20's train step ran 1.27x and ResNet-110's 2.6x
  slower, and residual-110's compiled 1.4x as long.
- A convolution on a map smaller than its kernel (3x3 on the digits' 2x2 last stage) is one product
  with the dense pixel-to-pixel matrix of the kernel (`conv_as_matmul`): XLA:CPU would swap the
  convolution's operands and run a generic kernel 10x slower.
- The He and LeCun initialisers draw every kernel from one compiled program per distribution instead
  of one per shape (0.2-1.5 s of compile each on a core), with the library's values bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from resnet_jax.models.layers import Layers

# ----------------------------------------------------------------------------------------- materialize


def _write_to_memory(x: jax.Array) -> jax.Array:
  """x through a conditional whose two branches both return it: XLA must write x to memory."""
  return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), lambda a, b: a, lambda a, b: b, x, x)


materialize_p = Primitive("materialize")
materialize_p.def_impl(lambda x: x)
materialize_p.def_abstract_eval(lambda aval: aval)
ad.deflinear2(materialize_p, lambda cotangent, x: [materialize_p.bind(cotangent)])
batching.defvectorized(materialize_p)
mlir.register_lowering(materialize_p, lambda ctx, x: [x])
mlir.register_lowering(materialize_p, mlir.lower_fun(_write_to_memory, multiple_results=False), platform="cpu")


def materialize(x: jax.Array) -> jax.Array:
  """The identity; lowered for a CPU, a value XLA must write to memory (its gradient too)."""
  return materialize_p.bind(x)


def relu(x: jax.Array) -> jax.Array:
  """ReLU whose output XLA:CPU writes to memory once for every reader: the next convolution, its
  gradient, and a residual block's shortcut."""
  return materialize(nnx.relu(x))


# ----------------------------------------------------------------------------------------- convolutions


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
                         feature_group_count, precision, out_sharding=None, preferred_element_type=None):
  """`jax.lax.conv_general_dilated` for the network's layers (NHWC, HWIO); lowered for a CPU, an input
  smaller than the kernel is convolved as `conv_as_matmul`."""
  def lax_conv(lhs, rhs):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision,
        out_sharding=out_sharding, preferred_element_type=preferred_element_type)

  plain = max(*lhs_dilation, *rhs_dilation) == 1 and feature_group_count == 1 and out_sharding is None
  if not (plain and any(size < k for size, k in zip(lhs.shape[1:3], rhs.shape[:2]))):
    return lax_conv(lhs, rhs)
  as_matmul = lambda lhs, rhs: conv_as_matmul(lhs, rhs, window_strides, padding, precision, preferred_element_type)
  return jax.lax.platform_dependent(lhs, rhs, cpu=as_matmul, default=lax_conv)


# ----------------------------------------------------------------------------------------- initialisers

# The smallest draw of the one-program path: every kernel of a CIFAR-family net fits in it.
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
  """Whether the draw runs on a CPU now (a concrete key on CPU devices, unsharded) and element i of
  a draw depends only on the key and i (JAX's partitionable threefry, its default)."""
  impl = jax.random.key_impl(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else None
  return (out_sharding is None and not isinstance(key, jax.core.Tracer)
          and all(device.platform == "cpu" for device in key.devices())
          and jax.config.jax_threefry_partitionable
          and str(impl or jax.config.jax_default_prng_impl) == "threefry2x32")


def _fan_in_scaling(scale: float, distribution: str):
  """`nnx.initializers.variance_scaling(scale, "fan_in", distribution)` bit for bit ("normal" or
  "truncated_normal"); on a CPU a kernel is the first prod(shape) values of one longer draw of a
  power-of-two size, so that one program serves all of a net's kernel shapes."""
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


he_normal = _fan_in_scaling(2.0, "normal")
lecun_normal = _fan_in_scaling(1.0, "truncated_normal")

LAYERS = Layers(conv_general_dilated=conv_general_dilated, conv_init=he_normal, dense_init=lecun_normal, act=relu)
