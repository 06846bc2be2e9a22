"""`data.name=npz:PATH`: a .npz file of arrays x_train, y_train, x_test, y_test, held in memory.

Images are uint8, [N, H, W] (grey) or [N, H, W, C] with C 1 or 3 (channels last); labels are
integers in [0, K), K = the largest training label + 1. Anything else is one ConfigError line.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from resnet_jax.data import fingerprint
from resnet_jax.data.splits import Split
from resnet_jax.errors import ConfigError, DatasetUnavailable

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _path(data: Any) -> str:
  path = data.name[len("npz:"):]
  if not os.path.isfile(path):
    raise DatasetUnavailable(f"data.name={data.name!r}: no such file {os.path.abspath(path)}")
  return path


def _arrays(path: str, name: str) -> dict[str, np.ndarray]:
  if not zipfile.is_zipfile(path):
    raise ConfigError(f"data.name={name!r}: {path} is not an .npz file (np.savez writes one)")
  try:
    with np.load(path, allow_pickle=False) as archive:
      found = list(archive.files)
      arrays = {k: archive[k] for k in KEYS if k in found}
  except (OSError, ValueError, zipfile.BadZipFile) as error:  # a broken archive, or object arrays (pickles)
    raise ConfigError(f"data.name={name!r}: {path} is not a readable .npz of arrays "
                      f"({type(error).__name__}: {' '.join(str(error).split())})") from None
  missing = [k for k in KEYS if k not in arrays]
  if missing:
    raise ConfigError(f"data.name={name!r}: {path} lacks {', '.join(missing)}: expected arrays "
                      f"{', '.join(KEYS)} (it has {', '.join(found) or 'none'})")
  return arrays


def _images(array: np.ndarray, key: str, where: str) -> np.ndarray:
  if array.dtype != np.uint8:
    raise ConfigError(f"{where}: {key} is {array.dtype}: expected uint8 pixels 0-255 "
                      "(e.g. np.round(x * 255).astype(np.uint8))")
  images = array[..., None] if array.ndim == 3 else array
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images) or 0 in images.shape:
    raise ConfigError(f"{where}: {key} has shape {array.shape}: expected [N, H, W] or [N, H, W, C] with N > 0 "
                      "and C 1 or 3 (channels last)")
  return np.ascontiguousarray(images)


def _labels(array: np.ndarray, key: str, count: int, where: str) -> np.ndarray:
  if array.ndim != 1 or len(array) != count or not np.issubdtype(array.dtype, np.integer):
    raise ConfigError(f"{where}: {key} has shape {array.shape} and dtype {array.dtype}: expected {count} integer "
                      "labels, one per image")
  if array.min() < 0:
    raise ConfigError(f"{where}: {key} has a negative label ({array.min()}): labels are 0, 1, ..., K-1")
  return array.astype(np.int32)


def load(data: Any) -> tuple[Split, Split, int]:
  """(train, test, number of classes) from the file, checked."""
  path = _path(data)
  where = f"data.name={data.name!r}"
  arrays = _arrays(path, data.name)
  train = Split(_images(arrays["x_train"], "x_train", where),
                _labels(arrays["y_train"], "y_train", len(arrays["x_train"]), where))
  test = Split(_images(arrays["x_test"], "x_test", where),
               _labels(arrays["y_test"], "y_test", len(arrays["x_test"]), where))
  if train.images.shape[1:] != test.images.shape[1:]:
    raise ConfigError(f"{where}: x_train images are {train.images.shape[1:]} but x_test's are "
                      f"{test.images.shape[1:]}: both splits need one image shape")
  num_classes = int(train.labels.max()) + 1
  if test.labels.max() >= num_classes:
    raise ConfigError(f"{where}: y_test has label {test.labels.max()}, outside the training labels "
                      f"0..{num_classes - 1} (the classes are 0 to the largest y_train)")
  return train, test, num_classes


def provenance(data: Any) -> dict:
  path = os.path.abspath(_path(data))
  return fingerprint.record(path, fingerprint.files_fingerprint(os.path.dirname(path), [path]))
