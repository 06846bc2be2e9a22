"""StableHLO operations of the trainer's real train step lowered for cpu, cuda and tpu, on this process's devices.

  python benchmarks/lowered_ops.py                                    # one device
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/lowered_ops.py

What a CPU host builds for each platform (tests/test_accelerator_programs.py checks the accelerators' programs):
per config, the count of `stablehlo.case` (conditionals: XLA:CPU's materialised activations, or a choice by platform
on a constant index), `convolution` and `dot_general`. Runs at any commit whose loop.setup and jitted steps exist.
"""

from __future__ import annotations

import collections
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {  # name: (config, overrides)
    "digits ResNet-20 (8 px, 2x2 maps)": ("configs/digits.py:depth=20", []),
    "CIFAR ResNet-56 (32 px)": ("configs/synthetic.py:depth=56,batch=128,dtype=float32", []),
}


def main() -> None:
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, REPO)
  import jax
  from resnet_jax.config import load_config
  from resnet_jax.train.loop import setup

  print(f"{jax.device_count()} device(s)\n")
  print("| config | lowered for | case | convolution | dot_general |\n|---|---|---|---|---|")
  for name, (spec, overrides) in CONFIGS.items():
    path, _, arg = spec.partition(":")
    exp = setup(load_config(os.path.join(REPO, path) + ":" + arg, overrides))
    traced = exp.train_step.trace(exp.state, next(exp.inputs.train_batches(0)))
    for platform in ("cpu", "cuda", "tpu"):
      ops = collections.Counter(re.findall(r"stablehlo\.(\w+)", traced.lower(lowering_platforms=(platform,)).as_text()))
      print(f"| {name} | {platform} | {ops['case']} | {ops['convolution']} | {ops['dot_general']} |", flush=True)


if __name__ == "__main__":
  main()
