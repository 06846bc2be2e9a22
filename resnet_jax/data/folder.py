"""`data.name=folder:PATH`: image files in class folders, held in memory.

  PATH/train/<class>/<image>   and   PATH/test/<class>/<image>   (or PATH/val/ instead of test/)

Classes are the train/ folder names, sorted: label i is the i-th name; test/ must have the same
folders. Images are read with Pillow (png, jpg, jpeg, bmp, gif, tif, tiff, webp, ppm, pgm; other and
hidden files are ignored), alpha dropped, and resized to data.resize_to x data.resize_to (bilinear)
when that is set; otherwise all must have one size. Grey images throughout (R = G = B in every one)
give 1 channel, anything else RGB. The training images come in one fixed shuffled order, so that
data.validation_size holds out a random sample rather than the last classes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Any

import numpy as np

from resnet_jax.data import fingerprint
from resnet_jax.data.splits import Split
from resnet_jax.errors import ConfigError, DatasetUnavailable

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEST_FOLDERS = ("test", "val")


@dataclasses.dataclass(frozen=True)
class Layout:
  """The image files of each split with their labels, and the class names."""
  root: str
  classes: tuple[str, ...]
  train: list[tuple[str, int]]
  test: list[tuple[str, int]]


def _visible(folder: str) -> list[str]:
  return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _class_folders(folder: str) -> tuple[str, ...]:
  return tuple(name for name in _visible(folder) if os.path.isdir(os.path.join(folder, name)))


def _images_of(folder: str, label: int, where: str) -> list[tuple[str, int]]:
  files = [os.path.join(folder, name) for name in _visible(folder) if name.lower().endswith(SUFFIXES)]
  files = [path for path in files if os.path.isfile(path)]
  if not files:
    raise ConfigError(f"{where}: {folder} holds no images ({', '.join(SUFFIXES)})")
  return [(path, label) for path in files]


def scan(data: Any) -> Layout:
  """The folder's layout, checked: one line naming what is missing."""
  root, where = data.name[len("folder:"):], f"data.name={data.name!r}"
  if not os.path.isdir(root):
    raise DatasetUnavailable(f"{where}: no such folder {os.path.abspath(root)}")
  tests = [name for name in TEST_FOLDERS if os.path.isdir(os.path.join(root, name))]
  if not os.path.isdir(os.path.join(root, "train")) or len(tests) != 1:
    found = "both test/ and val/" if len(tests) > 1 else \
        f"{', '.join(f'{n}/' for n in _class_folders(root)) or 'no folders'}"
    raise ConfigError(f"{where}: expected {root}/train/<class>/<images> and {root}/test/<class>/<images> "
                      f"(or val/ for test/); it has {found}")
  train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, tests[0])
  classes = _class_folders(train_dir)
  if not classes:
    raise ConfigError(f"{where}: {train_dir} has no class folders: put each class's images in train/<class>/")
  test_classes = _class_folders(test_dir)
  unmatched = [(c, train_dir, test_dir) for c in classes if c not in test_classes] + \
              [(c, test_dir, train_dir) for c in test_classes if c not in classes]
  if unmatched:
    name, present, absent = unmatched[0]
    raise ConfigError(f"{where}: class {name!r} is in {present} but not in {absent}: both need the same "
                      "class folders")
  split = lambda folder: [item for label, name in enumerate(classes)
                          for item in _images_of(os.path.join(folder, name), label, where)]
  train = split(train_dir)
  order = np.random.RandomState(0).permutation(len(train))
  return Layout(root, classes, [train[i] for i in order], split(test_dir))


def _read(path: str, size: int | None, where: str) -> np.ndarray:
  """uint8 [H, W, 3] (RGB) or [H, W, 1] when the image is grey."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      image = image.convert("RGB")
      if size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
      array = np.asarray(image)
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
    raise ConfigError(f"{where}: cannot read {path} ({type(error).__name__}: {' '.join(str(error).split())})") from None
  grey = np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])
  return np.ascontiguousarray(array[..., :1]) if grey else array


def _stack(arrays: list[np.ndarray], paths: list[str], channels: int, where: str) -> np.ndarray:
  """The images as one uint8 [N, H, W, channels] array; one size or one line naming two files."""
  first = arrays[0].shape[:2]
  for array, path in zip(arrays, paths):
    if array.shape[:2] != first:
      raise ConfigError(f"{where}: {paths[0]} is {first[1]}x{first[0]} but {path} is {array.shape[1]}x"
                        f"{array.shape[0]} (width x height): set --config.data.resize_to=N to resize all to NxN")
  out = np.empty((len(arrays), *first, channels), np.uint8)
  for i, array in enumerate(arrays):
    out[i] = array  # a grey image broadcasts over RGB
  return out


def load(data: Any) -> tuple[Split, Split, int]:
  """(train, test, number of classes) read from the folder."""
  layout, where, size = scan(data), f"data.name={data.name!r}", data.get("resize_to")
  items = layout.train + layout.test
  paths = [path for path, _ in items]
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow decodes without the GIL
    arrays = list(pool.map(lambda path: _read(path, size, where), paths))
  channels = max(array.shape[-1] for array in arrays)
  images = _stack(arrays, paths, channels, where)
  labels = np.asarray([label for _, label in items], np.int32)
  cut = len(layout.train)
  return Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:]), len(layout.classes)


def provenance(data: Any) -> dict:
  layout = scan(data)
  paths = [path for path, _ in layout.train + layout.test]
  return fingerprint.record(os.path.abspath(layout.root), fingerprint.files_fingerprint(layout.root, paths))
