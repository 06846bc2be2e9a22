"""Lesion study of trained models (Veit et al. 2016, "Residual Networks Behave Like Ensembles of Relatively
Shallow Networks"): test error when blocks are deleted at test time.

Deleting a block removes its residual branch and keeps its shortcut: a post-activation block then
outputs relu(shortcut(x)), a pre-activation block shortcut(x); an option-A downsampling block keeps its
subsampling and zero channels, a projection its 1x1 convolution. A plain block has no shortcut: deleted,
it passes its input on unchanged (the identity its residual twin would add), and a plain block that
changes the shape (the first of each later stage) cannot be deleted at all: it is reported as such and
never drawn. Two experiments: each deletable block alone, and k = 1..n deletable blocks drawn at random
(`draws` seeded draws per k). BatchNorm runs in inference mode; the error is over the whole test split.

  resnet-jax analyze lesion --workdir runs/digits/residual-56   ->  <model folder>/analysis/lesion.json
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resnet_jax.analysis.trained import (TrainedModels, check_options, masked_loss_error, option, padded_examples,
                                            read_record, round_floats, run_analysis)
from resnet_jax.data.augment import normalize
from resnet_jax.models.analysis import trace_blocks

NAME = "lesion"


@dataclasses.dataclass(frozen=True)
class LesionOptions:
  """What a lesion study is computed with; part of the record's key (a change recomputes it)."""
  draws: int = option(3, "random draws of k deleted blocks, for each k")
  seed: int = option(0, "seed of the draws")
  patterns_per_call: int = option(1, "lesion patterns vmapped together in the one compiled call (1: a loop, "
                                     "fastest on CPU)")

  def __post_init__(self):
    check_options(self, NAME, ("draws", "patterns_per_call"),
                  lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "whole numbers >= 1")

  def key_options(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "patterns_per_call"}


def block_layout(model: nnx.Module, image_shape: tuple[int, ...]) -> list[dict]:
  """Per block in network order: its name, whether it changes the shape, whether it can be deleted."""
  rows = []

  def record(name, block, x):
    y = block(x, train=False)
    downsampling = y.shape != x.shape
    rows.append(dict(name=name, downsampling=downsampling, deletable=block.shortcut is not None or not downsampling))
    return y

  trace_blocks(model, image_shape, record)
  return rows


def lesioned_block(block: nnx.Module, x: jax.Array, keep: jax.Array) -> jax.Array:
  """The block with its residual branch scaled by `keep` (1: as trained, 0: deleted). A deleted plain
  block passes its input on unchanged, the identity its residual twin would add (post-activation
  plain blocks then apply their ReLU to a ReLU output: the identity too)."""
  branch, skip = block.parts(x, train=False)
  keep = jnp.asarray(keep, branch.dtype)
  if skip is None:
    if branch.shape != x.shape:
      raise ValueError(f"a plain block that maps {x.shape[1:]} to {branch.shape[1:]} cannot be deleted: "
                       "it has no shortcut to keep")
    skip = (1 - keep) * x
  return block.join(keep * branch, skip)


def lesioned_logits(model: nnx.Module, images: jax.Array, keep: jax.Array, deletable: tuple[bool, ...]) -> jax.Array:
  """Logits with block i's residual branch scaled by keep[i]; blocks that cannot be deleted run ungated."""
  index = {name: i for i, (name, _) in enumerate(model.named_blocks())}

  def gated(name, block, x):
    i = index[name]
    return lesioned_block(block, x, keep[i]) if deletable[i] else block(x, train=False)

  return model(images, train=False, apply_block=gated)


def lesion_patterns(layout: list[dict], options: LesionOptions) -> tuple[np.ndarray, np.ndarray, list[int]]:
  """Keep-masks [P, blocks]: none deleted, then each deletable block alone, then `draws` random sets of
  k deletable blocks for k = 1..n. Also the single-deletion blocks and each random row's k."""
  deletable = [i for i, row in enumerate(layout) if row["deletable"]]
  rng = np.random.default_rng(options.seed)
  patterns = [np.ones(len(layout), np.float32)]
  for i in deletable:
    patterns.append(np.ones(len(layout), np.float32))
    patterns[-1][i] = 0
  ks = [k for k in range(1, len(deletable) + 1) for _ in range(options.draws)]
  for k in ks:
    patterns.append(np.ones(len(layout), np.float32))
    patterns[-1][rng.choice(deletable, k, replace=False)] = 0
  return np.stack(patterns), np.array(deletable, int), ks


