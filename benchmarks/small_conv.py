"""3x3 convolutions on small maps: XLA's convolution, the shifted-windows matrix product (im2col) and
layers.conv_as_matmul (the dense pixel-to-pixel matrix).

  taskset -c 1 python benchmarks/small_conv.py [--repeats 5] [--calls 20]

XLA:CPU swaps the operands of a 3x3 'same' convolution on 2x2 inputs (the digits' last stage) and runs a
generic kernel; `resnet_jax.models.layers` convolves such inputs as one matrix product instead: first the
im2col product over the 9 shifted windows (1ead06d, kept here as `im2col_conv`), now the product with the
dense matrix of the kernel over all input pixels. For each shape (batch, map size, channels) this times the
three side by side in one process, forward, input gradient and kernel gradient, and prints milliseconds per
call (best of the repeats) with the ratios to the dense product. 4x4 and 8x8 rows show where XLA's own
kernel is not swapped and the library uses it.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.models.layers import conv_as_matmul

SHAPES = ((64, 2, 64), (128, 2, 64), (64, 4, 32), (64, 8, 16))


def xla_conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x, kernel, strides, padding, precision=None, preferred_element_type=None):
  """`layers.conv_as_matmul` from 1ead06d until the dense matrix: one matrix product over the kernel's
  kh x kw shifted windows, concatenated."""
  kh, kw, in_features, out_features = kernel.shape
  (sh, sw), ((top, bottom), (left, right)) = strides, padding
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  windows = [x[:, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw] for i in range(kh) for j in range(kw)]
  return jax.lax.dot_general(jnp.concatenate(windows, axis=-1), kernel.reshape(kh * kw * in_features, out_features),
                             (((3,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=preferred_element_type)


def dense_conv(x, w):
  return conv_as_matmul(x, w, (1, 1), ((1, 1), (1, 1)))


def best_ms(fn, args, repeats: int, calls: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / calls * 1e3)
  return min(times)


def programs(conv):
  loss = lambda x, w: jnp.sum(jnp.square(conv(x, w)))
  return {"forward": jax.jit(conv), "input gradient": jax.jit(jax.grad(loss, 0)),
          "kernel gradient": jax.jit(jax.grad(loss, 1))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--calls", type=int, default=20)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; ms per call, best of {args.repeats} x {args.calls}")
  print("| batch x map x channels | pass | XLA conv ms | im2col ms | dense ms | XLA / dense | im2col / dense |")
  print("|---|---|---|---|---|---|---|")
  same_im2col = lambda x, w: im2col_conv(x, w, (1, 1), ((1, 1), (1, 1)))
  forms = [programs(conv) for conv in (xla_conv, same_im2col, dense_conv)]
  for batch, size, channels in SHAPES:
    x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(0.1 * rng.standard_normal((3, 3, channels, channels)), jnp.float32)
    for name in forms[0]:
      xla, im2col, dense = (best_ms(form[name], (x, w), args.repeats, args.calls) for form in forms)
      print(f"| {batch} x {size}x{size} x {channels} | {name} | {xla:.2f} | {im2col:.2f} | {dense:.2f} | "
            f"{xla / dense:.1f} | {im2col / dense:.1f} |")


if __name__ == "__main__":
  main()
