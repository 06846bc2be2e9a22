"""Several seeds trained together (train.num_seeds, vmapped or unrolled) equal the same runs trained alone."""

import json

import numpy as np
import pytest

from resnet_jax.config import load_config
from resnet_jax.train.loop import train
from resnet_jax.train.metrics import read_metrics

STEPS = 12
OVERRIDES = [f"--config.train.num_steps={STEPS}", "--config.train.log_every_steps=4",
             "--config.train.eval_every_steps=12", "--config.train.checkpoint_every_steps=12"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
  root = tmp_path_factory.mktemp("alone")
  for seed in (3, 4):
    train(load_config(f"configs/digits.py:depth=8,seed={seed}", OVERRIDES), str(root / f"seed{seed}"))
  return root


@pytest.fixture(scope="module", params=["vmap", "unroll"])
def together(request, tmp_path_factory):
  root = tmp_path_factory.mktemp(f"together-{request.param}")
  train(load_config("configs/digits.py:depth=8,seed=3",
                    OVERRIDES + ["--config.train.num_seeds=2", f"--config.train.seeds_together={request.param}"]),
        str(root))
  return root


def _curves(workdir):
  return [{k: v for k, v in r.items() if k not in ("examples_per_second",)} for r in read_metrics(workdir)]


@pytest.mark.parametrize("seed", [3, 4])
def test_each_member_matches_its_run_alone(together, alone, seed):
  member, single = _curves(together / f"seed{seed}"), _curves(alone / f"seed{seed}")
  assert [r["step"] for r in member] == [r["step"] for r in single] == [4, 8, 12]
  for a, b in zip(member, single):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=2e-4, atol=1e-6)


def test_members_differ_and_record_their_seed(together):
  seed3, seed4 = _curves(together / "seed3"), _curves(together / "seed4")
  assert seed3[0]["train_loss"] != seed4[0]["train_loss"]
  for seed in (3, 4):
    assert json.loads((together / f"seed{seed}" / "config.json").read_text())["seed"] == seed
    assert (together / f"seed{seed}" / "finished.json").exists()
