"""Where the trainer's batches come from: in device memory (small datasets) or streamed (ImageNet, large tfds: sets).

Both give the compiled steps a pytree: `DeviceData` (the whole dataset; the step picks its
own batch from the step number) or `StreamedBatch` (one global batch, built from every
process's local share). The data position is the train step in both cases.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from resnet_jax.data.augment import normalization_stats
from resnet_jax.data.order import steps_per_epoch
from resnet_jax.data.registry import is_streamed
from resnet_jax.data.sources import load_dataset
from resnet_jax.train.parallel import batch_sharded, put_replicated
from resnet_jax.train.step import DeviceData, StreamedBatch, pad_eval_split
from resnet_jax.data import imagenet

class InMemoryInputs:
  """The whole training and eval set replicated on every device."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
    self.dataset = load_dataset(config.data)
    self.num_train, self.num_classes = len(self.dataset.train), self.dataset.num_classes
    self.steps_per_epoch = steps_per_epoch(self.num_train, config.data.batch_size)
    self.image_shape = self.dataset.image_shape
    self.eval_batch_size = config.data.eval_batch_size
    mean, std = normalization_stats(self.dataset.train.images, config.data.normalize)
    eval_images, eval_labels, eval_mask = pad_eval_split(
        self.dataset.eval.images, self.dataset.eval.labels, config.data.eval_batch_size)
    self.data = put_replicated(DeviceData(self.dataset.train.images, self.dataset.train.labels, eval_images,
                                          eval_labels, eval_mask, mean, std), mesh)

  def train_batches(self, start_step: int) -> Iterator[DeviceData]:
    del start_step  # the step selects its batch from the step number
    while True:
      yield self.data

  def eval_batches(self) -> Iterator[tuple[DeviceData, jax.Array]]:
    for index in range(self.data.eval_mask.shape[0] // self.eval_batch_size):
      yield self.data, jnp.asarray(index)


class StreamedInputs:
  """tf.data batches of this process's share, assembled into global arrays sharded over 'data'."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
    self.imagenet, self.config, self.mesh = imagenet, config, mesh
    data = config.data
    stream = imagenet.StreamConfig.from_data_config(data)
    self.num_train = imagenet.num_examples(stream.resolved_tfds_name, stream.tfds_train_split, data.data_dir)
    self.steps_per_epoch = imagenet.steps_per_epoch(data, data.batch_size, jax.process_count())
    self.num_classes = imagenet.num_classes(stream.resolved_tfds_name, data.data_dir, stream.label_key)
    self.image_shape = (data.image_size, data.image_size, 3)
    self.mean, self.std = put_replicated(normalization_stats(None, data.normalize), mesh)

  def _global(self, batch: dict[str, np.ndarray]) -> StreamedBatch:
    arrays = {k: jax.make_array_from_process_local_data(batch_sharded(self.mesh), v) for k, v in batch.items()}
    mask = arrays.get("mask", jnp.ones(arrays["labels"].shape, jnp.float32))
    return StreamedBatch(arrays["images"], arrays["labels"], mask, self.mean, self.std)

  def _process_args(self) -> dict:
    return dict(process_index=jax.process_index(), process_count=jax.process_count(),
                image_size=self.config.data.image_size)

  def train_batches(self, start_step: int) -> Iterator[StreamedBatch]:
    for batch in self.imagenet.train_iterator(self.config.data, seed=self.config.seed, start_step=start_step,
                                              global_batch_size=self.config.data.batch_size, **self._process_args()):
      yield self._global(batch)

  def eval_batches(self) -> Iterator[tuple[StreamedBatch, jax.Array]]:
    for batch in self.imagenet.eval_iterator(self.config.data, global_batch_size=self.config.data.eval_batch_size,
                                             crops=self.config.data.eval_crops, **self._process_args()):
      yield self._global(batch), jnp.asarray(0)


def make_inputs(config: ml_collections.ConfigDict, mesh: Mesh) -> InMemoryInputs | StreamedInputs:
  return (StreamedInputs if is_streamed(config.data) else InMemoryInputs)(config, mesh)
