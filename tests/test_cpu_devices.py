"""The CPU is split into one XLA device per core by default, where the program starts; a user's
XLA_FLAGS and --cpu-devices win; the batch always divides over the devices."""

import json
import os
import subprocess
import sys

import pytest

from resnet_jax import cpu_devices
from resnet_jax.errors import ConfigError

from conftest import spec


@pytest.mark.parametrize("choice, cores, batches, expected", [
    ("auto", 2, (128, 128), 2), ("auto", 3, (128, 1000), 2), ("auto", 4, (6, 6), 3), ("auto", 8, (7,), 7),
    ("auto", 1, (128,), 1), ("auto", 4, (), 4), ("auto", 8, None, 1), ("3", 2, (128,), 3)])
def test_choose_the_most_devices_that_divide_every_batch(choice, cores, batches, expected):
  assert cpu_devices.choose(choice, cores, batches) == expected


@pytest.mark.parametrize("choice", ["0", "x", "-2", "1.5"])
def test_a_bad_choice_names_the_option_and_the_allowed_values(choice):
  with pytest.raises(ConfigError, match="--cpu-devices=.*allowed values are auto or a whole number"):
    cpu_devices.choose(choice, 2, (128,))


def _train_devices(tmp_path, env_extra: dict, *options: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_devices.VARIABLE)}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  workdir = tmp_path / "run"
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", *options, "train", "--config",
                  spec("configs/digits.py:depth=8,steps=2"), "--workdir", str(workdir),
                  "--config.optimizer.schedule=constant"], env=env, check=True, capture_output=True, timeout=300)
  return json.loads((workdir / "environment.json").read_text())


def test_train_uses_every_core_by_default_and_records_it(tmp_path):
  environment = _train_devices(tmp_path, {})
  expected = cpu_devices.choose("auto", cpu_devices.available_cores(), (128, 128))  # digits batches
  assert environment["device_count"] == expected == len(environment["devices"])
  assert f"{cpu_devices.FLAG}={expected}" in environment["xla_flags"]


def test_the_users_xla_flags_win(tmp_path):
  environment = _train_devices(tmp_path, {"XLA_FLAGS": f"{cpu_devices.FLAG}=1"}, "--cpu-devices", "2")
  assert environment["device_count"] == 1 and environment["xla_flags"] == f"{cpu_devices.FLAG}=1"


def test_the_cli_runs_on_the_cores_a_sweep_gives_it_and_refuses_bad_ones(monkeypatch, capsys):
  from resnet_jax import cli
  pinned = []
  monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: pinned.append((pid, cores)))
  monkeypatch.setenv(cpu_devices.CORES_VARIABLE, "0")
  assert cli.main(["describe", "--config", spec("configs/digits.py"), "--json"]) == 0
  assert pinned == [(0, {0})]
  monkeypatch.setenv(cpu_devices.CORES_VARIABLE, "first")
  assert cli.main(["describe", "--config", spec("configs/digits.py")]) == 2
  error = capsys.readouterr().err.strip()
  assert len(error.splitlines()) == 1 and "RESNET_JAX_CPU_CORES='first' is invalid: allowed values are" in error
