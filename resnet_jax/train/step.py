"""The train step and the eval step: pure functions of (state, data), compiled once with jit.

The whole training set lives on the devices (`DeviceData`); a step picks its batch by
`data.order`, augments it on the device and shards it over the mesh's 'data' axis. State is
replicated and donated. Evaluation pads the eval set to whole batches and masks the padding.

With `train.num_seeds` = K > 1 every leaf of the state has a leading axis of K models
(seeds seed..seed+K-1), and the steps are `jax.vmap`ped (or unrolled) over it: K
independent runs, each with its own initialisation, example order and augmentation, in one
compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from resnet_jax.config import microbatches
from resnet_jax.data.augment import normalize, pad_crop_flip
from resnet_jax.data.order import train_batch_indices
from resnet_jax.train.accumulate import microbatch_mean
from resnet_jax.train.parallel import batch_sharded, replicated

Metrics = dict[str, jax.Array]
LAYER_GRAD_NORMS = "layer_grad_norms"


class TrainState(struct.PyTreeNode):
  step: jax.Array
  params: nnx.State
  batch_stats: nnx.State
  opt_state: optax.OptState
  rng: jax.Array  # raw PRNG key of the run's seed: example order and augmentation derive from it


class DeviceData(struct.PyTreeNode):
  """Training and (padded) eval examples, replicated on every device."""
  train_images: jax.Array
  train_labels: jax.Array
  eval_images: jax.Array
  eval_labels: jax.Array
  eval_mask: jax.Array
  mean: jax.Array
  std: jax.Array


class StreamedBatch(struct.PyTreeNode):
  """One global batch already augmented on the host (tf.data), sharded over the 'data' axis.

  Eval batches may hold ten crops per example: images [B, 10, H, W, C].
  """
  images: jax.Array
  labels: jax.Array
  mask: jax.Array
  mean: jax.Array
  std: jax.Array


def pad_eval_split(images: np.ndarray, labels: np.ndarray, batch_size: int):
  """Pad to whole batches; the mask is 1 for real examples and 0 for padding."""
  padding = -len(labels) % batch_size
  mask = np.concatenate([np.ones(len(labels), np.float32), np.zeros(padding, np.float32)])
  images = np.concatenate([images, np.zeros((padding, *images.shape[1:]), images.dtype)])
  labels = np.concatenate([labels, np.zeros(padding, labels.dtype)])
  return images, labels, mask


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """What the compiled steps need from a config, as static Python values."""
  num_seeds: int
  seeds_together: str  # 'vmap' or 'unroll' ('auto' resolved for the backend)
  batch_size: int
  eval_batch_size: int
  num_train: int
  augment: str
  pad: int
  label_smoothing: float
  analysis_every_steps: int  # >0: every this many steps the train step also returns per-layer gradient norms
  microbatches: int  # >1: the step's batch runs as this many micro-batches (accumulate.py)

  @classmethod
  def from_config(cls, config, num_train: int) -> "StepConfig":
    together = config.train.seeds_together
    if together == "auto":
      together = "unroll" if jax.default_backend() == "cpu" else "vmap"
    return cls(config.train.num_seeds, together, config.data.batch_size, config.data.eval_batch_size, num_train,
               config.data.augment, config.data.pad, config.optimizer.label_smoothing,
               config.train.analysis_every_steps, microbatches(config))


def _over_seeds(fn: Callable, cfg: StepConfig) -> Callable:
  """Apply `fn` to every model of the state (first argument; the others are shared) when several
  seeds train together.

  vmap batches the K models (their convolutions become grouped convolutions); unroll puts K
  copies of `fn` into the program, each the computation of a run alone.
  """
  if cfg.num_seeds == 1:
    return fn

  def over_seeds(state, *shared):
    if cfg.seeds_together == "vmap":
      return jax.vmap(lambda one: fn(one, *shared))(state)
    outputs = [fn(jax.tree.map(lambda leaf: leaf[k], state), *shared) for k in range(cfg.num_seeds)]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)
  return over_seeds


def _train_batch(cfg: StepConfig, data: DeviceData | StreamedBatch, state: TrainState, mesh: Mesh):
  """Normalised images and labels of this step's global batch."""
  if isinstance(data, StreamedBatch):
    return normalize(data.images, data.mean, data.std), data.labels
  order_key, augment_key = jax.random.split(state.rng)  # independent streams
  step = state.step
  indices = train_batch_indices(order_key, step, cfg.num_train, cfg.batch_size)
  images = jax.lax.with_sharding_constraint(data.train_images[indices], batch_sharded(mesh))
  labels = jax.lax.with_sharding_constraint(data.train_labels[indices], batch_sharded(mesh))
  if cfg.augment != "none":
    images = pad_crop_flip(jax.random.fold_in(augment_key, step), images, cfg.pad,
                           flip=cfg.augment == "pad_crop_flip")
  return normalize(images, data.mean, data.std), labels


