"""One training setup as a worker for interleave.py: build, compile, warm up, then time windows on request.

  python benchmarks/worker.py jax --config configs/synthetic.py:depth=20 [--scan 4]
  python benchmarks/worker.py --cpus 1 torch --depth 20 --batch 128 [--compile] [--channels-last]

Protocol: one line `ready key=value ...` after warm-up; then for each line `N` on stdin it runs
N training steps and answers `seconds=S cpu=C` (C: process CPU seconds over wall seconds, i.e.
how many cores the step kept busy). End of input ends the worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

WARMUP_STEPS = 3


def _jax_step(args) -> tuple[Callable[[int], Any], dict[str, Any]]:
  from resnet_jax import cpu_devices
  from resnet_jax.config import load_config

  config = load_config(args.config, [])
  cpu_devices.configure(args.cpu_devices, (config.data.batch_size, config.data.eval_batch_size))  # before JAX starts
  import jax

  from resnet_jax.train.loop import setup

  exp = setup(config)
  step = exp.train_step
  if args.scan > 1:
    body = lambda state, _: (exp.train_step(state, exp.data)[0], None)
    step = jax.jit(lambda state, data: (jax.lax.scan(body, state, length=args.scan)[0], None),
                   donate_argnums=0)
  start = time.perf_counter()
  holder = [jax.block_until_ready(step(exp.state, exp.data)[0])]
  compile_s = time.perf_counter() - start

  def run(n: int):
    for _ in range(n // args.scan):
      holder[0], _ = step(holder[0], exp.data)
    return jax.block_until_ready(holder[0])

  return run, dict(framework="jax", jax=jax.__version__, cpus=len(os.sched_getaffinity(0)), devices=jax.device_count(),
                   compile_s=round(compile_s, 1),
                   xla_flags=os.environ.get("XLA_FLAGS", "").replace(" ", ","))


def _torch_step(args) -> tuple[Callable[[int], Any], dict[str, Any]]:
  import torch

  sys.path.insert(0, str(Path(__file__).parent))
  from torch_resnet import CifarResNet, make_optimizer, train_step_fn

  torch.manual_seed(0)
  model = CifarResNet(args.depth)
  images = torch.randn(args.batch, 3, args.image_size, args.image_size)
  labels = torch.randint(0, 10, (args.batch,))
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  step = train_step_fn(model, make_optimizer(model))
  if args.compile:
    step = torch.compile(step)
  start = time.perf_counter()
  step(images, labels)
  compile_s = time.perf_counter() - start

  def run(n: int):
    for _ in range(n):
      loss = step(images, labels)
    return loss.item()

  return run, dict(framework="torch", torch=torch.__version__, threads=torch.get_num_threads(),
                   cpus=len(os.sched_getaffinity(0)),
                   compile_s=round(compile_s, 1))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cpus", type=int, default=None,
                      help="pin the process to the first N CPUs (both frameworks size their thread pools by it)")
  frameworks = parser.add_subparsers(dest="framework", required=True)
  jax_parser = frameworks.add_parser("jax")
  jax_parser.add_argument("--config", default="configs/synthetic.py:family=cifar,depth=20,batch=128")
  jax_parser.add_argument("--scan", type=int, default=1, help="train steps per compiled call (lax.scan)")
  jax_parser.add_argument("--cpu-devices", default="auto", help="XLA CPU devices: auto (one per core) or N")
  jax_parser.set_defaults(build=_jax_step)
  torch_parser = frameworks.add_parser("torch")
  torch_parser.add_argument("--depth", type=int, default=20)
  torch_parser.add_argument("--batch", type=int, default=128)
  torch_parser.add_argument("--image-size", type=int, default=32)
  torch_parser.add_argument("--compile", action="store_true", help="torch.compile the train step")
  torch_parser.add_argument("--channels-last", action="store_true")
  torch_parser.set_defaults(build=_torch_step)
  return parser


def main() -> None:
  args = _parser().parse_args()
  if args.cpus:
    os.sched_setaffinity(0, set(range(args.cpus)))
  run, info = args.build(args)
  run(WARMUP_STEPS * getattr(args, "scan", 1))
  print("ready", *(f"{k}={v}" for k, v in info.items()), flush=True)
  for line in sys.stdin:
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    run(int(line))
    wall = time.perf_counter() - wall_start
    print(f"seconds={wall} cpu={(time.process_time() - cpu_start) / wall:.2f}", flush=True)


if __name__ == "__main__":
  main()
