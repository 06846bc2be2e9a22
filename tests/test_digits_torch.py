"""benchmarks/digits_torch.py: a tiny run writes a sane JSON; its data split and schedule are resnet-jax's."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


def _load(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def digits_torch():
  sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports torch_resnet from its own folder
  try:
    return _load("benchmarks/digits_torch.py", "digits_torch")
  finally:
    sys.path.remove(str(REPO / "benchmarks"))


def _study_config():
  """configs/digits.py with experiments/digits.py's overrides."""
  config = _load("configs/digits.py", "digits_config").get_config()
  for field, value in _load("experiments/digits.py", "digits_study").OVERRIDES.items():
    section, name = field.split(".")
    config[section][name] = value
  return config


def test_tiny_run_writes_a_sane_json(tmp_path):
  out = tmp_path / "out"
  command = [sys.executable, "benchmarks/digits_torch.py", "--steps", "4", "--only",
             "depth=20,variant=residual,seed=0", "--jobs", "1", "--out", str(out)]
  run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  assert "total wall time" in run.stdout and "| residual | 20 | 269,434 | 1 |" in run.stdout
  assert sorted(p.name for p in out.iterdir()) == ["residual-20-seed0.json"]
  result = json.loads((out / "residual-20-seed0.json").read_text())
  assert (result["depth"], result["variant"], result["seed"], result["steps"]) == (20, "residual", 0, 4)
  assert result["params"] == 269_434 and result["wall_s"] > 0
  assert [point["step"] for point in result["curve"]] == [4]
  for point in result["curve"]:
    assert 0 <= point["train_error"] <= 100 and 0 <= point["test_error"] <= 100
    assert np.isfinite(point["train_loss"]) and np.isfinite(point["test_loss"])
  assert result["test_error"] == result["curve"][-1]["test_error"]
  assert result["train_error"] == result["curve"][-1]["train_error"]


def test_split_is_resnet_jax_split(digits_torch):
  from resnet_jax.data.sources import load_dataset
  dataset = load_dataset(_study_config().data)
  train_images, train_labels, test_images, test_labels = digits_torch.load_digits()
  assert (len(train_labels), len(test_labels)) == (len(dataset.train), len(dataset.eval)) == (1500, 297)
  np.testing.assert_array_equal(train_images.transpose(0, 2, 3, 1), dataset.train.images)  # NCHW vs NHWC
  np.testing.assert_array_equal(test_images.transpose(0, 2, 3, 1), dataset.eval.images)
  np.testing.assert_array_equal(train_labels, dataset.train.labels)
  np.testing.assert_array_equal(test_labels, dataset.eval.labels)


def test_schedule_is_resnet_jax_schedule(digits_torch):
  from resnet_jax.config import resolve
  from resnet_jax.train.optimizer import learning_rate_schedule
  config = _study_config()
  assert (config.train.num_steps, config.data.batch_size) == (300, digits_torch.BATCH_SIZE)
  schedule = learning_rate_schedule(resolve(config, steps_per_epoch=1500 // 64))
  expected = [float(schedule(step)) for step in range(300)]
  np.testing.assert_allclose([digits_torch.learning_rate(step, 300) for step in range(300)], expected,
                             rtol=1e-6, atol=1e-9)
