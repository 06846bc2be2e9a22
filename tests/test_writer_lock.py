"""One writer per work directory: a live holder refuses a second run, a killed one does not block,
and a sweep skips members that another process is training."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from resnet_jax.errors import ConfigError
from resnet_jax.studies.sweep import run_sweep
from resnet_jax.train import writer_lock

TRAIN = [sys.executable, "-m", "resnet_jax.cli", "train", "--config", f"{REPO}/configs/digits.py:depth=8"]
ENV = dict(os.environ, RESNET_JAX_CPU_DEVICES="1")


def test_a_held_workdir_refuses_a_second_holder_and_names_the_first(tmp_path):
  with writer_lock.WriterLock(str(tmp_path)):
    assert writer_lock.holder(str(tmp_path))["pid"] == os.getpid()
    with pytest.raises(writer_lock.WorkdirBusy, match=rf"is being written by pid {os.getpid()} on host \S+ since"):
      writer_lock.WriterLock(str(tmp_path))
  assert writer_lock.holder(str(tmp_path)) is None
  writer_lock.WriterLock(str(tmp_path)).release()  # released: free again
  assert issubclass(writer_lock.WorkdirBusy, ConfigError)  # the CLI's one line and exit 2


def test_kill_9_of_the_holder_leaves_no_hold_and_the_run_resumes(tmp_path):
  workdir = tmp_path / "run"
  command = [*TRAIN, "--workdir", str(workdir), "--config.train.num_steps=300",
             "--config.train.checkpoint_every_steps=20"]
  first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 240
    while not (workdir / "checkpoints" / "20").exists():
      assert first.poll() is None and time.monotonic() < deadline
      time.sleep(0.1)
    first.send_signal(signal.SIGSTOP)  # it holds the directory, however slowly the second command starts
    refused = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and f"is being written by pid {first.pid} on host" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert first.returncode == -signal.SIGKILL
  assert writer_lock.holder(str(workdir)) is None
  resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=240)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from step" in resumed.stdout


def test_the_sweep_skips_and_reports_a_member_running_elsewhere(tmp_path, capsys):
  study = tmp_path / "one.py"
  study.write_text(f'BASE_CONFIG = "{REPO}/configs/digits.py"\nGRID = {{"depth": [8], "variant": ["plain"], "seed": [0]}}\n')
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from resnet_jax.train.writer_lock import "
                             "WriterLock; held = WriterLock(sys.argv[1]); print('held', flush=True); time.sleep(600)",
                             str(tmp_path / "runs" / "plain-8-seed0")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "held\n"
    assert run_sweep(str(study), str(tmp_path / "runs"), overrides=["--config.train.num_steps=5"]) == []
  finally:
    holder.kill()
    holder.wait()
  out = capsys.readouterr().out
  assert f"plain-8-seed0: skipped (running elsewhere: pid {holder.pid} on host" in out
  assert "sweep: 0 ran, 1 skipped, 0 failed" in out
  assert not (tmp_path / "runs" / "plain-8-seed0" / "config.json").exists()
