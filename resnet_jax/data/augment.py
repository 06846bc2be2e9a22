"""Augmentation and normalisation on the accelerator, inside the jitted step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.data.registry import NORMALIZATIONS
from resnet_jax.errors import ConfigError

# The standard ImageNet RGB channel statistics in [0, 1] units: streamed data is normalised with them.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def pad_crop_flip(key: jax.Array, images: jax.Array, pad: int, flip: bool) -> jax.Array:
  """Zero-pad `pad` pixels per side, take a random crop of the original size, flip half (paper 4.2)."""
  batch, height, width, channels = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))
  images = jax.vmap(crop)(padded, offsets)
  if flip:
    flips = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
    images = jnp.where(flips, images[:, :, ::-1, :], images)
  return images


def normalization_stats(train_images: np.ndarray | None, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) in [0, 1] units for `data.normalize`, shaped to broadcast over NHWC.

  In-memory data passes its training images and gets their statistics. Streamed data (None)
  has no images at hand and gets the ImageNet channel statistics, also for 'pixel_mean': no
  mean image is computed from a stream, a deviation from the paper.
  """
  if kind not in NORMALIZATIONS:
    raise ConfigError(f"data.normalize={kind!r} is invalid: allowed values are {', '.join(NORMALIZATIONS)}")
  unit = np.ones((1, 1, 3 if train_images is None else train_images.shape[-1]), np.float32)
  if kind == "none":
    return np.zeros_like(unit), unit
  if train_images is None:
    mean, std = np.asarray(IMAGENET_MEAN_RGB), np.asarray(IMAGENET_STD_RGB)
  elif kind == "pixel_mean":
    return (train_images.mean(0, dtype=np.float64) / 255.0).astype(np.float32), unit
  else:
    mean = train_images.mean((0, 1, 2), dtype=np.float64) / 255.0
    std = train_images.std((0, 1, 2), dtype=np.float64) / 255.0 if kind == "channel_mean_std" else None
  std = std.reshape(unit.shape).astype(np.float32) if kind == "channel_mean_std" else unit
  return mean.reshape(unit.shape).astype(np.float32), std


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """uint8 images to float32: scaled to [0, 1], mean subtracted, divided by std."""
  return (images.astype(jnp.float32) / 255.0 - mean) / std
