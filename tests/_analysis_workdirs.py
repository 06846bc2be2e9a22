"""Tiny trained digits work directories for test_landscape.py and test_lesion.py: a residual net of
depth 8 with two seeds trained together (seed<s>/ folders) and a plain one alone, trained once per test
session in its base temp folder, and a study root that lists both as members."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from conftest import spec

STEPS = 8
RUNS = {
    "residual-8": ("configs/digits.py:depth=8,variant=residual", ["--config.train.num_seeds=2"]),
    "plain-8": ("configs/digits.py:depth=8,variant=plain", []),
}


def trained_root(tmp_path_factory) -> pathlib.Path:
  """<basetemp>/analysis-runs with one finished member work directory per entry of RUNS."""
  from resnet_jax.config import load_config
  from resnet_jax.train.loop import train
  root = tmp_path_factory.getbasetemp() / "analysis-runs"
  for name, (config, overrides) in RUNS.items():
    workdir = root / name
    if not os.path.exists(workdir / "checkpoints" / str(STEPS)):
      schedule = [f"--config.train.num_steps={STEPS}", "--config.train.log_every_steps=4",
                  f"--config.train.eval_every_steps={STEPS}", f"--config.train.checkpoint_every_steps={STEPS}"]
      train(load_config(spec(config), [*overrides, *schedule]), str(workdir))
  return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> pathlib.Path:
  """The trained root (import this fixture into a test module to use it)."""
  return trained_root(tmp_path_factory)


def run_cli(*args: str) -> subprocess.CompletedProcess:
  """`resnet-jax <args>` in a subprocess on the CPU, output captured as text."""
  return subprocess.run([sys.executable, "-m", "resnet_jax.cli", *args], capture_output=True, text=True,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
