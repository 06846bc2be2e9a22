"""Train-step compile time and step time of five ways to run a CIFAR-family net's blocks on XLA:CPU.

  python benchmarks/cpu_blocks.py [--nets plain-56,residual-56] [--modes unshared,shared,scan] \
      [--repeats 2] [--core 1]

  unshared  as before `layers.shared_conv_input`: a block's first convolution reads its own
            materialized copy of the block input, the shortcut the unmaterialized input
  shared    what the library runs: one materialized input for both
  scan      shared, and a stage's identical blocks after its first as one `lax.scan` over their
            stacked variables (`nnx.split` / `nnx.merge` per block, so the parameter layout is
            unchanged), with stride-1 convolutions whose gradients are NHWC x HWIO convolutions
            (`same_conv`: XLA:CPU runs lax's own gradient convolutions inside a loop body with a
            generic kernel, 30x slower)
  bn_vjp    shared, and training-mode BatchNorm (whole-batch statistics) with a hand-written backward
            pass (`_batchnorm_train`): fewer operations to fuse and compile; not bit-identical
  im2col    shared, with the convolutions on maps smaller than the kernel as the library ran them
            before the dense pixel-to-pixel matrix: the product over 9 concatenated shifted windows
            (`small_conv.im2col_conv`); the same sums in another order

Each measurement is `resnet_jax.benchmark.run_benchmark` (what `resnet-jax benchmark` prints) of the
digits config at the digits study's batch 64, in a new process pinned to one core, with one XLA
device and no compilation cache; the modes alternate, so they share the machine's state. Prints per
net the median lower + compile seconds and train step milliseconds of each mode, with its ratio to
the first mode.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("unshared", "shared", "scan", "bn_vjp", "im2col")


def _child(net: str, mode: str, steps: int, windows: int) -> None:
  from resnet_jax.benchmark import run_benchmark
  from resnet_jax.config import load_config
  from resnet_jax.models import blocks, layers
  from resnet_jax.models.batchnorm import BatchNorm
  from resnet_jax.models.resnet import ResNet

  variant, depth = net.rsplit("-", 1)
  config = load_config(os.path.join(REPO, f"configs/digits.py:depth={depth},variant={variant}"), [])
  config.data.batch_size = 64
  if mode == "unshared":
    blocks.BasicBlock.__call__ = _unshared_call
  if mode == "scan":
    _route_stride_1_convs_to_same_conv()
    ResNet.__call__ = _scanned_call
  if mode == "bn_vjp":
    BatchNorm.__call__ = functools.partialmethod(_batchnorm_call, library_call=BatchNorm.__call__)
  if mode == "im2col":
    from small_conv import im2col_conv
    layers.conv_as_matmul = im2col_conv
  result = run_benchmark(config, steps=steps, windows=windows)
  print(json.dumps(dict(net=net, mode=mode, compile_s=result["train_lower_s"] + result["train_compile_s"],
                        step_ms=result["train_step_ms"])))


def _unshared_call(self, x, *, train: bool, keep=None):
  """`BasicBlock.__call__` before `shared_conv_input`."""
  from flax import nnx

  from resnet_jax.models.layers import materialize

  y = self.bn1(self.conv1(materialize(x)), train=train)
  y = self.bn2(self.conv2(nnx.relu(y)), train=train)
  skip = None if self.shortcut is None else self.shortcut(x, train=train)
  return nnx.relu(self._add_shortcut(y, x, skip, keep))


def _scanned_call(self, x, *, train: bool):
  """`ResNet.__call__` with each stage's blocks after the first as one `lax.scan`."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  x = self.apply_stem(x, train=train)
  for stage in self.stages:
    x = stage[0](x, train=train)
    rest = list(stage[1:])
    graphdefs, states = zip(*(nnx.split(block) for block in rest))
    assert len(set(graphdefs)) == 1, "a stage's later blocks differ"

    def body(x, state, graphdef=graphdefs[0]):
      block = nnx.merge(graphdef, state)
      return block(x, train=train), nnx.state(block, nnx.BatchStat) if train else None

    x, updates = jax.lax.scan(body, x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *states))
    if train:
      for index, block in enumerate(rest):
        nnx.update(block, jax.tree.map(lambda leaf: leaf[index], updates))
  return self.classify(x, train=train)


def _batchnorm_call(self, x, *, train: bool, library_call):
  """`BatchNorm.__call__` with `_batchnorm_train` in training mode (whole-batch statistics only);
  `library_call` otherwise."""
  import jax
  import jax.numpy as jnp

  if not train or self.group_size not in (None, x.shape[0]):
    return library_call(self, x, train=train)
  y, mean, var = _batchnorm_train()(x.astype(jnp.float32), self.scale[...], self.bias[...], self.epsilon)
  m = self.momentum
  self.mean[...] = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
  self.var[...] = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var)
  return y.astype(self.dtype)


