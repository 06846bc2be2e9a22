"""resnet-jax against the same CIFAR ResNet in PyTorch, side by side on this machine.

  pip install -e '.[bench]'          # benchmark-only extra (torch==2.14.1); see BENCHMARKS.md
  python benchmarks/compare_torch.py                       # ResNet-20, batch 128
  python benchmarks/compare_torch.py --depth 56 --steps 4 --windows 7 --no-compile --cpus 1

Setups: resnet-jax's compiled train step as `train` runs it; PyTorch eager (NCHW and
channels-last) and torch.compile. One worker process per setup, windows interleaved
(interleave.py); the table gives median examples/s and each setup's speed as a ratio to
PyTorch eager.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from interleave import Result, Setup, run_interleaved


def setups(depth: int, batch: int, compile_torch: bool, cpus: int | None) -> list[Setup]:
  spec = f"configs/synthetic.py:family=cifar,depth={depth},batch={batch}"
  pin = ["--cpus", str(cpus)] if cpus else []
  torch_args = [*pin, "torch", "--depth", str(depth), "--batch", str(batch)]
  chosen = [Setup("resnet-jax, 1 CPU device", [*pin, "jax", "--config", spec, "--cpu-devices", "1"]),
            Setup("resnet-jax", [*pin, "jax", "--config", spec])]  # default: one XLA device per core
  chosen += [Setup("torch eager", torch_args), Setup("torch eager channels-last", [*torch_args, "--channels-last"])]
  if compile_torch:
    chosen.append(Setup("torch.compile", [*torch_args, "--compile"]))
  return chosen


def table(results: list[Result], reference: str) -> str:
  """Median and best window of each setup, as img/s and as a ratio to `reference`.

  The best window approximates an idle machine: under load PyTorch's OpenMP teams lose far
  more than XLA's work-stealing pool, so the two ratios can differ a lot.
  """
  base = next(r for r in results if r.setup.name == reference)
  lines = ["| setup | img/s median | img/s best | windows | cores busy | ratio median | ratio best |",
           "|---|---|---|---|---|---|---|"]
  for r in results:
    lines.append(f"| {r.setup.name} | {r.median:,.1f} | {max(r.rates):,.1f} | {', '.join(f'{x:.0f}' for x in r.rates)} "
                 f"| {statistics.median(r.cores):.2f} | {r.median / base.median:.2f} "
                 f"| {max(r.rates) / max(base.rates):.2f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--depth", type=int, default=20)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=8, help="train steps per window")
  parser.add_argument("--windows", type=int, default=5, help="rounds; every setup runs one window per round")
  parser.add_argument("--no-compile", dest="compile", action="store_false", help="leave out torch.compile")
  parser.add_argument("--cpus", type=int, default=None, help="pin every worker to the first N CPUs")
  args = parser.parse_args()
  chosen = setups(args.depth, args.batch, args.compile, args.cpus)
  results, loads = run_interleaved(chosen, args.steps, args.windows, args.batch)
  print(f"$ python {' '.join(sys.argv)}")
  for r in results:
    print(f"#  {r.setup.name}: {r.setup.command()}  ({r.info})")
  print(f"CIFAR ResNet-{args.depth}, batch {args.batch}, {args.steps} steps x {args.windows} windows, "
        f"CPUs {args.cpus or os.cpu_count()}, 1-minute load {min(loads):.1f}-{max(loads):.1f}\n")
  print(table(results, "torch eager"))


if __name__ == "__main__":
  main()
