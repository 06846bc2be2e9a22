"""Loss-landscape slices of trained models (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

Around the trained weights w, the training loss and error at w + a*dx + b*dy on a grid of (a, b), and
at w + a*dx on a finer line. dx and dy are Gaussian directions normalised filter by filter, as in
their paper and code (`--dir_type weights --xnorm filter --xignore biasbn`): each output channel of a
convolution kernel and each output unit of a dense kernel gets the norm of the same filter in w;
biases and BatchNorm scale and bias (the one-dimensional parameters) get a zero direction; BatchNorm
running statistics stay as trained. The network runs in inference mode (running statistics), as their
evaluation does (`net.eval()`). The loss is the cross-entropy without weight decay, on a fixed, seeded
subset of the training images without augmentation.

  resnet-jax analyze landscape --workdir runs/digits/plain-56   ->  <model folder>/analysis/landscape.json
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resnet_jax.errors import ConfigError
from resnet_jax.analysis.trained import (TrainedModels, check_options, masked_loss_error, option, padded_examples,
                                            read_record, round_floats, run_analysis)
from resnet_jax.data.augment import normalize

NAME = "landscape"


@dataclasses.dataclass(frozen=True)
class LandscapeOptions:
  """What a landscape is computed with; part of the record's key (a change recomputes it)."""
  grid: int = option(15, "2-D grid points per axis, odd, so the trained point is on it")
  line: int = option(21, "1-D slice points along dx, odd")
  span: float = option(1.0, "coefficients run from -span to span")
  num_examples: int = option(128, "training examples the loss is averaged over", flag="--examples")
  seed: int = option(0, "seed of the directions and the example subset")
  points_per_call: int = option(1, "grid points vmapped together in the one compiled call (1: a loop, fastest on "
                                   "CPU)")

  def __post_init__(self):
    whole = lambda value: isinstance(value, int) and not isinstance(value, bool)
    check_options(self, NAME, ("grid", "line"), lambda v: whole(v) and v >= 3 and v % 2,
                  "odd whole numbers >= 3 (the trained point is the middle one)")
    check_options(self, NAME, ("span",), lambda v: isinstance(v, (int, float)) and v > 0, "numbers > 0")
    check_options(self, NAME, ("num_examples", "points_per_call"), lambda v: whole(v) and v >= 1,
                  "whole numbers >= 1")

  def coefficients(self, points: int) -> np.ndarray:
    return np.linspace(-self.span, self.span, points)

  def key_options(self) -> dict:
    """The options that change the result (not how it is batched)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "points_per_call"}


def filter_normalized_direction(rng: np.random.Generator, params: nnx.State) -> nnx.State:
  """A Gaussian direction shaped like `params`, each filter (all axes but the last: the output channel
  of a conv kernel, the output unit of a dense kernel) scaled to the norm of the same filter in
  `params`; zero for one-dimensional parameters (biases, BatchNorm scale and bias).

  Drawn on the host with NumPy: the same on every platform, and nothing to compile.
  """

  def one(w: np.ndarray) -> np.ndarray:
    if w.ndim <= 1:
      return np.zeros_like(w)
    d = rng.standard_normal(w.shape).astype(w.dtype)
    axes = tuple(range(w.ndim - 1))
    norm = lambda x: np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=axes, keepdims=True))
    return (d * (norm(w) / (norm(d) + 1e-10))).astype(w.dtype)

  return jax.tree.map(one, jax.device_get(params))


def training_subset(trained: TrainedModels, options: LandscapeOptions):
  """The seeded subset of training images (normalised, not augmented), labels and mask, sharded."""
  data, count = trained.inputs.data, trained.inputs.num_train
  if options.num_examples > count:
    raise ConfigError(f"landscape --examples={options.num_examples} is invalid: allowed values are 1 to the "
                      f"{count} training examples")
  picked = np.sort(np.random.default_rng(options.seed).permutation(count)[:options.num_examples])
  images = normalize(data.train_images[picked], data.mean, data.std)
  return padded_examples(images, data.train_labels[picked], jnp.ones(len(picked), jnp.float32))


def make_surface_fn(graphdef: nnx.GraphDef, points_per_call: int):
  """A compiled (params, batch_stats, directions [2, ...], coefficients [P, 2], images, labels, mask)
  -> (loss [P], error [P]): every point in one call."""

  def at(params, batch_stats, directions, ab, images, labels, mask):
    moved = jax.tree.map(lambda w, d: w + jnp.tensordot(ab.astype(w.dtype), d, axes=1), params, directions)
    logits = nnx.merge(graphdef, moved, batch_stats)(images, train=False)
    return masked_loss_error(logits, labels, mask)

  @jax.jit
  def surface(params, batch_stats, directions, coefficients, images, labels, mask):
    return jax.lax.map(lambda ab: at(params, batch_stats, directions, ab, images, labels, mask), coefficients,
                       batch_size=points_per_call)

  return surface


def model_landscape(trained: TrainedModels, index: int, options: LandscapeOptions, surface_fn=None) -> dict:
  """The record of model `index`: the 1-D slice, the 2-D surface and the trained point's loss and error."""
  start = time.perf_counter()
  params, batch_stats = trained.states[index]
  rng = np.random.default_rng(options.seed)
  directions = jax.tree.map(lambda x, y: np.stack([x, y]), filter_normalized_direction(rng, params),
                            filter_normalized_direction(rng, params))
  line, grid = options.coefficients(options.line), options.coefficients(options.grid)
  a, b = np.meshgrid(grid, grid)  # rows: b (dy), columns: a (dx)
  points = np.concatenate([np.stack([line, np.zeros_like(line)], 1), np.stack([a.ravel(), b.ravel()], 1)])
  surface_fn = surface_fn or make_surface_fn(trained.graphdef, options.points_per_call)
  loss, error = jax.device_get(surface_fn(params, batch_stats, directions, jnp.asarray(points, jnp.float32),
                                          *training_subset(trained, options)))
  middle = options.line // 2
  shape = (options.grid, options.grid)
  checkpoint = trained.checkpoint
  return dict(
      key=dict(step=checkpoint.step, options=options.key_options()),
      analysis=NAME, workdir=checkpoint.workdir, seed=checkpoint.seeds[index],
      variant=checkpoint.config.model.variant, depth=int(checkpoint.config.model.depth),
      num_examples=options.num_examples, direction_seed=options.seed,
      method=("filter-normalised Gaussian directions (Li et al. 2018); biases and BatchNorm parameters not moved; "
              "BatchNorm in inference mode with the trained running statistics; cross-entropy without weight "
              "decay on a seeded subset of un-augmented training images"),
      trained=dict(loss=float(loss[middle]), error=float(error[middle])),
      line=dict(coefficients=round_floats(line), loss=round_floats(loss[:options.line]),
                error=round_floats(error[:options.line])),
      surface=dict(coefficients=round_floats(grid), loss=round_floats(loss[options.line:].reshape(shape)),
                   error=round_floats(error[options.line:].reshape(shape))),
      seconds=round(time.perf_counter() - start, 2))


def summary(path: str) -> str:
  """One line for the command line: where the record is and what it found."""
  record = read_record(path)
  loss = np.asarray(record["surface"]["loss"])
  return (f"{path}: {record['variant']}-{record['depth']} seed {record['seed']}, step {record['key']['step']}: "
          f"trained point loss {record['trained']['loss']:.4g}, error {100 * record['trained']['error']:.2f} %; "
          f"2-D slice loss {loss.min():.3g} to {loss.max():.3g} ({record['seconds']} s)")


def run_landscape(workdir: str, options: LandscapeOptions | None = None, *, all_seeds: bool = False,
                  written: Callable[[dict, str], None] | None = None) -> list[str]:
  """<model folder>/analysis/landscape.json for the first (or every) model of a work
  directory; kept when already computed for this checkpoint and these options; `written(record, stem)`
  follows each record written. Returns the JSON paths."""
  options = options or LandscapeOptions()

  def compute(trained: TrainedModels):
    surface_fn = make_surface_fn(trained.graphdef, options.points_per_call)
    return lambda index: model_landscape(trained, index, options, surface_fn)

  return run_analysis(workdir, NAME, options.key_options(), all_seeds, compute, written)
