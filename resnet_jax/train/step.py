"""The train step and the eval step: top-level functions of (state, data), jitted on their settings.

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
import ml_collections
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from resnet_jax.config import microbatches
from resnet_jax.data.augment import normalize, pad_crop_flip
from resnet_jax.data.order import train_batch_indices
from resnet_jax.train.accumulate import microbatch_mean
from resnet_jax.train.optimizer import make_optimizer
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


def program_fields(config: ml_collections.ConfigDict) -> dict:
  """Every field of `config` but the seed: what the compiled steps depend on (runs that differ only in their
  seed run the same programs)."""
  return {key: value for key, value in config.to_dict().items() if key != "seed"}


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """What the compiled steps are specialised on, as static values: the key of jit's cache, so that runs that
  differ only in their seed (a sweep worker's later seeds) reuse the compiled programs.

  `config` is the resolved config without its seed; the model's graph follows from it, the data and the
  mesh's platform, so `graphdef` takes no part in comparisons (comparing graphs costs milliseconds).
  """
  config: ml_collections.FrozenConfigDict
  num_train: int
  mesh: Mesh
  graphdef: nnx.GraphDef = dataclasses.field(compare=False)

  def __post_init__(self):  # jit hashes its static arguments at every call
    object.__setattr__(self, "_hash", hash((self.config, self.num_train, self.mesh)))

  def __hash__(self) -> int:
    return self._hash

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, num_train: int, mesh: Mesh, graphdef: nnx.GraphDef) -> "StepSettings":
    return cls(ml_collections.FrozenConfigDict(program_fields(config)), num_train, mesh, graphdef)

  @property
  def num_seeds(self) -> int:
    return self.config.train.num_seeds


def _over_seeds(fn: Callable, num_seeds: int, together: str) -> Callable:
  """Apply `fn` to every model of the state (first argument; the others are shared) when several
  seeds train together.

  vmap batches the K models (their convolutions become grouped convolutions, which XLA:CPU runs ~6x
  slower than K separate steps); unroll puts K copies of `fn` into the program, each the computation of
  a run alone. 'auto' unrolls in a program lowered for a CPU and vmaps in one for a GPU or TPU.
  """
  if num_seeds == 1:
    return fn

  def vmapped(state, *shared):
    return jax.vmap(lambda one: fn(one, *shared))(state)

  def unrolled(state, *shared):
    outputs = [fn(jax.tree.map(lambda leaf: leaf[k], state), *shared) for k in range(num_seeds)]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)

  if together == "auto":
    return lambda *args: jax.lax.platform_dependent(*args, cpu=unrolled, default=vmapped)
  return vmapped if together == "vmap" else unrolled


def train_batch(settings: StepSettings, data: DeviceData | StreamedBatch, state: TrainState):
  """Normalised images and labels of this step's global batch."""
  if isinstance(data, StreamedBatch):
    return normalize(data.images, data.mean, data.std), data.labels
  order_key, augment_key = jax.random.split(state.rng)  # independent streams
  step, config, mesh = state.step, settings.config.data, settings.mesh
  indices = train_batch_indices(order_key, step, settings.num_train, config.batch_size)
  images = jax.lax.with_sharding_constraint(data.train_images[indices], batch_sharded(mesh))
  labels = jax.lax.with_sharding_constraint(data.train_labels[indices], batch_sharded(mesh))
  if config.augment != "none":
    images = pad_crop_flip(jax.random.fold_in(augment_key, step), images, config.pad,
                           flip=config.augment == "pad_crop_flip")
  return normalize(images, data.mean, data.std), labels


def _loss(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing) if smoothing \
      else jax.nn.one_hot(labels, logits.shape[-1])
  return optax.softmax_cross_entropy(logits, targets)


def _grads(graphdef, label_smoothing: float, state: TrainState, images, labels):
  def loss_fn(params):
    model = nnx.merge(graphdef, params, state.batch_stats, copy=True)
    logits = model(images, train=True)
    error = jnp.mean(jnp.argmax(logits, -1) != labels)
    return _loss(logits, labels, label_smoothing).mean(), (error, nnx.state(model, nnx.BatchStat))
  return jax.value_and_grad(loss_fn, has_aux=True)(state.params)


def layer_names(params: nnx.State) -> list[str]:
  """Each parameter's path ('stages/0/1/conv1/kernel'), in the order of `_layer_norms`."""
  return ["/".join(str(getattr(k, "key", k)) for k in path if isinstance(k, jax.tree_util.DictKey))
          for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def _layer_norms(grads: nnx.State) -> jax.Array:
  """Each parameter's gradient norm, one vector in the order of `layer_names`."""
  return jnp.stack([jnp.linalg.norm(g) for g in jax.tree.leaves(grads)])


@functools.partial(jax.jit, static_argnames="settings", donate_argnames="state")
def train_step(state: TrainState, data: DeviceData | StreamedBatch, *,
               settings: StepSettings) -> tuple[TrainState, Metrics]:
  """One optimiser step of every model on the batch that `data.order` assigns to `state.step`.

  With train.analysis_every_steps its metrics hold LAYER_GRAD_NORMS: the norm of each parameter's gradient
  on this batch, computed on analysis steps (zeros on the others). One program: the analysis needs no second
  compile of the backward pass.
  """
  config = settings.config
  tx, schedule = make_optimizer(config)
  every = config.train.analysis_every_steps

  def one_model(state: TrainState, data):
    images, labels = train_batch(settings, data, state)
    grads_of = functools.partial(_grads, settings.graphdef, config.optimizer.label_smoothing, state)
    (loss, (error, batch_stats)), grads = microbatch_mean(grads_of, images, labels, microbatches(config),
                                                          settings.mesh)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = dict(loss=loss, error=error, grad_norm=optax.tree.norm(grads),
                   learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
    if every:
      metrics[LAYER_GRAD_NORMS] = jax.lax.cond(state.step % every == 0, _layer_norms,
                                               lambda g: jnp.zeros(len(jax.tree.leaves(g))), grads)
    return TrainState(state.step + 1, optax.apply_updates(state.params, updates), batch_stats, opt_state,
                      state.rng), metrics

  outputs = _over_seeds(one_model, settings.num_seeds, config.train.seeds_together)(state, data)
  return jax.lax.with_sharding_constraint(outputs, replicated(settings.mesh))


@functools.partial(jax.jit, static_argnames="settings")
def eval_step(state: TrainState, data: DeviceData | StreamedBatch, index: jax.Array, *,
              settings: StepSettings) -> Metrics:
  """Summed loss, top-1 and top-5 errors and example count of every model on eval batch `index` (padding
  masked)."""
  batch_size = settings.config.data.eval_batch_size

  def eval_batch(data: DeviceData | StreamedBatch, index: jax.Array):
    if isinstance(data, StreamedBatch):
      return data.images, data.labels, data.mask
    take = lambda x: jax.lax.with_sharding_constraint(
        jax.lax.dynamic_slice_in_dim(x, index * batch_size, batch_size), batch_sharded(settings.mesh))
    return take(data.eval_images), take(data.eval_labels), take(data.eval_mask)

  def one_model(state: TrainState, data, index) -> Metrics:
    images, labels, mask = eval_batch(data, index)
    model = nnx.merge(settings.graphdef, state.params, state.batch_stats)
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

  metrics = _over_seeds(one_model, settings.num_seeds, settings.config.train.seeds_together)(state, data, index)
  return jax.lax.with_sharding_constraint(metrics, replicated(settings.mesh))


@dataclasses.dataclass(frozen=True)
class BoundStep:
  """A jitted step with its settings bound: called, traced and lowered like the step itself."""
  step: Callable
  settings: StepSettings

  def __call__(self, *args):
    return self.step(*args, settings=self.settings)

  def trace(self, *args):
    return self.step.trace(*args, settings=self.settings)

  def lower(self, *args):
    return self.step.lower(*args, settings=self.settings)


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
