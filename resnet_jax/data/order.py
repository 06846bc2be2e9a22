"""The order of training examples: a pure function of (seed, step).

Each epoch is a fresh permutation keyed by (key, epoch); step k reads slice k of it. A run
resumed at step k therefore sees exactly the batches an uninterrupted run sees, with no
data position to store beyond the step itself. The last partial batch of an epoch is dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def steps_per_epoch(num_examples: int, batch_size: int, process_count: int = 1) -> int:
  """Whole global batches per epoch when each of `process_count` processes reads an equal share of
  the examples in local batches of batch_size / process_count (the remainder is dropped)."""
  return (num_examples // process_count) // (batch_size // process_count)


def train_batch_indices(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """Indices of the global training batch at `step` (traceable; runs inside jit)."""
  epoch, position = jnp.divmod(step, steps_per_epoch(num_examples, batch_size))
  permutation = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  return jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))

