"""SGD with momentum (the paper) or LARS (large batches), weight decay on kernels, and the learning-rate schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """piecewise (x decay_factor at each of derived.lr_boundaries), cosine, polynomial or constant from
  derived.learning_rate (the batch's rate), after a warm-up.

  Reads a resolved config (`resnet_jax.config.resolve`). A 'constant' warm-up holds
  warmup_learning_rate for derived.warmup_steps (the paper's ResNet-110: 0.01 for ~400
  iterations); 'linear' ramps up to the rate. 'polynomial' decays from the rate to
  end_learning_rate as (1 - t)^decay_power over the steps after the warm-up (MLPerf's LARS schedule).
  """
  opt, derived = config.optimizer, config.derived
  rate, warmup_steps = derived.learning_rate, derived.warmup_steps
  if opt.schedule == "piecewise":
    main = optax.piecewise_constant_schedule(rate, {b: opt.decay_factor for b in derived.lr_boundaries})
  elif opt.schedule == "cosine":
    main = optax.cosine_decay_schedule(rate, derived.num_steps)
  elif opt.schedule == "polynomial":
    main = optax.polynomial_schedule(rate, opt.end_learning_rate, opt.decay_power, derived.num_steps - warmup_steps,
                                     transition_begin=warmup_steps)
  else:
    main = optax.constant_schedule(rate)
  if not warmup_steps:
    return main
  if opt.warmup == "constant":
    warm = optax.constant_schedule(opt.warmup_learning_rate)
  else:
    warm = optax.linear_schedule(opt.warmup_learning_rate, rate, warmup_steps)
  return lambda step: jnp.where(step < warmup_steps, warm(step), main(step))


def describe_learning_rate(config: ml_collections.ConfigDict) -> str:
  """The run's rate and where it comes from, one line for its log (a resolved config)."""
  opt, derived, batch = config.optimizer, config.derived, config.data.batch_size
  source = (f"{opt.learning_rate:g} x batch {batch} / base batch {opt.base_batch_size} (linear scaling rule)"
            if opt.lr_scaling == "linear" else "optimizer.learning_rate, not scaled with the batch")
  warmup = f", after {derived.warmup_steps} warm-up steps from {opt.warmup_learning_rate:g}" \
      if derived.warmup_steps else ""
  return f"learning rate {derived.learning_rate:g} = {source}{warmup}; {opt.name}, {opt.schedule} schedule"


def decay_mask(params, decay_norm_and_bias: bool):
  """True for the leaves weight decay applies to: kernels only, unless decay_norm_and_bias."""
  def decays(path, _):
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return decay_norm_and_bias or names[-1] == "kernel"
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser of a resolved config and its schedule.

  sgd: L2 weight decay added to the gradient (as Caffe/PyTorch SGD), then SGD with momentum.
  lars: optax's LARS (You et al. 2017): the same weight decay, then each kernel's update scaled by
  trust_coefficient x ||w|| / (||g + wd w|| + lars_epsilon); BN parameters and biases are not adapted
  (nor decayed unless decay_norm_and_bias), as in the MLPerf reference.
  """
  opt = config.optimizer
  schedule = learning_rate_schedule(config)
  decays = lambda p: decay_mask(p, opt.decay_norm_and_bias)
  if opt.name == "lars":
    tx = optax.lars(schedule, opt.weight_decay, weight_decay_mask=decays, trust_coefficient=opt.trust_coefficient,
                    eps=opt.lars_epsilon, trust_ratio_mask=lambda p: decay_mask(p, False), momentum=opt.momentum,
                    nesterov=opt.nesterov)
  else:
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay, decays),
                     optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
  return tx, schedule