@functools.cache
def _batchnorm_train():
  """(y, batch mean, batch variance) of x normalised over all axes but the last, with the textbook
  backward: dx = scale * rstd / n * (n * dy - sum(dy) - xhat * sum(dy * xhat))."""
  import jax
  import jax.numpy as jnp

  @functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
  def batchnorm(x, scale, bias, epsilon):
    return forward(x, scale, bias, epsilon)[0]

  def forward(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    rstd = jax.lax.rsqrt(var + epsilon)
    xhat = (x - mean) * rstd
    return (xhat * scale + bias, mean, var), (xhat, rstd, scale)

  def backward(epsilon, residuals, cotangents):
    xhat, rstd, scale = residuals
    dy = cotangents[0]  # the batch statistics feed only the running averages: no cotangent
    axes = tuple(range(dy.ndim - 1))
    n = dy.size // dy.shape[-1]
    dbias, dscale = dy.sum(axes), (dy * xhat).sum(axes)
    dx = (scale * rstd / n) * (n * dy - dbias - xhat * dscale)
    return dx, dscale, dbias

  batchnorm.defvjp(forward, backward)
  return batchnorm


def _route_stride_1_convs_to_same_conv() -> None:
  """Make `jax.lax.conv_general_dilated` (which the library's layers call) use `same_conv` for
  stride-1, symmetrically padded NHWC x HWIO convolutions."""
  import jax
  import jax.numpy as jnp

  lax_conv = jax.lax.conv_general_dilated
  nhwc = ("NHWC", "HWIO", "NHWC")

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def same_conv(x, kernel, pad):
    return lax_conv(x, kernel, (1, 1), [(p, p) for p in pad], dimension_numbers=nhwc)

  def forward(x, kernel, pad):
    return same_conv(x, kernel, pad), (x, kernel)

  def backward(pad, residuals, dy):
    x, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = lax_conv(dy, flipped, (1, 1), [(k - 1 - p, p) for k, p in zip(kernel.shape[:2], pad)],
                  dimension_numbers=nhwc)
    # dkernel[i, j, c, o] = sum over n, h, w of padded x[n, h + i, w + j, c] * dy[n, h, w, o]
    dkernel = lax_conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), [(p, p) for p in pad],
                       dimension_numbers=nhwc)
    return dx, dkernel.transpose(1, 2, 0, 3)

  same_conv.defvjp(forward, backward)

  def routed(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
             feature_group_count=1, **kwargs):
    simple = (tuple(window_strides) == (1, 1) and not isinstance(padding, str)
              and all(low == high for low, high in padding) and feature_group_count == 1
              and all(d in (None, (1, 1)) for d in (lhs_dilation, rhs_dilation))
              and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, nhwc)
              and kwargs.get("preferred_element_type") is None and kwargs.get("out_sharding") is None)
    if simple:
      return same_conv(lhs, rhs, tuple(low for low, _ in padding))
    return lax_conv(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                    dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, **kwargs)

  jax.lax.conv_general_dilated = routed


def _measure(net: str, mode: str, args: argparse.Namespace) -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_ENABLE_COMPILATION_CACHE="0",
             JAX_PLATFORMS="cpu")
  command = ["taskset", "-c", str(args.core), sys.executable, __file__, "--child", net, mode, str(args.steps),
             str(args.windows)]
  out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
  return json.loads(out.strip().splitlines()[-1])


def main() -> None:
  if len(sys.argv) > 1 and sys.argv[1] == "--child":
    _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    return
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nets", default="plain-20,residual-20,plain-56,residual-56,residual-110")
  parser.add_argument("--modes", default=",".join(MODES))
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--steps", type=int, default=10, help="timed train steps per window")
  parser.add_argument("--windows", type=int, default=5)
  parser.add_argument("--core", type=int, default=1)
  args = parser.parse_args()
  modes = args.modes.split(",")
  print(f"load average {os.getloadavg()[0]:.2f}; digits, batch 64, one core (taskset -c {args.core}), "
        f"median of {args.repeats} processes, each the median of {args.windows} windows of {args.steps} steps")
  print(f"{'net':<14}{'mode':<10}{'compile s':>10}{'ratio':>7}{'step ms':>9}{'ratio':>7}")
  for net in args.nets.split(","):
    rows = {mode: [] for mode in modes}
    for _ in range(args.repeats):
      for mode in modes:
        rows[mode].append(_measure(net, mode, args))
    med = {mode: {key: statistics.median(r[key] for r in rows[mode]) for key in ("compile_s", "step_ms")}
           for mode in modes}
    base = med[modes[0]]
    for mode in modes:
      print(f"{net:<14}{mode:<10}{med[mode]['compile_s']:>10.1f}{med[mode]['compile_s'] / base['compile_s']:>7.2f}"
            f"{med[mode]['step_ms']:>9.1f}{med[mode]['step_ms'] / base['step_ms']:>7.2f}", flush=True)
  print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
  main()
