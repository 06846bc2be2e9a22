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


@pytest.mark.parametrize("user_flags", [None, "--xla_cpu_enable_fast_math=false", f"{cpu_devices.FLAG}=3"])
def test_members_get_the_users_xla_flags_not_the_split_chosen_for_the_sweep(monkeypatch, user_flags):
  """A sweep splits its own CPU; its members, each on its own cores, choose their own split."""
  monkeypatch.delenv(cpu_devices.USER_FLAGS_VARIABLE, raising=False)
  if user_flags is None:
    monkeypatch.delenv("XLA_FLAGS", raising=False)
  else:
    monkeypatch.setenv("XLA_FLAGS", user_flags)
  cpu_devices.configure("2", (128,))
  assert f"{cpu_devices.FLAG}=" in os.environ["XLA_FLAGS"]
  member = cpu_devices.child_environment(RESNET_JAX_CPU_CORES="1")
  assert member["XLA_FLAGS"] == (user_flags or "") and member["RESNET_JAX_CPU_CORES"] == "1"
  assert cpu_devices.USER_FLAGS_VARIABLE not in member


def test_sweep_members_on_one_core_each_get_one_device_and_record_their_core(tmp_path):
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) < 2:
    pytest.skip("needs two cores to run two members at once")  # CI's machines have two
  study = tmp_path / "two.py"
  study.write_text(f'BASE_CONFIG = "{spec("configs/digits.py")}"\n'
                   'GRID = {"depth": [8], "variant": ["plain", "residual"], "seed": [0]}\n')
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_devices.VARIABLE)}
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", "sweep", str(study), "--root", str(tmp_path / "runs"),
                  "--jobs", "2", "--config.train.num_steps=2", "--config.optimizer.schedule=constant"],
                 env=dict(env, JAX_PLATFORMS="cpu"), check=True, capture_output=True, timeout=300)
  records = [json.loads((tmp_path / "runs" / m / "environment.json").read_text())
             for m in ("plain-8-seed0", "residual-8-seed0")]
  assert sorted(r["cpu_cores"][0] for r in records) == cores[:2]
  assert all(len(r["cpu_cores"]) == 1 and r["device_count"] == 1 for r in records)
  assert all(r["xla_flags"] == f"{cpu_devices.FLAG}=1" for r in records)
