"""ImageNet-scale data: tensorflow-datasets JPEG records streamed through tf.data to numpy batches.

Where the streamed training order is decided. Each process reads its own even share of the
split. Epoch e of process p is shuffled with seeds derived from (seed, e, p): tfds shuffles
the files, a seeded tf.data buffer the examples, and every example's augmentation is keyed by
its position in the epoch. The data position is therefore the train step alone: a run
resumed at step k skips whole epochs arithmetically and k mod steps_per_epoch batches of
encoded records (before decoding) and yields exactly the batches an uninterrupted run yields.

Batches stay uint8; the trainer normalises them on the accelerator (`augment.normalization_stats`).
TensorFlow is imported inside the functions only, and told to keep off the GPUs first.
Besides imagenet2012 and imagenette, any tfds: set too large for memory streams here (tfds_data.py):
its Image and ClassLabel features are read as 'image' and 'label'; its images must be JPEG.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from resnet_jax.data import order
from resnet_jax.data.registry import EVAL_CROPS, TFDS_NAMES
from resnet_jax.data.stream_config import StreamConfig
from resnet_jax.errors import ConfigError, DatasetUnavailable
from resnet_jax.data.tf_runtime import hide_gpus_from_tensorflow
from resnet_jax.data.tfds_data import is_prepared
from resnet_jax.data.tfds_data import label_feature
from resnet_jax.data.tfds_data import feature_keys
from resnet_jax.data.tfds_data import eval_split

if TYPE_CHECKING:
  import tensorflow as tf

Batch = dict[str, np.ndarray]


def _builder(tfds_name: str, data_dir: str | None):
  """The prepared tfds builder, with TensorFlow kept off the GPUs."""
  hide_gpus_from_tensorflow()
  import tensorflow_datasets as tfds
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if not is_prepared(builder):
    raise DatasetUnavailable(
        f"{tfds_name} is not prepared in data.data_dir={str(builder.data_dir_root)!r}. Prepare it with "
        f"`tfds build {tfds_name} --data_dir=DIR` (ImageNet: put ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar in DIR/downloads/manual first) and set --config.data.data_dir=DIR")
  return builder


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
  """Examples in a split ('validation', 'train[:1%]', ...) of a data.name or a full tfds name."""
  return _builder(TFDS_NAMES.get(name, name), data_dir).info.splits[split].num_examples


def num_classes(name: str, data_dir: str | None = None, label_key: str | None = None) -> int:
  """Label classes of a data.name or a full tfds name (imagenet2012: 1000, imagenette: 10): of its
  `label_key` feature, by default its single ClassLabel."""
  features = _builder(TFDS_NAMES.get(name, name), data_dir).info.features
  return features[label_feature(features, name, label_key)].num_classes


def _local_batch(global_batch_size: int, process_count: int, field: str) -> int:
  """This process's batch; the global batch must split evenly over the processes."""
  if global_batch_size < process_count or global_batch_size % process_count:
    raise ConfigError(f"data.{field}={global_batch_size} does not divide over {process_count} processes: "
                      f"use a multiple of {process_count}")
  return global_batch_size // process_count


def _check_process(process_index: int, process_count: int) -> None:
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")


def _steps_per_epoch(builder, config: StreamConfig, global_batch_size: int, process_count: int) -> int:
  """Train steps per epoch: each process's equal share of the split, in whole local batches."""
  _local_batch(global_batch_size, process_count, "batch_size")
  num_examples = builder.info.splits[config.tfds_train_split].num_examples
  steps = order.steps_per_epoch(num_examples, global_batch_size, process_count)
  if steps < 1:
    raise ConfigError(f"data.batch_size={global_batch_size} exceeds the {num_examples} examples of "
                      f"{config.tfds_train_split!r} shared by {process_count} processes")
  return steps


def steps_per_epoch(data_cfg: Any, global_batch_size: int, process_count: int) -> int:
  """Train steps per epoch of a streamed dataset (reads the split's size from its tfds metadata)."""
  config = StreamConfig.from_data_config(data_cfg)
  builder = _builder(config.resolved_tfds_name, config.data_dir)
  return _steps_per_epoch(builder, config, global_batch_size, process_count)


def _options(config: StreamConfig) -> tf.data.Options:
  import tensorflow as tf
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1
  if config.num_workers is not None:
    options.threading.private_threadpool_size = config.num_workers
  if config.ram_budget_gb is not None:
    options.autotune.ram_budget = int(config.ram_budget_gb * 2**30)
  return options


def _records(builder, split, config: StreamConfig, *, shuffle_seed: int | None) -> tf.data.Dataset:
  """Encoded {'image': JPEG bytes, 'label'} records of `split`; files shuffled when a seed is given."""
  import tensorflow_datasets as tfds
  image, label = feature_keys(builder.info.features, config.name, config.image_key, config.label_key)
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False,
                                try_autocache=False, options=_options(config))
  records = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None, read_config=read_config,
                               decoders={image: tfds.decode.SkipDecoding()})
  if (image, label) == ("image", "label"):
    return records
  return records.map(lambda record: {"image": record[image], "label": record[label]})


def _epoch_seeds(seed: int, epoch: int, process_index: int) -> tuple[int, int, int]:
  """(file order, example order, augmentation) seeds of one process's epoch."""
  files, examples, augment = np.random.SeedSequence([seed, epoch, process_index]).generate_state(3)
  return int(files), int(examples), int(augment)


