"""Augmentation and normalisation on the accelerator, inside the jitted step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


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


def normalization_stats(train_images: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) in [0, 1] units from the training images, shaped to broadcast over NHWC."""
  channels = train_images.shape[-1]
  unit = np.ones((1, 1, channels), np.float32)
  if kind == "pixel_mean":
    return (train_images.mean(0, dtype=np.float64) / 255.0).astype(np.float32), unit
  if kind in ("channel_mean", "channel_mean_std"):
    mean = train_images.mean((0, 1, 2), dtype=np.float64).reshape(1, 1, -1) / 255.0
    std = train_images.std((0, 1, 2), dtype=np.float64).reshape(1, 1, -1) / 255.0 \
        if kind == "channel_mean_std" else unit
    return mean.astype(np.float32), std.astype(np.float32)
  return np.zeros_like(unit), unit


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """uint8 images to float32: scaled to [0, 1], mean subtracted, divided by std."""
  return (images.astype(jnp.float32) / 255.0 - mean) / std
