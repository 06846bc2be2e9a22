"""Multi-process training on this machine: two real processes over gloo, and resharding.

Each process simulates 4 CPU devices, so the job has 8 devices in 2 processes. It must match
one process with 8 devices on the same global batch, count every eval example once, and resume
from a checkpoint written on another number of devices.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from resnet_jax.train.metrics import read_metrics

from conftest import has_records, wait_for

CONFIG = "configs/digits.py:depth=8"
# A constant learning rate: each leg continues the run to a new length, which a schedule scaled to the
# length would refuse (the trained steps would have had other learning rates).
COMMON = ["--config.optimizer.schedule=constant", "--config.train.log_every_steps=2", "--config.train.eval_every_steps=2",
          "--config.train.checkpoint_every_steps=2", "--config.data.batch_size=64",
          "--config.data.eval_batch_size=64"]
COMPARED = ("train_loss", "train_error", "grad_norm", "eval_loss", "eval_error", "eval_count")


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
              TF_CPP_MIN_LOG_LEVEL="2")


def _train_command(workdir, steps: int, *extra: str) -> list[str]:
  return [sys.executable, "-m", "resnet_jax.cli", "train", "--config", CONFIG, "--workdir", str(workdir),
          f"--config.train.num_steps={steps}", *COMMON, *extra]


def _single(workdir, steps: int, devices: int) -> None:
  subprocess.run(_train_command(workdir, steps), env=_env(devices), check=True, capture_output=True, timeout=300)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_two_processes(workdir, steps: int, *extra: str) -> list[subprocess.Popen]:
  """Start a 2-process job (4 devices each) that trains to `steps`."""
  port = _free_port()
  flags = ["--config.distributed.enabled=True", f"--config.distributed.coordinator_address=localhost:{port}",
           "--config.distributed.num_processes=2", "--config.distributed.initialization_timeout_s=60",
           "--config.distributed.heartbeat_timeout_s=30"]
  return [subprocess.Popen(_train_command(workdir, steps, *flags, *extra, f"--config.distributed.process_id={i}"),
                           env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for i in range(2)]


def _finish(procs: list[subprocess.Popen], returncode: int = 0) -> list[str]:
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == returncode, out[-3000:]
  return outputs


def _two_processes(workdir, steps: int) -> list[str]:
  """Run a 2-process job (4 devices each) to `steps`; returns each process's output."""
  return _finish(_start_two_processes(workdir, steps))


def _curve(workdir) -> list[dict]:
  return [{k: r[k] for k in ("step", *COMPARED) if k in r} for r in read_metrics(workdir)]


def _assert_same_curves(a, b, rtol=1e-4):
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    np.testing.assert_allclose([x[k] for k in COMPARED if k in x], [y[k] for k in COMPARED if k in y],
                               rtol=rtol, atol=1e-5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One process, 8 devices, 6 steps uninterrupted."""
  workdir = tmp_path_factory.mktemp("single") / "run"
  _single(workdir, 6, devices=8)
  return _curve(workdir)


def test_two_processes_resume_reshard_and_match_one(tmp_path, reference):
  """1 process x 2 devices -> 2 processes x 4 devices -> 1 process x 2 devices, each leg resuming.

  Covers a 2 -> 8 and an 8 -> 2 device restore, both processes resuming from a checkpoint, and
  the two-process job matching one process with 8 devices on the same global batch.
  """
  workdir = tmp_path / "run"
  _single(workdir, 2, devices=2)
  outputs = _two_processes(workdir, 4)
  assert "resuming from step 2" in outputs[0]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  environment = json.loads((workdir / "environment.json").read_text())
  assert environment["process_count"] == 2 and len(environment["devices"]) == 8
  _single(workdir, 6, devices=2)
  curve = _curve(workdir)
  _assert_same_curves(curve, reference)
  assert all(r["eval_count"] == 297 for r in curve)  # digits test split, each example once


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  """SLURM may signal one task first: the processes agree at every logging step, so both stop at the
  same step, save one checkpoint together (a collective) and exit 143; the job then resumes."""
  workdir = tmp_path / "run"
  steps, rare = 100, ["--config.train.checkpoint_every_steps=100", "--config.train.eval_every_steps=100"]
  procs = _start_two_processes(workdir, steps, *rare)
  try:
    wait_for(lambda: has_records(workdir), procs, "metrics", timeout=240)
    procs[1].send_signal(signal.SIGTERM)
    outputs = _finish(procs, returncode=143)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  stops = [re.search(r"stopped by SIGTERM at step (\d+)", out) for out in outputs]
  assert all(stops), outputs
  stop = int(stops[0][1])
  assert int(stops[1][1]) == stop and stop < steps and stop % 2 == 0
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(stop)]
  assert read_metrics(workdir)[-1]["step"] == stop
  _single(workdir, steps, devices=2)  # the same job resumes (here on one process) and finishes
  assert json.loads((workdir / "finished.json").read_text())["step"] == steps
