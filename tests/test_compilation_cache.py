"""The persistent compilation cache: on by default, shared by the runs after the first, off on request
(then JAX gets no cache directory, so it writes none: test_configure_...)."""

import os
import pathlib
import subprocess
import sys

import pytest

import jax

from resnet_jax import compilation_cache

from conftest import spec


@pytest.fixture(autouse=True)
def jax_settings_kept():
  """configure() sets this process's JAX cache settings too: the tests here leave them as they found them."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  saved = {name: getattr(jax.config, name) for name in names}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)


def _train(tmp_path: pathlib.Path, name: str, seed: int, cache: str) -> None:
  env = {k: v for k, v in os.environ.items()
         if k not in (compilation_cache.JAX_VARIABLE, compilation_cache.MIN_TIME_VARIABLE)}
  env.update({"JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache-home"), compilation_cache.VARIABLE: cache})
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", "--cpu-devices", "1", "train", "--config",
                  spec(f"configs/digits.py:depth=8,steps=4,seed={seed}"), "--workdir", str(tmp_path / name),
                  "--config.optimizer.schedule=constant", "--config.data.batch_size=32"],
                 env=env, check=True, capture_output=True, timeout=300)


def _entries(directory: pathlib.Path) -> list[str]:
  return sorted(p.name for p in directory.iterdir())


def test_another_seed_loads_every_program_from_the_cache(tmp_path):
  _train(tmp_path, "seed0", 0, str(tmp_path / "xla"))
  first = _entries(tmp_path / "xla")
  assert len([name for name in first if name.startswith("jit_train_step-")]) == 1  # compiled once and stored
  assert any(name.startswith("jit__normals-") for name in first)  # the initialiser's one draw program too (layers.he_normal)
  _train(tmp_path, "seed1", 1, str(tmp_path / "xla"))
  assert _entries(tmp_path / "xla") == first  # seed 1 compiled nothing: every program loaded from seed 0's


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
  if expected:  # this process's JAX too, though it was imported before
    assert jax.config.jax_compilation_cache_dir == os.environ[compilation_cache.JAX_VARIABLE]


@pytest.mark.parametrize("users, expected", [(None, "0"), ("2.5", "2.5")])
def test_small_programs_are_kept_unless_the_user_says_otherwise(monkeypatch, tmp_path, users, expected):
  monkeypatch.setenv(compilation_cache.VARIABLE, str(tmp_path))
  monkeypatch.delenv(compilation_cache.JAX_VARIABLE, raising=False)
  if users is None:
    monkeypatch.delenv(compilation_cache.MIN_TIME_VARIABLE, raising=False)
  else:
    monkeypatch.setenv(compilation_cache.MIN_TIME_VARIABLE, users)
  compilation_cache.configure()
  assert os.environ[compilation_cache.MIN_TIME_VARIABLE] == expected