def train_batches(records: tf.data.Dataset, config: StreamConfig, *, augment_seed: int, local_batch: int,
                  image_size: int, skip_batches: int = 0) -> tf.data.Dataset:
  """Shuffled encoded records of one epoch -> augmented uint8 batches (skipping before decoding)."""
  import tensorflow as tf
  from resnet_jax.data import imagenet_preprocess  # heavy optional dependency: it imports TensorFlow
  preprocess = functools.partial(imagenet_preprocess.train_image, crop=config.train_crop,
                                 color=config.color_augment, image_size=image_size, scale_range=config.scale_range)

  def example(index, record):
    seed = tf.stack([tf.constant(augment_seed, tf.int64), index])
    return {"images": preprocess(record["image"], seed), "labels": tf.cast(record["label"], tf.int32)}

  parallel = config.num_workers or tf.data.AUTOTUNE
  dataset = records.enumerate().skip(skip_batches * local_batch).map(example, num_parallel_calls=parallel)
  return dataset.batch(local_batch, drop_remainder=True).prefetch(config.prefetch).with_options(_options(config))


def train_iterator(data_cfg: Any, *, seed: int, start_step: int, global_batch_size: int, process_index: int,
                   process_count: int, image_size: int = 224) -> Iterator[Batch]:
  """Endless {'images': uint8 [B, s, s, 3], 'labels': int32 [B]} batches from `start_step` on, B = global / processes.

  Epochs are this process's share of the train split, reshuffled per epoch, the last partial
  batch dropped; batch k of the stream is a pure function of (seed, k, process).
  """
  import tensorflow_datasets as tfds
  config = StreamConfig.from_data_config(data_cfg)
  _check_process(process_index, process_count)
  if start_step < 0:
    raise ValueError(f"start_step={start_step} must be >= 0")
  builder = _builder(config.resolved_tfds_name, config.data_dir)
  steps = _steps_per_epoch(builder, config, global_batch_size, process_count)
  local_batch = global_batch_size // process_count
  share = tfds.even_splits(config.tfds_train_split, n=process_count, drop_remainder=True)[process_index]
  cached = _records(builder, share, config, shuffle_seed=None).cache() if config.cache else None

  def epoch_batches(epoch: int, skip_batches: int):
    file_seed, example_seed, augment_seed = _epoch_seeds(seed, epoch, process_index)
    records = cached if cached is not None else _records(builder, share, config, shuffle_seed=file_seed)
    records = records.shuffle(config.shuffle_buffer, seed=example_seed, reshuffle_each_iteration=False)
    records = records.take(steps * local_batch)
    return train_batches(records, config, augment_seed=augment_seed, local_batch=local_batch,
                         image_size=image_size, skip_batches=skip_batches).as_numpy_iterator()

  def stream():
    first_epoch, position = divmod(start_step, steps)
    for epoch in itertools.count(first_epoch):
      yield from epoch_batches(epoch, position if epoch == first_epoch else 0)

  return stream()


def eval_iterator(data_cfg: Any, *, global_batch_size: int, process_index: int, process_count: int,
                  image_size: int = 224, crops: str = "center") -> Iterator[Batch]:
  """Every example of the eval split once over all processes, as {'images', 'labels', 'mask'} batches.

  images: uint8 [B, s, s, 3] ('center') or [B, 10, s, s, 3] ('ten': centre, 4 corners, then
  the same 5 flipped); labels int32 [B]; mask float32 [B], 0 on padding. Every process yields
  the same number of batches, padding its last ones (fully masked where its share is shorter).
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds
  from resnet_jax.data import imagenet_preprocess  # heavy optional dependency: it imports TensorFlow
  if crops not in EVAL_CROPS:
    raise ConfigError(f"data.eval_crops={crops!r} is invalid: allowed values are {', '.join(EVAL_CROPS)}")
  config = StreamConfig.from_data_config(data_cfg)
  _check_process(process_index, process_count)
  local_batch = _local_batch(global_batch_size, process_count, "eval_batch_size")
  builder = _builder(config.resolved_tfds_name, config.data_dir)
  split = eval_split(config.name, config.tfds_eval_split, builder.info.splits)
  share = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
  total, share_size = (builder.info.splits[s].num_examples for s in (split, share))
  num_batches = math.ceil(math.ceil(total / process_count) / local_batch)
  view = functools.partial(imagenet_preprocess.ten_crop if crops == "ten" else imagenet_preprocess.center_crop,
                           resize=config.eval_resize)

  def example(record):
    return {"images": view(record["image"], image_size, config.eval_crop_fraction),
            "labels": tf.cast(record["label"], tf.int32), "mask": tf.constant(1.0)}

  dataset = _records(builder, share, config, shuffle_seed=None)
  dataset = dataset.map(example, num_parallel_calls=config.num_workers or tf.data.AUTOTUNE)
  padding = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), dataset.element_spec)
  dataset = dataset.concatenate(tf.data.Dataset.from_tensors(padding).repeat(num_batches * local_batch - share_size))
  dataset = dataset.batch(local_batch).prefetch(config.prefetch).with_options(_options(config))
  return dataset.as_numpy_iterator()
