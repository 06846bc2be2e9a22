"""The order of training examples: a pure function of (seed, step).

Each epoch is a fresh permutation keyed by (key, epoch); step k reads slice k of it. A run
resumed at step k therefore sees exactly the batches an uninterrupted run sees, with no
data position to store beyond the step itself. The last partial batch of an epoch is dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def train_batch_indices(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """Indices of the global training batch at `step` (traceable; runs inside jit)."""
  steps_per_epoch = num_examples // batch_size
  epoch, position = jnp.divmod(step, steps_per_epoch)
  permutation = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  return jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))


def epoch_of(step: int, num_examples: int, batch_size: int) -> float:
  """Epochs completed after `step` steps."""
  return step * batch_size / num_examples
