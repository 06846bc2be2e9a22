"""The paper's Fig. 7 computed: the std of each 3x3 layer's response (after BN, before the ReLU or the
addition) of the trained models of a checkpoint, on a fixed batch of eval images."""

from __future__ import annotations

import numpy as np

from resnet_jax.analysis.trained import read_checkpoint, restore
from resnet_jax.data.augment import normalize
from resnet_jax.models.analysis import layer_responses
from resnet_jax.train.step import DeviceData

NUM_IMAGES = 256  # the first eval images, a fixed batch for every model


def _eval_images(inputs, num_images: int):
  """The first `num_images` real eval images of an experiment's inputs, normalised like training."""
  batch, _ = next(iter(inputs.eval_batches()))
  if isinstance(batch, DeviceData):
    images, mask = batch.eval_images, batch.eval_mask
  else:  # a streamed eval batch; with ten-crop eval, [B, 10, H, W, C]: take the first crop
    images, mask = batch.images, batch.mask
    images = images[:, 0] if images.ndim == 5 else images
  return normalize(images[:min(num_images, int(mask.sum()))], batch.mean, batch.std)


def checkpoint_responses(checkpoint_dir: str, num_images: int = NUM_IMAGES) -> list[np.ndarray]:
  """Response stds of every model in the latest checkpoint of `checkpoint_dir` (one per seed trained
  together, in seed order), on the first `num_images` eval images."""
  trained = restore(read_checkpoint(checkpoint_dir, in_memory_data=False))
  images = _eval_images(trained.inputs, num_images)
  return [layer_responses(trained.model(k), images) for k in range(len(trained.states))]
