"""The persistent compilation cache: on by default, shared by the runs after the first, off on request."""

import os
import pathlib
import subprocess
import sys

import pytest

from resnet_jax import compilation_cache

from conftest import spec


def _train(tmp_path: pathlib.Path, name: str, seed: int, cache: str) -> None:
  env = {k: v for k, v in os.environ.items() if k != compilation_cache.JAX_VARIABLE}
  env.update({"JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
              "XDG_CACHE_HOME": str(tmp_path / "cache-home"), compilation_cache.VARIABLE: cache})
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", "--cpu-devices", "1", "train", "--config",
                  spec(f"configs/digits.py:depth=8,steps=4,seed={seed}"), "--workdir", str(tmp_path / name),
                  "--config.optimizer.schedule=constant", "--config.data.batch_size=32"],
                 env=env, check=True, capture_output=True, timeout=300)


def _train_steps(directory: pathlib.Path) -> list[str]:
  return sorted(p.name for p in directory.glob("jit_train_step-*"))


def test_another_seed_loads_the_cached_train_step_and_off_writes_nothing(tmp_path):
  _train(tmp_path, "seed0", 0, str(tmp_path / "xla"))
  first = _train_steps(tmp_path / "xla")
  assert len(first) == 1  # the step compiled once and stored
  _train(tmp_path, "seed1", 1, str(tmp_path / "xla"))
  assert _train_steps(tmp_path / "xla") == first  # seed 1 loaded seed 0's executable: no new entry
  _train(tmp_path, "off", 0, "off")
  assert not (tmp_path / "cache-home").exists()


@pytest.mark.parametrize("ours, jaxs, expected", [
    (None, None, "default"), ("/my/xla", None, "/my/xla"), ("off", None, None), (None, "/jax/own", "/jax/own"),
    ("/my/xla", "/jax/own", "/jax/own")])
def test_configure_uses_the_default_ours_or_the_users_jax_variable(monkeypatch, tmp_path, ours, jaxs, expected):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  for name, value in ((compilation_cache.VARIABLE, ours), (compilation_cache.JAX_VARIABLE, jaxs)):
    monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
  compilation_cache.configure()
  default = str(tmp_path / "resnet-jax" / "xla")
  assert os.environ.get(compilation_cache.JAX_VARIABLE) == (default if expected == "default" else expected)