def make_lesion_fn(graphdef: nnx.GraphDef, deletable: tuple[bool, ...], patterns_per_call: int):
  """A compiled (params, batch_stats, patterns [P, blocks], images, labels, mask) -> test error [P]."""

  def one(params, batch_stats, keep, images, labels, mask):
    logits = lesioned_logits(nnx.merge(graphdef, params, batch_stats), images, keep, deletable)
    return masked_loss_error(logits, labels, mask)[1]

  @jax.jit
  def errors(params, batch_stats, patterns, images, labels, mask):
    return jax.lax.map(lambda keep: one(params, batch_stats, keep, images, labels, mask), patterns,
                       batch_size=patterns_per_call)

  return errors


def eval_examples(trained: TrainedModels):
  """The real (unpadded) test examples, normalised, sharded over the devices."""
  data = trained.inputs.data
  count = int(np.asarray(data.eval_mask).sum())  # padding follows the real examples
  return padded_examples(normalize(data.eval_images[:count], data.mean, data.std), data.eval_labels[:count],
                         jnp.ones(count, jnp.float32))


def model_lesion(trained: TrainedModels, index: int, options: LesionOptions, layout: list[dict],
                 lesion_fn=None) -> dict:
  """The record of model `index`: test error with no block deleted, with each block deleted, and with k."""
  start = time.perf_counter()
  patterns, singles, ks = lesion_patterns(layout, options)
  deletable = tuple(row["deletable"] for row in layout)
  lesion_fn = lesion_fn or make_lesion_fn(trained.graphdef, deletable, options.patterns_per_call)
  images, labels, mask = eval_examples(trained)
  errors = np.asarray(jax.device_get(lesion_fn(*trained.states[index], jnp.asarray(patterns), images, labels, mask)))
  single = dict(zip(singles.tolist(), errors[1:1 + len(singles)]))
  random = errors[1 + len(singles):].reshape(-1, options.draws) if ks else np.zeros((0, options.draws))
  checkpoint = trained.checkpoint
  variant = checkpoint.config.model.variant
  return dict(
      key=dict(step=checkpoint.step, options=options.key_options()),
      analysis=NAME, workdir=checkpoint.workdir, seed=checkpoint.seeds[index], variant=variant,
      depth=int(checkpoint.config.model.depth), num_examples=int(np.asarray(mask).sum()), draw_seed=options.seed,
      method=_method(variant, layout),
      test_error=float(errors[0]),
      blocks=[dict(row, test_error=float(single[i]) if i in single else None) for i, row in enumerate(layout)],
      random=[dict(k=k, mean=float(e.mean()), std=float(e.std()), errors=round_floats(e))
              for k, e in zip(range(1, len(random) + 1), random)],
      seconds=round(time.perf_counter() - start, 2))


def _method(variant: str, layout: list[dict]) -> str:
  if variant != "plain":
    return "deleted block: residual branch removed, shortcut kept (post-activation: relu(shortcut(x)))"
  fixed = [row["name"] for row in layout if not row["deletable"]]
  return ("plain net, no shortcut to keep: a deleted block passes its input on unchanged; the shape-changing "
          f"blocks {', '.join(fixed) or '(none)'} cannot be deleted and always run")


def summary(path: str) -> str:
  """One line for the command line: where the record is and what it found."""
  record = read_record(path)
  singles = [100 * b["test_error"] for b in record["blocks"] if b["test_error"] is not None]
  fixed = [b["name"] for b in record["blocks"] if not b["deletable"]]
  line = (f"{path}: {record['variant']}-{record['depth']} seed {record['seed']}, step {record['key']['step']}: "
          f"test error {100 * record['test_error']:.2f} % intact, {min(singles):.1f} to {max(singles):.1f} % with "
          f"one of {len(singles)} blocks deleted, {100 * record['random'][-1]['mean']:.1f} % with all of them "
          f"({record['seconds']} s)")
  if fixed:
    line += f"; plain net: a deleted block passes its input on, {', '.join(fixed)} change the shape and always run"
  return line


def run_lesion(workdir: str, options: LesionOptions | None = None, *, all_seeds: bool = False,
               written: Callable[[dict, str], None] | None = None) -> list[str]:
  """<model folder>/analysis/lesion.json for the first (or every) model of a work
  directory; kept when already computed for this checkpoint and these options; `written(record, stem)`
  follows each record written. Returns the JSON paths."""
  options = options or LesionOptions()

  def compute(trained: TrainedModels):
    layout = block_layout(trained.model(0), trained.inputs.image_shape)
    lesion_fn = make_lesion_fn(trained.graphdef, tuple(row["deletable"] for row in layout), options.patterns_per_call)
    return lambda index: model_lesion(trained, index, options, layout, lesion_fn)

  return run_analysis(workdir, NAME, options.key_options(), all_seeds, compute, written)
