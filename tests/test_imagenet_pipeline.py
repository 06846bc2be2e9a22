"""The streamed ImageNet pipeline (resnet_jax.data.imagenet) on tiny fake tfds datasets.

`tfds.testing.mock_data` replaces the records by random JPEGs (5-50 pixels a side) but
ignores split slicing and file-shuffle seeds, and without metadata files knows no split sizes.
So a session fixture (tests/conftest.py) writes real tfds datasets (imagenet2012 5.1.0 and imagenette
full-size-v2, 4 shards per split, every label unique to its example) with the real builders'
features: mock_data (policy USE_FILES) reads their metadata for the shape and decoding tests;
order, resume, sharding and exactly-once eval run on the files themselves.
"""

from __future__ import annotations

import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from resnet_jax.data.stream_config import TRAIN_CROPS
from resnet_jax.errors import ConfigError

from conftest import EVAL_SIZE, TRAIN_SIZE
SMALL = 64  # image_size for the order tests: crops stay cheap


def _data(data_dir: str, name: str = "imagenet2012", **fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name=name, data_dir=data_dir, shuffle_buffer=16, **fields))


def _train(data, batch=8, start_step=0, seed=0, process_index=0, process_count=1, image_size=SMALL):
  from resnet_jax.data import imagenet
  return imagenet.train_iterator(data, seed=seed, start_step=start_step, global_batch_size=batch,
                                 process_index=process_index, process_count=process_count, image_size=image_size)


def _take(iterator, count: int) -> list[dict[str, np.ndarray]]:
  return [next(iterator) for _ in range(count)]


def test_import_does_not_import_tensorflow(repo):
  code = "import resnet_jax.data.imagenet, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
  subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)


@pytest.mark.parametrize("name", ["imagenet2012", "imagenette"])
def test_mock_batches_have_the_documented_shapes(fake_tfds_dir, name):
  import tensorflow_datasets as tfds
  from resnet_jax.data import imagenet
  size = 10 if name == "imagenette" else TRAIN_SIZE  # the fake splits' sizes
  with tfds.testing.mock_data(num_examples=size, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=fake_tfds_dir):
    classes = imagenet.num_classes(name)
    for crop in TRAIN_CROPS:
      batch = next(_train(_data(fake_tfds_dir, name, train_crop=crop, color_augment="jitter_lighting"),
                          batch=4, image_size=224))
      assert batch["images"].shape == (4, 224, 224, 3) and batch["images"].dtype == np.uint8
      assert batch["labels"].dtype == np.int32 and ((batch["labels"] >= 0) & (batch["labels"] < classes)).all()
    for crops, shape in (("center", (4, 224, 224, 3)), ("ten", (4, 10, 224, 224, 3))):
      batch = next(imagenet.eval_iterator(_data(fake_tfds_dir, name), global_batch_size=4, process_index=0,
                                          process_count=1, crops=crops))
      assert batch["images"].shape == shape and batch["images"].dtype == np.uint8
      assert batch["mask"].tolist() == [1.0] * 4


@pytest.mark.parametrize("cache", [False, True])
def test_train_order_is_a_fresh_permutation_each_epoch_and_deterministic(fake_tfds_dir, cache):
  data = _data(fake_tfds_dir, cache=cache)
  batches = _take(_train(data), 10)  # 5 steps per epoch
  epochs = [np.concatenate([b["labels"] for b in batches[i:i + 5]]) for i in (0, 5)]
  for labels in epochs:
    assert sorted(labels) == list(range(TRAIN_SIZE))
  assert epochs[0].tolist() != epochs[1].tolist()
  again = _take(_train(data), 2)
  for first, second in zip(batches, again):
    np.testing.assert_array_equal(first["images"], second["images"])
    np.testing.assert_array_equal(first["labels"], second["labels"])
  assert next(_train(data, seed=1))["labels"].tolist() != batches[0]["labels"].tolist()


