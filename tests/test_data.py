"""Data: loaders (digits, Fashion-MNIST offline, CIFAR-10 through mocked tensorflow-datasets),
the example order, on-device augmentation and normalisation statistics."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax.config import base_config
from resnet_jax.data.augment import normalization_stats, normalize, pad_crop_flip
from resnet_jax.data.order import train_batch_indices
from resnet_jax.data.sources import DIGITS_TEST_SIZE, FASHION_MNIST_DIR, load_dataset
from resnet_jax.errors import ConfigError


def data_config(name: str, **fields):
  data = base_config().data
  data.name = name
  for key, value in fields.items():
    data[key] = value
  return data


def assert_split(split, n, shape):
  assert split.images.shape == (n, *shape) and split.images.dtype == np.uint8
  assert split.labels.shape == (n,) and split.labels.dtype == np.int32


# ----------------------------------------------------------------------------- example order

order = jax.jit(train_batch_indices, static_argnums=(2, 3))


def _epoch(key, epoch, num_examples, batch_size):
  steps = num_examples // batch_size
  return np.concatenate([np.asarray(order(key, jnp.asarray(epoch * steps + s), num_examples, batch_size))
                         for s in range(steps)])


def test_each_epoch_is_a_permutation_and_epochs_differ():
  key = jax.random.PRNGKey(0)
  first, second = _epoch(key, 0, 50, 10), _epoch(key, 1, 50, 10)
  assert sorted(first) == sorted(second) == list(range(50))  # every example exactly once per epoch
  assert not np.array_equal(first, second)
  np.testing.assert_array_equal(first, _epoch(key, 0, 50, 10))  # a pure function of (key, step)
  assert not np.array_equal(first, _epoch(jax.random.PRNGKey(1), 0, 50, 10))  # the seed matters


def test_the_last_partial_batch_of_an_epoch_is_dropped():
  key = jax.random.PRNGKey(3)
  epoch = _epoch(key, 0, 53, 10)  # 5 steps of 10: 3 examples left out, none twice
  assert len(epoch) == len(set(epoch)) == 50 and epoch.max() < 53
  batch = np.asarray(order(key, jnp.asarray(5), 53, 10))  # step 5 starts epoch 1
  np.testing.assert_array_equal(batch, _epoch(key, 1, 53, 10)[:10])


# ----------------------------------------------------------------------------- augmentation

augment = jax.jit(pad_crop_flip, static_argnums=(2, 3))  # one compile per (pad, flip)


def _images(seed=0):
  return np.random.RandomState(seed).randint(0, 256, (32, 6, 6, 1)).astype(np.uint8)


def test_pad_crop_flip_keeps_shapes_and_without_pad_or_flip_is_the_identity():
  images, key = _images(), jax.random.key(1)
  out = augment(key, images, 2, True)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert not np.array_equal(out, images)
  np.testing.assert_array_equal(augment(key, images, 0, False), images)


def test_flip_mirrors_some_images_and_keeps_the_others():
  images = _images(1)
  out = np.asarray(augment(jax.random.key(2), images, 0, True))
  same = [np.array_equal(o, i) for o, i in zip(out, images)]
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  assert all(s or m for s, m in zip(same, mirrored))
  assert any(same) and any(mirrored)


def test_pad_crop_takes_crops_of_the_zero_padded_image():
  images = _images(2)
  out = np.asarray(augment(jax.random.key(5), images, 2, False))
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets = set()
  for o, p in zip(out, padded):
    matches = [(y, x) for y in range(5) for x in range(5) if np.array_equal(o, p[y:y + 6, x:x + 6])]
    assert matches, "an output is not a crop of the padded image"
    offsets.add(matches[0])
  assert len(offsets) > 5  # random offsets, not one fixed crop
  # Same key, same crops: augmentation is a pure function of the key.
  np.testing.assert_array_equal(out, augment(jax.random.key(5), images, 2, False))


def test_normalization_stats():
  images = np.random.RandomState(0).randint(0, 256, (20, 4, 5, 3)).astype(np.uint8)
  mean, std = normalization_stats(images, "pixel_mean")
  assert mean.shape == (4, 5, 3) and std.shape == (1, 1, 3) and mean.dtype == np.float32
  np.testing.assert_allclose(mean, images.mean(0) / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(std, 1.0)
  mean, std = normalization_stats(images, "channel_mean_std")
  assert mean.shape == std.shape == (1, 1, 3)
  normalized = np.asarray(normalize(jnp.asarray(images), mean, std))
  np.testing.assert_allclose(normalized.mean((0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(normalized.std((0, 1, 2)), 1.0, rtol=1e-4)
  mean, std = normalization_stats(images, "none")
  np.testing.assert_allclose(np.asarray(normalize(jnp.asarray(images), mean, std)), images / 255.0, rtol=1e-6)
  with pytest.raises(ConfigError, match=r"data\.normalize='std' is invalid: allowed values are pixel_mean"):
    normalization_stats(images, "std")


# ----------------------------------------------------------------------------- loaders

def test_digits_loads_offline():
  dataset = load_dataset(data_config("digits"))
  assert_split(dataset.train, 1500, (8, 8, 1))
  assert_split(dataset.eval, DIGITS_TEST_SIZE, (8, 8, 1))
  assert DIGITS_TEST_SIZE == 297 and dataset.num_classes == 10
  assert dataset.train.images.max() == 255 and set(np.unique(dataset.eval.labels)) == set(range(10))
  again = load_dataset(data_config("digits"))  # a fixed split
  np.testing.assert_array_equal(again.eval.images, dataset.eval.images)


def test_digits_validation_is_held_out_of_train():
  full = load_dataset(data_config("digits"))
  held = load_dataset(data_config("digits", validation_size=300, eval_split="validation"))
  assert len(held.train) == 1200 and len(held.eval) == 300
  np.testing.assert_array_equal(held.train.images, full.train.images[:1200])
  np.testing.assert_array_equal(held.eval.labels, full.train.labels[1200:])
  test = load_dataset(data_config("digits", validation_size=300, eval_split="test"))
  assert len(test.train) == 1200
  np.testing.assert_array_equal(test.eval.images, full.eval.images)


def test_fashion_mnist_loads_from_the_debian_package(fashion_mnist_dir):
  assert fashion_mnist_dir == FASHION_MNIST_DIR
  dataset = load_dataset(data_config("fashion_mnist"))
  assert_split(dataset.train, 60_000, (28, 28, 1))
  assert_split(dataset.eval, 10_000, (28, 28, 1))
  assert dataset.num_classes == 10
  assert np.bincount(dataset.train.labels).tolist() == [6000] * 10


MOCK_EXAMPLES = 24


@pytest.fixture
def mock_cifar10(tmp_path):
  """tfds.testing.mock_data with real split metadata.

  Without metadata (the pip package ships none) mock_data knows no split sizes, and
  as_dataset(batch_size=-1) then batches by sys.maxsize, which aborts the process.
  """
  import tensorflow_datasets as tfds  # a test dependency (resnet-jax[test]): missing is a failure
  builder = tfds.builder("cifar10", data_dir=str(tmp_path))
  template = lambda split: tfds.core.ShardedFileTemplate(
      data_dir=builder.data_path, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
      dataset_name="cifar10", split=split, filetype_suffix="tfrecord")
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[MOCK_EXAMPLES], num_bytes=0, filename_template=template(split))
      for split in ("train", "test")]))
  os.makedirs(builder.data_path, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=str(tmp_path),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield


def test_cifar10_through_mocked_tfds(mock_cifar10):
  dataset = load_dataset(data_config("cifar10"))
  assert_split(dataset.train, MOCK_EXAMPLES, (32, 32, 3))
  assert_split(dataset.eval, MOCK_EXAMPLES, (32, 32, 3))
  assert dataset.num_classes == 10 and dataset.train.labels.max() < 10
  held = load_dataset(data_config("cifar10", validation_size=5, eval_split="validation"))
  assert_split(held.train, MOCK_EXAMPLES - 5, (32, 32, 3))
  assert_split(held.eval, 5, (32, 32, 3))
  np.testing.assert_array_equal(held.train.images, dataset.train.images[:-5])
  np.testing.assert_array_equal(held.eval.images, dataset.train.images[-5:])
  np.testing.assert_array_equal(held.eval.labels, dataset.train.labels[-5:])
