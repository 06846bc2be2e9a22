"""The README's digits study (experiments/digits.py) as a plain single-threaded PyTorch script.

  python benchmarks/digits_torch.py --jobs 2 --out /tmp/digits_torch    # all 12 members
  python benchmarks/digits_torch.py --steps 4 --only depth=20,variant=residual,seed=0 --jobs 1

For comparing wall time with `resnet-jax sweep experiments/digits.py`: the same members (plain and
residual, 20 and 56 layers, seeds 0-2), data and recipe, in eager PyTorch, one thread per member,
`--jobs` members at once, each pinned to its own core, the first seed of every member first.

Data as resnet_jax/data/sources.py: scikit-learn digits scaled to uint8, a RandomState(0) shuffle,
1500 train / 297 test; the training images' per-pixel mean subtracted (no division by std); zero-pad
1 pixel and crop 8x8 at random, no flips; each epoch a fresh permutation, its last partial batch
dropped. Recipe as configs/digits.py with the study's overrides: batch 64, 300 iterations, SGD
momentum 0.9, weight decay 1e-4 on conv and dense weights only, lr ramped linearly from 0 at
iteration 0 towards 0.05 over 50 iterations, then 0.05, /10 at 50% and 75% of the run.
Every 25 iterations and at the end: the test error over the 297 test digits (BN in eval mode) and
the training error as resnet-jax logs it, the mean of the per-batch errors (train mode, augmented,
before that batch's update) over the iterations since the last log. The final training error is
that of the last 25 iterations, as in the report's table.

Differences from resnet-jax: PyTorch's own random streams (init, order, crops); the dense layer keeps
PyTorch's default init (resnet-jax: LeCun normal weights, zero bias); BN running variances are
unbiased (resnet-jax: biased); no per-layer gradient norms at iterations 0 and 150, no checkpoints.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import torch_resnet

GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0, 1, 2]}
TEST_SIZE = 297
BATCH_SIZE, EVAL_BATCH_SIZE, PAD = 64, 128, 1
LEARNING_RATE, WARMUP_STEPS, DECAY_FRACTIONS, DECAY_FACTOR = 0.05, 50, (0.5, 0.75), 0.1
EVAL_EVERY = 25


def load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train images, train labels, test images, test labels): uint8 [N, 1, 8, 8] and int64 [N]."""
  from sklearn.datasets import load_digits as sklearn_digits
  digits = sklearn_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
  labels = digits.target.astype(np.int64)
  order = np.random.RandomState(0).permutation(len(labels))
  train, test = order[:-TEST_SIZE], order[-TEST_SIZE:]
  return images[train], labels[train], images[test], labels[test]


class PlainBlock(torch_resnet.BasicBlock):
  """The residual block's plain twin: the same layers, no shortcut."""

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def build_model(depth: int, variant: str, in_channels: int) -> nn.Module:
  """torch_resnet's CifarResNet with an `in_channels` stem; for 'plain', blocks without shortcuts."""
  model = torch_resnet.CifarResNet(depth)
  model.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
  if variant == "plain":
    model.blocks = nn.Sequential(*(PlainBlock(b.conv1.in_channels, b.conv1.out_channels, b.stride)
                                   for b in model.blocks))
  for module in model.modules():
    if isinstance(module, nn.Conv2d):
      nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
  return model


def learning_rate(step: int, num_steps: int) -> float:
  """The rate of 0-based iteration `step`, as resnet_jax/train/optimizer.py computes it."""
  if step < WARMUP_STEPS:
    return LEARNING_RATE * step / WARMUP_STEPS
  boundaries = [round(f * num_steps) for f in DECAY_FRACTIONS]
  return LEARNING_RATE * DECAY_FACTOR ** sum(step >= b for b in boundaries)


