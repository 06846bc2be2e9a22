"""`data.name=tfds:NAME[/CONFIG][:VERSION]`: any tensorflow-datasets image classification set, prepared
in data.data_dir (registered with tfds, or written there by any builder).

The image and label are the set's single Image and single ClassLabel features (data.image_key,
data.label_key choose among several); classes and image shape come from its metadata. Splits:
data.tfds_train_split (default 'train') and data.tfds_eval_split (default 'validation', or 'test' where
the set has no validation split: `eval_split`). The set is held
in memory when its training split, as uint8 (resized to data.resize_to if set), takes at most
data.in_memory_limit_gb; otherwise it streams through the ImageNet pipeline (imagenet.py), which
decodes JPEG only and crops to data.image_size as data.train_crop and the eval fields say.

TensorFlow and tensorflow-datasets are heavy optional dependencies: imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from resnet_jax.data import fingerprint
from resnet_jax.data.splits import Split
from resnet_jax.errors import ConfigError, DatasetUnavailable
from resnet_jax.data.tf_runtime import hide_gpus_from_tensorflow

METADATA_FILES = ("dataset_info.json", "features.json")


def import_tfds(name: str):
  """tensorflow_datasets, with TensorFlow kept off the GPUs; one line saying how to install it if missing."""
  try:
    import tensorflow_datasets as tfds  # heavy optional dependency: imported only when a tfds set is used
  except ImportError:
    raise DatasetUnavailable(f"data.name={name!r} needs tensorflow-datasets: pip install 'resnet-jax[tfds]'") from None
  hide_gpus_from_tensorflow()
  return tfds


def _one_line(error: BaseException) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]


def builder(data: Any):
  """The prepared builder of a tfds: name; DatasetUnavailable naming it when unknown or not prepared."""
  tfds = import_tfds(data.name)
  name = data.name[len("tfds:"):]
  try:
    found = tfds.builder(name, data_dir=data.data_dir)
  except tfds.core.DatasetNotFoundError:
    raise DatasetUnavailable(f"data.name={data.name!r}: tensorflow-datasets has no data set {name.split('/')[0]!r} "
                             f"(neither registered nor prepared in data.data_dir={data.data_dir!r})") from None
  except Exception as error:  # a bad config or version: tfds raises several types
    raise DatasetUnavailable(f"data.name={data.name!r}: {_one_line(error)}") from None
  if not is_prepared(found):
    raise DatasetUnavailable(
        f"data.name={data.name!r}: {name} is not prepared in {str(found.data_dir_root)!r}: run "
        f"`tfds build {name} --data_dir=DIR` (on a machine with internet) and set --config.data.data_dir=DIR")
  return found


def eval_split(name: str, split: str, splits) -> str:
  """The split a tfds: set evaluates: data.tfds_eval_split, but 'test' for the default 'validation' where
  the set has none (mnist, cifar10); built-in sets take the field as it is."""
  if name.startswith("tfds:") and split == "validation" and "validation" not in splits and "test" in splits:
    return "test"
  return split


def is_prepared(found) -> bool:
  """builder.is_prepared() without the absl warning it logs for an empty version folder (the caller's
  error is the one line the user sees)."""
  from absl import logging
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return found.is_prepared()
  finally:
    logging.set_verbosity(verbosity)


def feature_keys(features, name: str, image_key: str | None, label_key: str | None) -> tuple[str, str]:
  """(image, label) feature names: the given ones, checked, or the single Image and ClassLabel features."""
  tfds = import_tfds(name)
  return _feature(features, name, image_key, tfds.features.Image, "image_key"), label_feature(features, name, label_key)


def label_feature(features, name: str, label_key: str | None) -> str:
  """The label feature's name: `label_key`, checked, or the single ClassLabel feature."""
  return _feature(features, name, label_key, import_tfds(name).features.ClassLabel, "label_key")


def _feature(features, name: str, key: str | None, kind: type, field: str) -> str:
  found = [k for k, f in features.items() if isinstance(f, kind)]
  described = ", ".join(f"{k} ({type(f).__name__})" for k, f in features.items())
  if key is not None and key not in found:
    raise ConfigError(f"data.{field}={key!r} is not a {kind.__name__} feature of {name}: its features are {described}")
  if key is None and len(found) != 1:
    choose = f"choose one with --config.data.{field}=NAME" if found else "an image classification set needs one"
    raise ConfigError(f"data.name={name!r} has {len(found) or 'no'} {kind.__name__} features ({described}): {choose}")
  return key or found[0]


@dataclasses.dataclass(frozen=True)
class TfdsSet:
  """What the run reads of a tfds: set, from its metadata."""
  builder: Any
  image_key: str
  label_key: str
  train_split: str
  eval_split: str
  num_train: int
  shape: tuple  # (H, W, C) as held in memory (H, W = data.resize_to when set); None where sizes vary
  resize_to: int | None
  num_classes: int
  encoding: str  # of the stored images: 'jpeg' or 'png'

  @property
  def gigabytes(self) -> float | None:
    """The training split as uint8, or None when the images vary in size."""
    return None if None in self.shape else self.num_train * int(np.prod(self.shape)) / 2**30


