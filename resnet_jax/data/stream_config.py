"""The `data` fields of a streamed data set, read and validated without TensorFlow: the streaming
pipeline (imagenet.py) runs on them and config.py checks them."""

from __future__ import annotations

import dataclasses
from typing import Any

from resnet_jax.data.registry import EVAL_RESIZES, STREAMED_DATASETS, TFDS_NAMES
from resnet_jax.errors import ConfigError

TRAIN_CROPS = ("scale", "inception")
COLOR_AUGMENTS = ("none", "lighting", "jitter_lighting")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
  """The `data` fields the streaming pipeline reads; a field absent from the config takes the default."""
  name: str
  data_dir: str | None = None
  tfds_name: str | None = None       # None: TFDS_NAMES[name] (tfds:NAME: NAME); e.g. 'imagenette/320px-v2'
  tfds_train_split: str = "train"    # any tfds split, e.g. 'train[:99%]'
  tfds_eval_split: str = "validation"  # e.g. 'train[99%:]' for a held-out minival (tfds: sets: tfds_data.eval_split)
  image_key: str | None = None       # None: the set's single Image feature
  label_key: str | None = None       # None: its single ClassLabel feature
  train_crop: str = "scale"          # 'scale': the paper's; 'inception': random-resized crop
  scale_range: tuple[int, int] = (256, 480)  # 'scale': shorter side before the crop
  color_augment: str = "lighting"    # 'lighting': AlexNet PCA (paper); 'jitter_lighting': fb.resnet.torch
  eval_crop_fraction: float = 0.875  # eval resizes the shorter side to image_size / this (256 for 224)
  eval_resize: str = "paper"         # 'torchvision': antialiased resize, then crop (its eval transforms)
  shuffle_buffer: int = 10_000       # encoded examples (ImageNet ~110 kB each: ~1.1 GB)
  prefetch: int = 2                  # batches ready ahead of the trainer
  num_workers: int | None = None     # tf.data threads; None: AUTOTUNE over a shared pool
  cache: bool = False                # hold this process's encoded share in RAM (ImageNet ~140 GB / processes);
                                     # files are then read in one fixed order and only the buffer shuffles
  ram_budget_gb: float | None = 4.0  # tf.data autotune RAM budget; None: TF's default (half the RAM)

  @classmethod
  def from_data_config(cls, data: Any) -> "StreamConfig":
    """Read and validate the fields; raises ConfigError naming the field and the allowed values."""
    fields = {f.name: data.get(f.name, f.default) for f in dataclasses.fields(cls) if f.name != "name"}
    config = cls(name=data.name, **{**fields, "scale_range": tuple(fields["scale_range"])})
    config._validate()
    return config

  def _validate(self) -> None:
    if not self.name.startswith("tfds:") and self.name not in STREAMED_DATASETS:
      raise ConfigError(f"data.name={self.name!r} is not streamed: streamed are {', '.join(STREAMED_DATASETS)} "
                        "and tfds: sets too large for memory")
    for field, allowed in (("train_crop", TRAIN_CROPS), ("color_augment", COLOR_AUGMENTS),
                           ("eval_resize", EVAL_RESIZES)):
      if getattr(self, field) not in allowed:
        raise ConfigError(f"data.{field}={getattr(self, field)!r} is invalid: allowed values are {', '.join(allowed)}")
    low, high = self.scale_range
    if not 0 < low <= high:
      raise ConfigError(f"data.scale_range={self.scale_range} is invalid: expected (low, high) with 0 < low <= high")
    if not 0 < self.eval_crop_fraction <= 1:
      raise ConfigError(f"data.eval_crop_fraction={self.eval_crop_fraction} is invalid: expected a number in (0, 1]")
    for field in ("shuffle_buffer", "prefetch") + (("num_workers",) if self.num_workers is not None else ()):
      if getattr(self, field) < 1:
        raise ConfigError(f"data.{field}={getattr(self, field)} is invalid: expected an integer >= 1")

  @property
  def resolved_tfds_name(self) -> str:
    return self.tfds_name or TFDS_NAMES.get(self.name) or self.name[len("tfds:"):]