def augment(images: torch.Tensor) -> torch.Tensor:
  """Zero-pad PAD pixels per side and take a random crop of the original size per image."""
  batch, _, height, width = images.shape
  padded = F.pad(images, (PAD, PAD, PAD, PAD))
  offsets = torch.randint(0, 2 * PAD + 1, (batch, 2))
  rows = (offsets[:, 0, None] + torch.arange(height))[:, :, None]
  cols = (offsets[:, 1, None] + torch.arange(width))[:, None, :]
  return padded[torch.arange(batch)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
  """(mean loss, error %) over the whole split, BN in eval mode."""
  model.eval()
  loss, errors = 0.0, 0
  for start in range(0, len(labels), EVAL_BATCH_SIZE):
    logits = model(images[start:start + EVAL_BATCH_SIZE])
    target = labels[start:start + EVAL_BATCH_SIZE]
    loss += F.cross_entropy(logits, target, reduction="sum").item()
    errors += (logits.argmax(1) != target).sum().item()
  model.train()
  return loss / len(labels), 100.0 * errors / len(labels)


def member_name(member: dict) -> str:
  return f"{member['variant']}-{member['depth']}-seed{member['seed']}"


def train_member(member: dict, num_steps: int) -> dict:
  """Train one member; its final errors (%), per-eval curve, wall and CPU seconds (data loading included)."""
  start, cpu_start = time.perf_counter(), time.process_time()
  train_uint8, train_labels, test_uint8, test_labels = map(torch.from_numpy, load_digits())
  mean = train_uint8.double().mean(0).div(255).float()
  train_images = train_uint8.float() / 255  # normalised after the crop, so padding is raw zeros
  test_images = test_uint8.float() / 255 - mean
  torch.manual_seed(member["seed"])  # one stream: initialisation, then example order and crops
  model = build_model(member["depth"], member["variant"], train_images.shape[1])
  optimizer = torch_resnet.make_optimizer(model)
  steps_per_epoch = len(train_labels) // BATCH_SIZE
  curve, window = [], []
  for step in range(num_steps):
    if step % steps_per_epoch == 0:
      permutation = torch.randperm(len(train_labels))
    indices = permutation[(step % steps_per_epoch) * BATCH_SIZE:][:BATCH_SIZE]
    images, labels = augment(train_images[indices]) - mean, train_labels[indices]
    lr = learning_rate(step, num_steps)
    for group in optimizer.param_groups:
      group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    window.append((loss.item(), (logits.argmax(1) != labels).float().mean().item()))
    if (step + 1) % EVAL_EVERY == 0 or step + 1 == num_steps:
      test_loss, test_error = evaluate(model, test_images, test_labels)
      losses, errors = zip(*window)
      curve.append(dict(step=step + 1, learning_rate=lr, train_loss=statistics.fmean(losses),
                        train_error=100 * statistics.fmean(errors), test_loss=test_loss, test_error=test_error))
      window = []
  return dict(name=member_name(member), **member, steps=num_steps, params=sum(p.numel() for p in model.parameters()),
              test_error=curve[-1]["test_error"], train_error=curve[-1]["train_error"], curve=curve,
              wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu_start)


def _pin(cores) -> None:
  """Worker start: one core of the queue, one thread."""
  os.sched_setaffinity(0, {cores.get()})
  torch.set_num_threads(1)
  torch.set_num_interop_threads(1)


def _run(job: tuple[dict, int, str | None]) -> dict:
  member, num_steps, out = job
  result = train_member(member, num_steps)
  result["core"] = sorted(os.sched_getaffinity(0))[0]
  if out:
    with open(os.path.join(out, f"{result['name']}.json"), "w") as f:
      json.dump(result, f, indent=1)
  return result


def select_members(only: str | None) -> list[dict]:
  """The grid's members matching every key=value of `only`, first seed of every member first, deepest
  first within a seed (as the sweep starts them)."""
  members = [dict(depth=d, variant=v, seed=s) for d in GRID["depth"] for v in GRID["variant"] for s in GRID["seed"]]
  for item in filter(None, (only or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in GRID:
      raise SystemExit(f"--only {item!r}: expected key=value with key one of {', '.join(GRID)}")
    members = [m for m in members if str(m[key]) == value]
  if not members:
    raise SystemExit(f"--only {only!r} matches no member")
  return sorted(members, key=lambda m: (m["seed"], -m["depth"]))


def summary(results: list[dict]) -> str:
  """Mean ± sample std and min-max over seeds of the final errors, and each seed's wall seconds."""
  spread = lambda xs: (f"{statistics.fmean(xs):.2f}" + (f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else ""),
                       f"{min(xs):.2f}–{max(xs):.2f}")
  lines = ["| variant | depth | params | seeds | test error % | test min–max | train error % | train min–max | "
           "wall s per seed |", "|---|---|---|---|---|---|---|---|---|"]
  for key in sorted({(r["variant"], r["depth"]) for r in results}):
    group = sorted((r for r in results if (r["variant"], r["depth"]) == key), key=lambda r: r["seed"])
    cells = [*key, f"{group[0]['params']:,}", len(group), *spread([r["test_error"] for r in group]),
             *spread([r["train_error"] for r in group]), " ".join(f"{r['wall_s']:.1f}" for r in group)]
    lines.append("| " + " | ".join(map(str, cells)) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--jobs", type=int, default=2, help="members at once, each on its own core")
  parser.add_argument("--steps", type=int, default=300, help="training iterations per member")
  parser.add_argument("--only", help="members whose arguments match, e.g. depth=20,variant=plain")
  parser.add_argument("--out", help="write one JSON per member here")
  args = parser.parse_args()
  if args.jobs < 1 or args.steps < 1:
    parser.error("--jobs and --steps must be >= 1")
  members = select_members(args.only)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
  start = time.perf_counter()
  context = multiprocessing.get_context("spawn")
  cores = context.Queue()
  available = sorted(os.sched_getaffinity(0))
  for index in range(args.jobs):
    cores.put(available[index % len(available)])
  results = []
  with context.Pool(args.jobs, initializer=_pin, initargs=(cores,)) as pool:
    for result in pool.imap_unordered(_run, [(m, args.steps, args.out) for m in members]):
      print(f"{result['name']}: test error {result['test_error']:.2f} %, train error {result['train_error']:.2f} %, "
            f"{result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU on core {result['core']}", flush=True)
      results.append(result)
  print(f"\n{len(results)} members, {args.steps} iterations each, {args.jobs} at once\n")
  print(summary(results))
  print(f"\ntotal wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  main()