def inspect(data: Any) -> TfdsSet:
  """The set's features, splits and sizes, checked against the config: one line naming the field."""
  found = builder(data)
  info = found.info
  image_key, label_key = feature_keys(info.features, data.name, data.get("image_key"), data.get("label_key"))
  image = info.features[image_key]
  if np.dtype(image.np_dtype) != np.uint8:
    raise ConfigError(f"data.name={data.name!r}: its {image_key} images are {np.dtype(image.np_dtype)}: "
                      "resnet-jax trains on uint8 images")
  splits = {}
  for field, split in (("tfds_train_split", data.tfds_train_split),
                       ("tfds_eval_split", eval_split(data.name, data.tfds_eval_split, info.splits))):
    try:
      splits[field] = (split, info.splits[split].num_examples)
    except Exception:  # tfds raises KeyError or ValueError for an unknown split or a bad slice
      raise ConfigError(f"data.{field}={split!r} is not a split of {info.full_name}: it has "
                        f"{', '.join(info.splits)} (slices such as 'train[:90%]' work too)") from None
    if not splits[field][1]:
      raise ConfigError(f"data.{field}={split!r} of {info.full_name} holds no examples")
  size = data.get("resize_to")
  shape = (size, size, image.shape[-1]) if size else tuple(image.shape)
  return TfdsSet(found, image_key, label_key, splits["tfds_train_split"][0], splits["tfds_eval_split"][0],
                 splits["tfds_train_split"][1], shape, size, info.features[label_key].num_classes,
                 image.encoding_format or "png")


def streams(data: Any, found: TfdsSet | None = None) -> bool:
  """Whether the set streams (it does not fit data.in_memory_limit_gb); refuses what streaming cannot do."""
  found = found or inspect(data)
  limit = data.get("in_memory_limit_gb", 4.0)
  size = found.gigabytes
  if size is not None and size <= limit:
    return False
  why = f"its train split takes {size:.3g} GB as uint8, above data.in_memory_limit_gb={limit}" if size is not None \
      else f"its images vary in size {found.shape} and data.resize_to is not set"
  if found.encoding != "jpeg":
    fix = f"raise --config.data.in_memory_limit_gb to {size:.3g} or more" if size is not None else \
        "set --config.data.resize_to=N to hold it in memory"
    raise ConfigError(f"data.name={data.name!r} would stream ({why}), but its images are {found.encoding} and the "
                      f"streamed pipeline decodes JPEG only: {fix}")
  if data.validation_size:
    train = found.train_split
    raise ConfigError(f"data.validation_size={data.validation_size} holds out examples of data in memory, but "
                      f"{data.name} streams ({why}): hold out with --config.data.tfds_train_split='{train}"
                      f"[:-{data.validation_size}]' --config.data.tfds_eval_split='{train}[-{data.validation_size}:]'")
  return True


def _split(found: TfdsSet, split: str, name: str) -> Split:
  """One split decoded into host memory (resized when data.resize_to is set); labels checked."""
  import tensorflow as tf
  tfds = import_tfds(name)

  def pick(record):
    image = record[found.image_key]
    if found.resize_to:
      image = tf.image.resize(image, [found.resize_to] * 2, method="bilinear", antialias=True)
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image, record[found.label_key]

  records = found.builder.as_dataset(split=split, shuffle_files=False,
                                     read_config=tfds.ReadConfig(try_autocache=False))
  batches = list(tfds.as_numpy(records.map(pick, num_parallel_calls=tf.data.AUTOTUNE).batch(1024)))
  images, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
  bad = labels[(labels < 0) | (labels >= found.num_classes)]
  if bad.size:
    unlabelled = " (-1: unlabelled examples)" if bad[0] == -1 else ""
    raise ConfigError(f"data.name={name!r}: split {split!r} has label {bad[0]}{unlabelled}, outside its "
                      f"{found.num_classes} classes: choose labelled splits (data.tfds_train_split, tfds_eval_split)")
  return Split(images.astype(np.uint8), labels.astype(np.int32))


def load(data: Any) -> tuple[Split, Split, int]:
  """(train, eval split, number of classes) in host memory."""
  found = inspect(data)
  if None in found.shape:
    raise ConfigError(f"data.name={data.name!r}: its images vary in size {found.shape}: set "
                      "--config.data.resize_to=N to hold them in memory")
  return _split(found, found.train_split, data.name), _split(found, found.eval_split, data.name), found.num_classes


def provenance(data: Any) -> dict:
  """The set's name, version and folder; a fingerprint of all its files when in memory, of its metadata
  when streamed (hashing ImageNet's 150 GB would take longer than many runs)."""
  found = inspect(data)
  streamed = streams(data, found)
  path = str(found.builder.data_path)
  names = METADATA_FILES if streamed else sorted(os.listdir(path))
  files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
  return fingerprint.record(f"tfds {found.builder.info.full_name} in {found.builder.data_dir_root}",
                            fingerprint.files_fingerprint(path, files), streamed, data_eval_split=found.eval_split)
