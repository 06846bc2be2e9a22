"""The paper's shortcut connections, options A, B and C (He et al. 2015, section 3.3)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

SHORTCUT_OPTIONS = ("A", "B", "C")


class Shortcut(nnx.Module):
  """Maps a block's input to its output shape.

  A: identity; where the shape grows, stride subsampling and zero channels appended after
     the input's channels (no parameters).
  B: a 1x1 projection (+ BN) only where the shape changes, identity elsewhere.
  C: a 1x1 projection (+ BN) on every block.
  `norm=None` gives a bare projection, used by pre-activation blocks; `conv(in, out, kernel, stride,
  rngs=...)` builds the projection (UnitSettings.conv).
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      stride: int,
      option: str,
      *,
      norm: Callable[[int], nnx.Module] | None,
      conv: Callable[..., nnx.Conv],
      rngs: nnx.Rngs,
  ):
    if option not in SHORTCUT_OPTIONS:
      raise ValueError(f"shortcut option must be one of {SHORTCUT_OPTIONS}, got {option!r}")
    if out_features < in_features:
      raise ValueError(f"a shortcut cannot shrink {in_features} to {out_features} channels")
    shape_changes = stride != 1 or in_features != out_features
    self.projects = option == "C" or (option == "B" and shape_changes)
    self.stride = stride
    self.pad_channels = out_features - in_features
    self.conv = conv(in_features, out_features, 1, stride, rngs=rngs) if self.projects else None
    self.norm = norm(out_features) if self.projects and norm is not None else None

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.projects:
      y = self.conv(x)
      return self.norm(y, train=train) if self.norm is not None else y
    if self.stride != 1:
      x = x[:, ::self.stride, ::self.stride, :]
    if self.pad_channels:
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.pad_channels)))
    return x
