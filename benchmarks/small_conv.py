"""3x3 convolutions on maps no larger than the kernel: XLA's convolution against layers.conv_as_matmul.

  taskset -c 1 python benchmarks/small_conv.py [--repeats 5] [--calls 20]

XLA:CPU swaps the operands of a 3x3 'same' convolution on 2x2 inputs (the digits' last stage) and runs a
generic kernel; `resnet_jax.models.layers` convolves such inputs as one matrix product instead. For each
shape (batch, map size, channels) this times both, side by side in one process, forward, input gradient
and kernel gradient, and prints milliseconds per call (best of the repeats) with the ratio. 4x4 and 8x8
rows show where XLA's own kernel is not swapped and the matrix product is not used.
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


def matmul_conv(x, w):
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
  print("| batch x map x channels | pass | XLA conv ms | matmul ms | XLA / matmul |")
  print("|---|---|---|---|---|")
  xla, matmul = programs(xla_conv), programs(matmul_conv)
  for batch, size, channels in SHAPES:
    x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(0.1 * rng.standard_normal((3, 3, channels, channels)), jnp.float32)
    for name in xla:
      a, b = best_ms(xla[name], (x, w), args.repeats, args.calls), best_ms(matmul[name], (x, w), args.repeats, args.calls)
      print(f"| {batch} x {size}x{size} x {channels} | {name} | {a:.2f} | {b:.2f} | {a / b:.1f} |")


if __name__ == "__main__":
  main()
