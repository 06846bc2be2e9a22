"""A data set held in host memory: its train and eval splits, as every in-memory loader returns them."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in host memory."""
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: slice) -> "Split":
    return Split(self.images[index], self.labels[index])


@dataclasses.dataclass(frozen=True)
class Dataset:
  train: Split
  eval: Split
  num_classes: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])
