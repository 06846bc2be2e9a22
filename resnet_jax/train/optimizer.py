"""SGD with momentum, weight decay on kernels, and the learning-rate schedules of the paper."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """piecewise (x decay_factor at each of derived.lr_boundaries), cosine or constant, after a warm-up.

  Reads a resolved config (`resnet_jax.config.resolve`). A 'constant' warm-up holds
  warmup_learning_rate for derived.warmup_steps (the paper's ResNet-110: 0.01 for ~400
  iterations); 'linear' ramps up to the rate.
  """
  opt, derived = config.optimizer, config.derived
  if opt.schedule == "piecewise":
    main = optax.piecewise_constant_schedule(opt.learning_rate, {b: opt.decay_factor for b in derived.lr_boundaries})
  elif opt.schedule == "cosine":
    main = optax.cosine_decay_schedule(opt.learning_rate, derived.num_steps)
  else:
    main = optax.constant_schedule(opt.learning_rate)
  warmup_steps = derived.warmup_steps
  if not warmup_steps:
    return main
  if opt.warmup == "constant":
    warm = optax.constant_schedule(opt.warmup_learning_rate)
  else:
    warm = optax.linear_schedule(opt.warmup_learning_rate, opt.learning_rate, warmup_steps)
  return lambda step: jnp.where(step < warmup_steps, warm(step), main(step))


def decay_mask(params, decay_norm_and_bias: bool):
  """True for the leaves weight decay applies to: kernels only, unless decay_norm_and_bias."""
  def decays(path, _):
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return decay_norm_and_bias or names[-1] == "kernel"
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """L2 weight decay added to the gradient (as Caffe/PyTorch SGD), then SGD with momentum (resolved config)."""
  opt = config.optimizer
  schedule = learning_rate_schedule(config)
  tx = optax.chain(
      optax.add_decayed_weights(opt.weight_decay, lambda p: decay_mask(p, opt.decay_norm_and_bias)),
      optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov),
  )
  return tx, schedule