def _loss(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing) if smoothing \
      else jax.nn.one_hot(labels, logits.shape[-1])
  return optax.softmax_cross_entropy(logits, targets)


def _grads(graphdef, cfg: StepConfig, state: TrainState, images, labels):
  def loss_fn(params):
    model = nnx.merge(graphdef, params, state.batch_stats, copy=True)
    logits = model(images, train=True)
    error = jnp.mean(jnp.argmax(logits, -1) != labels)
    return _loss(logits, labels, cfg.label_smoothing).mean(), (error, nnx.state(model, nnx.BatchStat))
  return jax.value_and_grad(loss_fn, has_aux=True)(state.params)


def layer_names(params: nnx.State) -> list[str]:
  """Each parameter's path ('stages/0/1/conv1/kernel'), in the order of `_layer_norms`."""
  return ["/".join(str(getattr(k, "key", k)) for k in path if isinstance(k, jax.tree_util.DictKey))
          for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def _layer_norms(grads: nnx.State) -> jax.Array:
  """Each parameter's gradient norm, one vector in the order of `layer_names`."""
  return jnp.stack([jnp.linalg.norm(g) for g in jax.tree.leaves(grads)])


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    cfg: StepConfig, mesh: Mesh) -> Callable[[TrainState, DeviceData], tuple[TrainState, Metrics]]:
  """One SGD step on the batch that `data.order` assigns to `state.step`.

  With `cfg.analysis_every_steps` its metrics hold LAYER_GRAD_NORMS: the norm of each parameter's
  gradient on this batch, computed on analysis steps (zeros on the others). One program: the
  analysis needs no second compile of the backward pass.
  """

  def train_step(state: TrainState, data: DeviceData):
    images, labels = _train_batch(cfg, data, state, mesh)
    (loss, (error, batch_stats)), grads = microbatch_mean(functools.partial(_grads, graphdef, cfg, state), images,
                                                          labels, cfg.microbatches, mesh)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = dict(
        loss=loss,
        error=error,
        grad_norm=optax.tree.norm(grads),
        learning_rate=jnp.asarray(schedule(state.step), jnp.float32),
    )
    if cfg.analysis_every_steps:
      metrics[LAYER_GRAD_NORMS] = jax.lax.cond(state.step % cfg.analysis_every_steps == 0, _layer_norms,
                                               lambda g: jnp.zeros(len(jax.tree.leaves(g))), grads)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), batch_stats, opt_state,
                           state.rng)
    return new_state, metrics

  return jax.jit(_over_seeds(train_step, cfg), donate_argnums=0, out_shardings=replicated(mesh))


def make_eval_step(graphdef: nnx.GraphDef, cfg: StepConfig, mesh: Mesh) -> Callable[..., Metrics]:
  """Summed loss, top-1 and top-5 errors and example count of eval batch `index` (padding masked)."""

  def eval_batch(data: DeviceData | StreamedBatch, index: jax.Array):
    if isinstance(data, StreamedBatch):
      return data.images, data.labels, data.mask
    take = lambda x: jax.lax.with_sharding_constraint(
        jax.lax.dynamic_slice_in_dim(x, index * cfg.eval_batch_size, cfg.eval_batch_size), batch_sharded(mesh))
    return take(data.eval_images), take(data.eval_labels), take(data.eval_mask)

  def eval_step(state: TrainState, data: DeviceData | StreamedBatch, index: jax.Array) -> Metrics:
    images, labels, mask = eval_batch(data, index)
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    if images.ndim == 5:  # ten crops per example: average the crops' probabilities
      crops = images.reshape(-1, *images.shape[2:])
      probs = jax.nn.softmax(model(normalize(crops, data.mean, data.std), train=False))
      logits = jnp.log(probs.reshape(*images.shape[:2], -1).mean(1))
    else:
      logits = model(normalize(images, data.mean, data.std), train=False)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return dict(
        loss=jnp.sum(_loss(logits, labels, 0.0) * mask),
        top1_errors=jnp.sum((jnp.argmax(logits, -1) != labels) * mask),
        top5_errors=jnp.sum(jnp.all(top5 != labels[:, None], axis=-1) * mask),
        count=jnp.sum(mask),
    )

  return jax.jit(_over_seeds(eval_step, cfg), out_shardings=replicated(mesh))


def evaluate(eval_step, state: TrainState, batches) -> dict[str, np.ndarray]:
  """Eval metrics over all `batches` ((data, index) pairs), padding masked (arrays of [K] with K seeds)."""
  totals = None
  for data, index in batches:
    sums = eval_step(state, data, index)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = {k: np.asarray(v, np.float64) for k, v in jax.device_get(totals).items()}
  count = totals["count"]
  return dict(eval_loss=totals["loss"] / count, eval_error=totals["top1_errors"] / count,
              eval_top5_error=totals["top5_errors"] / count, eval_count=count.astype(np.int64))
