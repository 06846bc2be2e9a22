"""CIFAR-100 with the CIFAR-10 recipe of the paper (not a paper table; a common extension).

  resnet-jax train --config configs/cifar100.py:depth=56,variant=residual --workdir runs/cifar100-r56
Same arguments, recipe and cost as configs/cifar10.py. No paper numbers. Needs tensorflow-datasets'
cifar100 prepared (see docs/training.md).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("cifar10_config", os.path.join(os.path.dirname(__file__), "cifar10.py"))
_cifar10 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cifar10)


def get_config(arg: str | None = None):
  c = _cifar10.get_config(arg)
  c.data.name = "cifar100"
  return c
