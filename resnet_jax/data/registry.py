"""The data set registry: the names `data.name` accepts, which are streamed, their tfds names, the
normalisations, crops and resizes, and the user's own data (`tfds:NAME`, `folder:PATH`, `npz:PATH`).

Configuration imports this module, never the other way; it imports no TensorFlow, and reaches the own-data
modules' files and tfds metadata inside its functions only.
"""

from __future__ import annotations

from typing import Any

from resnet_jax.errors import ConfigError
from resnet_jax.data import tfds_data
from resnet_jax.data import folder, npz

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagenet2012", "imagenette", "synthetic")
STREAMED_DATASETS = ("imagenet2012", "imagenette")
# The tensorflow-datasets name of every built-in set read through tfds: in memory (sources.py) or streamed
# (imagenet.py).
TFDS_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "fashion_mnist": "fashion_mnist",
              "imagenet2012": "imagenet2012", "imagenette": "imagenette/full-size-v2"}
# Your own data: data.name = '<kind>:<what>'.
OWN_KINDS = {"tfds": "tfds:NAME[/CONFIG][:VERSION]", "folder": "folder:PATH", "npz": "npz:PATH"}
NORMALIZATIONS = ("pixel_mean", "channel_mean", "channel_mean_std", "none")
# What each built-in set holds, so nothing needs its files to know its shapes (describe, plan): training and
# test (or validation) examples, image shape as trained (streamed sets: the crop), classes.
DATASET_FACTS = {
    "digits": (1500, 297, (8, 8, 1), 10),  # scikit-learn's 1797 digits, split in sources.py
    "fashion_mnist": (60_000, 10_000, (28, 28, 1), 10),
    "cifar10": (50_000, 10_000, (32, 32, 3), 10),
    "cifar100": (50_000, 10_000, (32, 32, 3), 100),
    "imagenet2012": (1_281_167, 50_000, (224, 224, 3), 1000),
    "imagenette": (9_469, 3_925, (224, 224, 3), 10),
}
EVAL_CROPS = ("center", "ten")            # streamed data: one centre crop, or the paper's 10 crops
EVAL_RESIZES = ("paper", "torchvision")   # streamed data: see data.eval_resize in config.py


def own_kind(name: str) -> tuple[str, str] | None:
  """('npz', 'x.npz') for data.name 'npz:x.npz'; None for a built-in set."""
  kind, sep, what = name.partition(":")
  return (kind, what) if sep and kind in OWN_KINDS else None


def check_name(name: Any) -> None:
  """One line naming data.name and what it may be."""
  if isinstance(name, str) and (name in DATASETS or (own_kind(name) and own_kind(name)[1])):
    return
  raise ConfigError(f"data.name={name!r} is invalid: allowed values are {', '.join(DATASETS)}, or your own data "
                    f"as {', '.join(OWN_KINDS.values())} (docs/training.md: Your own data)")


def is_streamed(data: Any) -> bool:
  """Whether the run streams its data through tf.data (decided now: a tfds: set asks its metadata)."""
  if data.name in STREAMED_DATASETS:
    return True
  if data.name.startswith("tfds:"):
    return tfds_data.streams(data)
  return False


def was_streamed(config: Any) -> bool:
  """Whether a resolved or recorded config's run streamed its data (no I/O: read from `derived`)."""
  derived = config.get("derived") or {}
  return config.data.name in STREAMED_DATASETS or bool(derived.get("data_streamed", False))


def provenance(data: Any) -> dict[str, Any]:
  """Where own data comes from, for the resolved config's `derived` section (empty for built-in sets):

    data_source       the absolute path, or the tfds name, version and folder
    data_fingerprint  'sha256:<hex>' of the files read (a streamed tfds set: of its metadata)
    data_streamed     whether the run streams the set through tf.data
    data_eval_split   tfds: sets: the split evaluated (data.eval_split='test')
  """
  kind = own_kind(data.name)
  if kind is None:
    return {}
  if kind[0] == "tfds":
    return tfds_data.provenance(data)
  return (folder if kind[0] == "folder" else npz).provenance(data)
