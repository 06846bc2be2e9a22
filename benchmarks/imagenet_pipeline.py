"""Throughput of the streamed ImageNet train preprocessing (resnet_jax.data.imagenet) on synthetic JPEGs.

    python benchmarks/imagenet_pipeline.py [--workers 1 2] [--crops scale inception] [--seconds 10]

Synthetic 500x375 JPEGs (smooth colour fields plus noise, ~110 kB like ImageNet's mean) are
held in memory and fed, repeated, through the same `train_batches` the real pipeline uses
(decode_and_crop, resize, flip, colour augmentation, batching), so the numbers exclude disk
reads and tfds parsing.
`data.num_workers` threads run the per-image work. Besides wall-clock images/s the table
gives images per CPU-second of this process (all its threads), the per-core figure to scale
a host by, which holds up when other jobs share the cores; the load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import ml_collections
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def synthetic_jpegs(count: int, height: int = 375, width: int = 500, seed: int = 0) -> list[bytes]:
  """Smooth random colour fields plus noise, JPEG quality 90: about 110 kB each, ImageNet's mean."""
  import tensorflow as tf
  rng = np.random.default_rng(seed)
  jpegs = []
  for _ in range(count):
    coarse = rng.uniform(0, 255, (1, height // 25, width // 25, 3)).astype(np.float32)
    image = tf.image.resize(coarse, [height, width], method="bicubic")[0].numpy()
    image = np.clip(image + rng.normal(0, 24, image.shape), 0, 255).astype(np.uint8)
    jpegs.append(tf.io.encode_jpeg(image, quality=90).numpy())
  return jpegs


def measure(jpegs: list[bytes], *, crop: str, color: str, workers: int, batch: int,
            seconds: float) -> tuple[float, float]:
  """(images per wall-clock second, images per CPU-second) of train_batches after a warm-up."""
  import tensorflow as tf
  from resnet_jax.data import imagenet
  data = ml_collections.ConfigDict(dict(name="imagenet2012", train_crop=crop, color_augment=color,
                                        num_workers=workers))
  config = imagenet.StreamConfig.from_data_config(data)
  records = tf.data.Dataset.from_tensor_slices({"image": jpegs, "label": np.arange(len(jpegs)) % 1000})
  batches = imagenet.train_batches(records.cache().repeat(), config, augment_seed=0, local_batch=batch,
                                   image_size=224).as_numpy_iterator()
  for _ in range(3):
    next(batches)
  count, start, cpu_start = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - start < seconds:
    count += len(next(batches)["labels"])
  return count / (time.perf_counter() - start), count / (time.process_time() - cpu_start)


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
  parser.add_argument("--crops", nargs="+", default=["scale", "inception"])
  parser.add_argument("--color", default="lighting")
  parser.add_argument("--images", type=int, default=256)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=10.0)
  args = parser.parse_args(argv)
  from resnet_jax.data.tf_runtime import hide_gpus_from_tensorflow
  hide_gpus_from_tensorflow()
  jpegs = synthetic_jpegs(args.images)
  print("command:", shlex.join(["python", "benchmarks/imagenet_pipeline.py", *argv]))
  print(f"{len(jpegs)} JPEGs 500x375, mean {np.mean([len(j) for j in jpegs]) / 1e3:.0f} kB; "
        f"color_augment={args.color}; {os.cpu_count()} CPUs; load before {os.getloadavg()[0]:.2f}")
  print(f"{'train_crop':<11}{'workers':>8}{'images/s':>10}{'images/CPU-s':>14}{'load':>7}")
  for crop in args.crops:
    for workers in args.workers:
      rate, per_cpu = measure(jpegs, crop=crop, color=args.color, workers=workers, batch=args.batch,
                              seconds=args.seconds)
      print(f"{crop:<11}{workers:>8}{rate:>10.0f}{per_cpu:>14.0f}{os.getloadavg()[0]:>7.2f}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
