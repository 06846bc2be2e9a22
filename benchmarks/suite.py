"""Benchmark a list of models with `resnet-jax benchmark` and print one markdown table.

  python benchmarks/suite.py                     # CPU sizes: CIFAR batch 128, ImageNet 224 batch 8
  python benchmarks/suite.py --preset gpu --peak-tflops 989 --json-dir runs/bench
  python benchmarks/suite.py --only cifar-resnet20,resnet50 --imagenet-batch 16 --steps 3

Each model runs in its own process (the documented CLI command, printed above the table) on
synthetic data; CIFAR rows use the paper's input side (pad-crop-flip, per-pixel mean) so the
input cost is the real one. Rows run one after another: the load average is in the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR_INPUT = ["--config.data.augment=pad_crop_flip", "--config.data.normalize=pixel_mean"]


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  spec: str
  overrides: tuple[str, ...]
  steps: int

  def command(self, peak_tflops: float | None) -> list[str]:
    peak = ["--peak-tflops", str(peak_tflops)] if peak_tflops else []
    return ["resnet-jax", "benchmark", "--config", self.spec, *self.overrides, "--steps", str(self.steps),
            *peak, "--json"]


PRESETS = {  # CIFAR batch, ImageNet batch, dtype, CIFAR steps per window, ImageNet steps per window
    "cpu": dict(cifar_batch=128, imagenet_batch=8, dtype="float32", cifar_steps=3, imagenet_steps=2),
    "gpu": dict(cifar_batch=128, imagenet_batch=256, dtype="bfloat16", cifar_steps=100, imagenet_steps=30),
}


def rows(cifar_batch: int, imagenet_batch: int, dtype: str, cifar_steps: int, imagenet_steps: int) -> list[Row]:
  """CIFAR ResNet-20/56/110 at 32x32 and ImageNet ResNet-18/50 at 224x224 on synthetic data."""
  cifar = [Row(f"cifar-resnet{d}", f"configs/synthetic.py:family=cifar,depth={d},batch={cifar_batch},dtype={dtype}",
               tuple(CIFAR_INPUT), cifar_steps) for d in (20, 56, 110)]
  imagenet = [Row(f"resnet{d}", f"configs/synthetic.py:family=imagenet,depth={d},image_size=224,"
                                f"batch={imagenet_batch},num_classes=1000,dtype={dtype}", (), imagenet_steps)
              for d in (18, 50)]
  return cifar + imagenet


def _cell(value, fmt: str) -> str:
  return "n/a" if value is None else format(value, fmt)


def markdown(results: list[tuple[Row, dict]]) -> str:
  header = ("| model | image | batch | dtype | params | compile s | train img/s | step ms | eval img/s "
            "| input % of step | train GFLOP/img (XLA) | TFLOP/s | MFU | load 1m |")
  lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
  for row, r in results:
    lines.append(
        f"| {row.name} | {r['image_shape'][0]} | {r['batch_size']} | {r['dtype']} | {r['num_params'] / 1e6:.2f}M "
        f"| {r['train_lower_s'] + r['train_compile_s']:.1f} | {r['train_examples_per_s']:,.1f} "
        f"| {r['train_step_ms']:,.1f} | {r['eval_examples_per_s']:,.1f} | {100 * r['data_fraction_of_train_step']:.1f} "
        f"| {_cell(r['train_flops_per_example_xla'] and r['train_flops_per_example_xla'] / 1e9, '.3f')} "
        f"| {_cell(r['achieved_tflops'], '.3f')} | {_cell(r['mfu'] and 100 * r['mfu'], '.1f')}"
        f"{'%' if r['mfu'] else ''} | {r['load_average_1m'][0]}-{r['load_average_1m'][1]} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  parser.add_argument("--only", default=None, help="comma-separated row names, e.g. cifar-resnet20,resnet50")
  parser.add_argument("--cifar-batch", type=int, default=None)
  parser.add_argument("--imagenet-batch", type=int, default=None)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
  parser.add_argument("--steps", type=int, default=None, help="steps per timed window for every row")
  parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, for MFU")
  parser.add_argument("--json-dir", default=None, help="also write each row's JSON result here")
  args = parser.parse_args()
  preset = dict(PRESETS[args.preset])
  for key in ("cifar_batch", "imagenet_batch", "dtype"):
    preset[key] = getattr(args, key) or preset[key]
  if args.steps:
    preset.update(cifar_steps=args.steps, imagenet_steps=args.steps)
  selected = rows(**preset)
  if args.only:
    names = args.only.split(",")
    unknown = sorted(set(names) - {r.name for r in selected})
    if unknown:
      parser.error(f"--only: unknown rows {unknown}; choose from {[r.name for r in selected]}")
    selected = [r for r in selected if r.name in names]
  results = []
  for row in selected:
    command = row.command(args.peak_tflops)
    print("$", " ".join(command), file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-m", "resnet_jax.cli", *command[1:]], cwd=REPO, check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    result = json.loads(out.strip().splitlines()[-1])
    results.append((row, result))
    if args.json_dir:
      os.makedirs(args.json_dir, exist_ok=True)
      Path(args.json_dir, f"{row.name}.json").write_text(json.dumps(result, indent=1))
  print(markdown(results))


if __name__ == "__main__":
  main()
