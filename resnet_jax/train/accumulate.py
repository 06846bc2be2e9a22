"""Gradient accumulation: one step's global batch as K micro-batches, for a batch the devices cannot hold.

The step's batch is split into K consecutive slices (micro-batch k holds its examples k*B/K to
(k+1)*B/K - 1), so what a step trains on stays a pure function of (seed, step) and resume stays exact.
The micro-batches run forward and backward one after another, each sharded over every device: in a
loop (`jax.lax.scan`: one micro-batch's activations in memory at a time), except where the program is
lowered for a CPU, whose compiler runs convolutions inside a loop 10-25x slower (jax-ml/jax#12868;
measured here: ResNet-8 on 4 x 32 digits, 103 ms a step against 11 ms unrolled and 8.3 ms for one
batch of 128), so there the loop is unrolled. Every output of the function
they run is a mean over the micro-batch's examples (loss, error, gradients) or linear in such means
(BN's running averages, each updated from the step's values), so the mean of the K outputs is the
whole batch's: with BN groups that divide the micro-batch, K micro-batches give the result of one
step on the whole batch with the same groups, to float rounding.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from resnet_jax.train.parallel import DATA_AXIS


def microbatch_mean(fn: Callable[[jax.Array, jax.Array], Any], images: jax.Array, labels: jax.Array,
                    microbatches: int, mesh: Mesh) -> Any:
  """`fn(images, labels)` of the whole batch as the mean of `fn` over `microbatches` consecutive slices.

  `fn` must return a pytree of float means over its examples (or values linear in them).
  """
  if microbatches == 1:
    return fn(images, labels)
  sharding = NamedSharding(mesh, P(None, DATA_AXIS))  # each micro-batch over every device
  split = lambda x: jax.lax.with_sharding_constraint(x.reshape(microbatches, -1, *x.shape[1:]), sharding)
  micro_images, micro_labels = split(images), split(labels)

  def accumulate(total, micro):
    return jax.tree.map(jnp.add, total, fn(*micro)), None

  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, micro_images[0], micro_labels[0]))
  summed = lambda unroll: lambda *micro: jax.lax.scan(accumulate, zeros, micro, unroll=unroll)[0]
  total = jax.lax.platform_dependent(micro_images, micro_labels, cpu=summed(True), default=summed(1))
  return jax.tree.map(lambda x: x / microbatches, total)
