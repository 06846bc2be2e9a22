"""Where one sweep member's wall time goes: `resnet-jax train` with a timer around each part.

  python benchmarks/profile_member.py --config configs/digits.py:depth=56,variant=plain,seed=1 \
      --workdir /tmp/prof [--core 0] [--config.train.num_steps=300 ...]

Runs the member as a CPU sweep does (pinned to one core, one XLA device, the compilation cache on) in a
child process, or with --after as a sweep worker runs a later member (after another in the same
process), and prints one row per part: process start (interpreter and the command's imports before
this script's clock starts, from the child's wall time), imports, data (validation, loading,
devices), model build, the first call of each compiled step (tracing and compiling, or loading from
the compilation cache), training steps (the per-layer gradient norms of analysis steps included),
evaluations, checkpoints, metrics and TensorBoard, and what is left (the loop's own host work). Every
training step is waited for, so its compute is counted as training rather than in whichever part next
fetches a value; that drops the loop's overlap of host work with the next step (small on a CPU member).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Timers:
  """Seconds per named part; `first:` parts are the first call of a compiled step."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.calls = collections.Counter()

  @contextlib.contextmanager
  def part(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] += time.perf_counter() - start
      self.calls[name] += 1

  def wrap(self, name: str, fn, block: bool = False, first: str | None = None):
    """`fn` timed under `name` (its first call under `first`, when given); `block` waits for its result."""
    import jax

    def timed(*args, **kwargs):
      part = first if first and not self.calls[first] else name
      with self.part(part):
        out = fn(*args, **kwargs)
        return jax.block_until_ready(out) if block else out
    return timed


def _child(args: argparse.Namespace, overrides: list[str]) -> None:
  """Inside the pinned child: run `train` with every part timed; print the parts as one JSON line."""
  timers, start = Timers(), time.perf_counter()
  with timers.part("imports"):
    from resnet_jax import compilation_cache, cpu_devices
    from resnet_jax.config import load_config
    config = load_config(args.config, overrides)
    cpu_devices.pin_to_cores()
    cpu_devices.configure(None, (config.data.batch_size, config.data.eval_batch_size))
    compilation_cache.configure()
    import dataclasses
    import jax
    from resnet_jax.train import loop, metrics
    from resnet_jax.train.checkpoint import Checkpointer

  if args.after:  # a sweep worker's later member: this process trained another one first (not counted)
    loop.train(load_config(args.after, overrides), args.workdir + "-before")
    timers, start = Timers(), time.perf_counter()
  build_experiment, prepare = loop.build, loop.prepare

  def build(*build_args):
    with timers.part("model build"):
      exp = build_experiment(*build_args)
    return dataclasses.replace(
        exp, train_step=timers.wrap("train steps", exp.train_step, block=True, first="first train step"),
        eval_step=timers.wrap("evaluations", exp.eval_step, block=True, first="first eval batch"))

  loop.prepare = lambda *a: _timed(timers, "data", prepare, *a)
  loop.build = build
  for cls, names, part in ((Checkpointer, ("save", "close", "restore"), "checkpoints"),
                           (metrics.MetricsWriter, ("__init__", "write", "close"), "metrics and TensorBoard")):
    for method in names:
      original = getattr(cls, method)
      setattr(cls, method, (lambda original, part: lambda *a, **k: _timed(timers, part, original, *a, **k))(
          original, part))
  loop.train(config, args.workdir)
  total = time.perf_counter() - start
  parts = dict(timers.seconds)
  parts["loop host work (the rest)"] = total - sum(parts.values())
  print("PROFILE " + json.dumps(dict(parts=parts, calls=dict(timers.calls), in_process=total,
                                     devices=jax.device_count(), cores=cpu_devices.available_cores())), flush=True)


def _timed(timers: Timers, name: str, fn, *args, **kwargs):
  with timers.part(name):
    return fn(*args, **kwargs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--core", default="0", help="the core(s) the member runs on, as a sweep pins it")
  parser.add_argument("--after", metavar="CONFIG", help="first train this config in the same process, uncounted, "
                      "as a sweep worker runs an earlier member (its work directory: WORKDIR-before)")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args, overrides = parser.parse_known_args()
  if args.child:
    return _child(args, overrides)
  env = dict(os.environ, RESNET_JAX_CPU_CORES=args.core, TF_CPP_MIN_LOG_LEVEL="2")
  start = time.perf_counter()
  out = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, cwd=REPO, check=True,
                       capture_output=True, text=True).stdout
  wall = time.perf_counter() - start
  record = json.loads(next(line for line in out.splitlines() if line.startswith("PROFILE "))[len("PROFILE "):])
  parts = {"process start": 0.0 if args.after else wall - record["in_process"], **record["parts"]}
  wall = sum(parts.values())
  after = f", after {args.after} in the same process" if args.after else ""
  print(f"{args.config} {' '.join(overrides)}{after}: {wall:.1f} s, {record['devices']} device(s) on "
        f"{record['cores']} core(s)")
  print("| part | seconds | share | calls |\n|---|---|---|---|")
  for name, seconds in parts.items():
    print(f"| {name} | {seconds:.2f} | {100 * seconds / wall:.0f}% | {record['calls'].get(name, 1)} |")
  print("JSON " + json.dumps(dict(wall=wall, parts=parts)))


if __name__ == "__main__":
  main()
