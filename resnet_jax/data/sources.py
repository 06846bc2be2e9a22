"""Load whole datasets into host memory as uint8 NHWC images and int32 labels.

digits (inside scikit-learn) and Fashion-MNIST (Debian's dataset-fashion-mnist files) work
offline; CIFAR-10/100 and Fashion-MNIST also load through tensorflow-datasets, which is
imported only when asked for. Your own data (tfds:, folder:, npz:) loads in tfds_data.py,
folder.py and npz.py; the validation hold-out below applies to every set.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from resnet_jax.data import folder, npz, tfds_data
from resnet_jax.data.registry import TFDS_NAMES, own_kind
from resnet_jax.data.splits import Dataset, Split
from resnet_jax.errors import ConfigError, DatasetUnavailable

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DIGITS_TEST_SIZE = 297  # 1797 digits: 1500 train, 297 test, a fixed shuffle


def load_dataset(data) -> Dataset:
  """The train split and the eval split named by a config's `data` section."""
  name = data.name
  if name == "synthetic":
    return _synthetic(data)
  if own_kind(name):
    train, test, num_classes = _own_loader(name)(data)
  else:
    train, test, num_classes = _LOADERS.get(name, _tfds)(name, data.data_dir)
  if data.validation_size:
    if data.validation_size >= len(train):
      raise ConfigError(f"data.validation_size={data.validation_size} must be below the {len(train)} "
                        f"training examples of {name}")
    cut = len(train) - data.validation_size
    train, validation = train.take(slice(None, cut)), train.take(slice(cut, None))
    test = validation if data.eval_split == "validation" else test
  return Dataset(train, test, num_classes)


def _own_loader(name: str):
  return {"tfds": tfds_data.load, "folder": folder.load, "npz": npz.load}[own_kind(name)[0]]


def _digits(name, data_dir):
  del name, data_dir
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.RandomState(0).permutation(len(labels))
  train, test = order[:-DIGITS_TEST_SIZE], order[-DIGITS_TEST_SIZE:]
  return Split(images[train], labels[train]), Split(images[test], labels[test]), 10


def _read_idx(path: str) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    raw = f.read()
  ndim = raw[3]
  shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(name, data_dir):
  directory = data_dir if data_dir and os.path.exists(os.path.join(data_dir, "train-images-idx3-ubyte.gz")) \
      else FASHION_MNIST_DIR
  if not os.path.isdir(directory):
    return _tfds(name, data_dir)

  def split(prefix):
    images = _read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"))[..., None]
    labels = _read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int32)
    return Split(np.ascontiguousarray(images), labels)

  return split("train"), split("t10k"), 10


def _tfds(name, data_dir):
  tfds = tfds_data.import_tfds(name)
  try:
    builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir)
    splits = {s: tfds.as_numpy(builder.as_dataset(split=s, batch_size=-1, as_supervised=True))
              for s in ("train", "test")}
  except Exception as error:  # tfds raises several types for a missing dataset
    raise DatasetUnavailable(
        f"data.name={name!r} is not prepared in data.data_dir={data_dir or tfds.core.constants.DATA_DIR!r} "
        f"({type(error).__name__}). On a machine with internet run: python -c \"import tensorflow_datasets as "
        f"tfds; tfds.builder('{TFDS_NAMES[name]}').download_and_prepare()\" and copy ~/tensorflow_datasets here, "
        "or set --config.data.data_dir") from None
  to_split = lambda pair: Split(np.asarray(pair[0], np.uint8), np.asarray(pair[1], np.int32))
  return to_split(splits["train"]), to_split(splits["test"]), builder.info.features["label"].num_classes


def _synthetic(data) -> Dataset:
  """Random images and labels of a configured shape: for benchmarks and tests, not learning."""
  rng = np.random.RandomState(0)
  size = data.image_size

  def split(n):
    return Split(rng.randint(0, 256, (n, size, size, 3), dtype=np.uint8),
                 rng.randint(0, data.num_classes, n).astype(np.int32))

  return Dataset(split(data.num_train_examples), split(data.eval_batch_size), data.num_classes)


_LOADERS = {"digits": _digits, "fashion_mnist": _fashion_mnist}