def test_resume_at_step_k_yields_batch_k(fake_tfds_dir):
  data = _data(fake_tfds_dir)
  fresh = _take(_train(data), 8)
  for step in (3, 7):  # within the first epoch, and within the second
    resumed = next(_train(data, start_step=step))
    np.testing.assert_array_equal(resumed["labels"], fresh[step]["labels"])
    np.testing.assert_array_equal(resumed["images"], fresh[step]["images"])


def test_processes_read_disjoint_shares_that_cover_the_split(fake_tfds_dir):
  shares = []
  for index in range(2):
    batches = _take(_train(_data(fake_tfds_dir), batch=8, process_index=index, process_count=2), 5)
    assert batches[0]["images"].shape == (4, SMALL, SMALL, 3)
    shares.append(set(np.concatenate([b["labels"] for b in batches]).tolist()))
  assert not shares[0] & shares[1]
  assert shares[0] | shares[1] == set(range(TRAIN_SIZE))


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_counts_every_example_once(fake_tfds_dir, process_count):
  from resnet_jax.data import imagenet
  seen, num_batches = [], set()
  for index in range(process_count):
    batches = list(imagenet.eval_iterator(_data(fake_tfds_dir), global_batch_size=6, process_index=index,
                                          process_count=process_count, image_size=SMALL))
    num_batches.add(len(batches))
    for batch in batches:
      assert batch["images"].shape == (6 // process_count, SMALL, SMALL, 3)
      seen += batch["labels"][batch["mask"] == 1].tolist()
  assert len(num_batches) == 1
  assert len(seen) == EVAL_SIZE == imagenet.num_examples("imagenet2012", "validation", fake_tfds_dir)
  assert sorted(seen) == list(range(EVAL_SIZE))


def test_ten_crop_eval_shape_and_flips(fake_tfds_dir):
  from resnet_jax.data import imagenet
  batches = list(imagenet.eval_iterator(_data(fake_tfds_dir), global_batch_size=8, process_index=0, process_count=1,
                                        image_size=SMALL, crops="ten"))
  assert [b["images"].shape for b in batches] == [(8, 10, SMALL, SMALL, 3)] * 3
  assert sum(b["mask"].sum() for b in batches) == EVAL_SIZE
  np.testing.assert_array_equal(batches[0]["images"][:, 5:], batches[0]["images"][:, :5, :, ::-1])


@pytest.mark.parametrize("field, value", [("train_crop", "foo"), ("color_augment", "pca"), ("name", "cifar10"),
                                          ("scale_range", (480, 256)), ("shuffle_buffer", 0)])
def test_bad_fields_raise_one_clear_error(field, value):
  from resnet_jax.data import imagenet
  data = ml_collections.ConfigDict(dict(name="imagenet2012", data_dir=None))
  data[field] = value
  with pytest.raises(ConfigError, match=f"data.{field}="):
    imagenet.StreamConfig.from_data_config(data)


def test_a_missing_dataset_says_how_to_prepare_it(tmp_path):
  from resnet_jax.data import imagenet
  from resnet_jax.errors import DatasetUnavailable
  with pytest.raises(DatasetUnavailable, match="tfds build imagenette/full-size-v2"):
    imagenet.num_examples("imagenette", "train", str(tmp_path))


def test_streamed_normalization_stats_are_the_imagenet_constants():
  from resnet_jax.data import augment
  mean, std = augment.normalization_stats(None, "channel_mean_std")
  assert mean.shape == std.shape == (1, 1, 3) and mean.dtype == std.dtype == np.float32
  np.testing.assert_allclose(mean.ravel(), augment.IMAGENET_MEAN_RGB)
  np.testing.assert_allclose(std.ravel(), augment.IMAGENET_STD_RGB)
  for kind in ("pixel_mean", "channel_mean"):  # no mean image from a stream: the channel mean
    mean, std = augment.normalization_stats(None, kind)
    np.testing.assert_allclose(mean.ravel(), augment.IMAGENET_MEAN_RGB)
    np.testing.assert_array_equal(std, 1.0)
