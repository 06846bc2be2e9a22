"""Work directories and sweep roots on object storage, against a real GCS server (tools/fake_gcs.py):
train, SIGTERM and resume, a second writer refused, kill -9 then the lease taken over once it runs out,
a damaged newest checkpoint (on gs:// and locally), a profile window, a sweep and its report; no gs://
path ever becomes a local folder.

Runs are digits ResNet-8 for 200 steps; one local uninterrupted run (in this process) is what the others
must equal. A persistent compilation cache (this module only) lets identical programs compile once.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from resnet_jax import cli, storage
from resnet_jax.report.index import make_report
from resnet_jax.studies.sweep import run_sweep
from resnet_jax.train import lease, writer_lock
from resnet_jax.train.checkpoint import DAMAGED_DIR, latest_step

from conftest import REPO, records, resnet_jax_command, sigterm_after_first_records, spec, subprocess_env, wait_for

pytestmark = pytest.mark.usefixtures("compile_cache", "gcs_server")
STEPS = 200
FLAGS = [f"--config.train.num_steps={STEPS}", "--config.train.log_every_steps=5",
         f"--config.train.eval_every_steps={STEPS}", "--config.train.checkpoint_every_steps=20"]


def argv(workdir: str, *extra: str) -> list[str]:
  return ["train", "--config", spec("configs/digits.py:depth=8"), "--workdir", str(workdir), *FLAGS, *extra]


def listing(folder: str) -> dict[str, int]:
  """{path under `folder`: size} of every object under a gs:// folder."""
  storage.configure(folder)
  import gcsfs
  found = gcsfs.GCSFileSystem().find(folder.removeprefix("gs://"), detail=True)
  return {p[len(folder) - len("gs://") + 1:]: info["size"] for p, info in found.items()}


def wait_until_free(workdir: str, timeout: float = 60) -> None:
  deadline = time.monotonic() + timeout
  while writer_lock.holder(workdir) is not None:
    assert time.monotonic() < deadline, f"the lease on {workdir} still runs after {timeout} s"
    time.sleep(0.1)


def damage_largest(folder: str) -> str:
  """Cut the largest file under `folder` (local or gs://) to 100 bytes, as a partial copy would; its path."""
  if storage.is_url(folder):
    path = storage.join(folder, max((sizes := listing(folder)), key=sizes.get))
  else:
    path = max((p for p in pathlib.Path(folder).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  storage.write_bytes(str(path), storage.read_bytes(str(path))[:100])
  return str(path)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
  """The local run every other run of this module must equal."""
  workdir = tmp_path_factory.mktemp("local") / "run"
  assert cli.main(argv(workdir)) == 0
  return workdir


@pytest.fixture(autouse=True)
def no_local_gs_folder(tmp_path, monkeypatch):
  """Every test runs in an empty folder, where a gs:// path taken for a local one would appear."""
  monkeypatch.chdir(tmp_path)
  yield
  assert not any(p.name.startswith("gs:") for p in tmp_path.rglob("*")), list(tmp_path.rglob("gs:*"))


def test_train_sigterm_and_resume_on_gs_equal_an_uninterrupted_run_and_profile(uninterrupted, gcs_dir, tmp_path,
                                                                                compile_cache):
  profile = ["--config.train.profile_start_step=2", "--config.train.profile_steps=2"]
  code, output = sigterm_after_first_records(argv(gcs_dir, *profile), gcs_dir,
                                             subprocess_env(compile_cache, num_devices=1), cwd=tmp_path)
  assert code == 143, output
  stop = latest_step(gcs_dir)
  assert stop is not None and 5 <= stop < STEPS and stop % 5 == 0, output
  assert records(gcs_dir)[-1]["step"] == stop
  assert writer_lock.holder(gcs_dir) is None  # released at exit
  assert "profile of the steps from 2 to 4 written to " + gcs_dir in output
  traces = [p for p in listing(gcs_dir) if p.startswith("profile/plugins/profile/")]
  assert any(p.endswith(".xplane.pb") for p in traces) and any(p.endswith(".trace.json.gz") for p in traces), traces

  assert cli.main(argv(gcs_dir, *profile)) == 0  # the same command resumes from the bucket
  assert records(gcs_dir) == records(uninterrupted)  # profiled, stopped and resumed: the same numbers
  assert json.loads(storage.read_text(storage.join(gcs_dir, "finished.json")))["step"] == STEPS
  assert {"config.json", "environment.json", "metrics.jsonl"} <= set(listing(gcs_dir))
  assert any(p.startswith("tensorboard/events.out.tfevents.") for p in listing(gcs_dir))


def test_a_second_writer_is_refused_in_one_line_and_writes_nothing(gcs_dir, capsys):
  holder = subprocess.Popen([sys.executable, "-c", "import sys; from resnet_jax.train.writer_lock import WriterLock; "
                             "held = WriterLock(sys.argv[1]); print('held', flush=True); sys.stdin.read()", gcs_dir],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "held\n"
    before = listing(gcs_dir)
    capsys.readouterr()
    assert cli.main(argv(gcs_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is being written by pid {holder.pid} on host" in err[0], err
    assert "lease" in err[0] and "runs for another" in err[0], err
    assert listing(gcs_dir) == before == {"lock": before["lock"]}  # nothing written
  finally:
    holder.stdin.close()
    holder.wait()


def test_kill_9_then_the_lease_runs_out_and_the_run_resumes_past_a_damaged_checkpoint(uninterrupted, gcs_dir,
                                                                                      tmp_path, compile_cache, capsys,
                                                                                      monkeypatch):
  monkeypatch.setenv(lease.LEASE_ENV, "5")
  proc = subprocess.Popen(resnet_jax_command() + argv(gcs_dir), env=subprocess_env(compile_cache, num_devices=1),
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    wait_for(lambda: (latest_step(gcs_dir) or 0) >= 40, proc, "two checkpoints")
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  with pytest.raises(writer_lock.WorkdirBusy, match=rf"pid {proc.pid} on host .* runs for another \d+ s"):
    writer_lock.WriterLock(gcs_dir)  # the dead holder's lease still runs
  newest = latest_step(gcs_dir)
  damage_largest(storage.join(gcs_dir, "checkpoints", str(newest)))
  wait_until_free(gcs_dir)
  capsys.readouterr()
  assert cli.main(argv(gcs_dir)) == 0  # takes the expired lease over, resumes from the older checkpoint
  out = capsys.readouterr().out
  assert f"checkpoint {newest} is damaged (OUT_OF_RANGE reading " in out, out
  assert f"moved to {gcs_dir}/{DAMAGED_DIR}/{newest}-" in out and f"resuming from step {newest - 20} " in out, out
  assert any(p.startswith(f"{DAMAGED_DIR}/{newest}-") for p in listing(gcs_dir))  # kept, not deleted
  assert records(gcs_dir) == records(uninterrupted)


def test_a_damaged_newest_local_checkpoint_is_moved_aside_and_none_restoring_is_one_line(uninterrupted, tmp_path,
                                                                                          capsys):
  resumed, hopeless = tmp_path / "resumed", tmp_path / "hopeless"
  for copy in (resumed, hopeless):
    shutil.copytree(uninterrupted, copy)
    (copy / "finished.json").unlink()
  damage_largest(str(resumed / "checkpoints" / str(STEPS)))
  capsys.readouterr()
  assert cli.main(argv(resumed)) == 0
  out = capsys.readouterr().out
  assert f"checkpoint {STEPS} is damaged (OUT_OF_RANGE reading " in out and f"resuming from step {STEPS - 20} " in out
  assert [p.name.split("-")[0] for p in (resumed / DAMAGED_DIR).iterdir()] == [str(STEPS)]
  assert records(resumed) == records(uninterrupted)

  steps = sorted(int(p.name) for p in (hopeless / "checkpoints").iterdir() if p.name.isdigit())
  for step in steps:
    damage_largest(str(hopeless / "checkpoints" / str(step)))
  assert cli.main(argv(hopeless)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "no checkpoint restores" in err[0] and "nothing was moved" in err[0], err
  assert all(f"checkpoints/{step} (OUT_OF_RANGE" in err[0] for step in steps), err
  assert not (hopeless / DAMAGED_DIR).exists()


def test_a_sweep_and_its_report_on_a_gs_root(gcs_dir, tmp_path, capsys):
  study = tmp_path / "tiny.py"
  study.write_text(f'BASE_CONFIG = "{REPO}/configs/digits.py"\n'
                   'GRID = {"depth": [8], "variant": ["plain", "residual"], "seed": [0]}\n'
                   'OVERRIDES = {"train.num_steps": 10, "train.log_every_steps": 5, "train.eval_every_steps": 10, '
                   '"train.checkpoint_every_steps": 10}\n')
  assert run_sweep(str(study), gcs_dir, at_once="1") == []
  index = make_report(gcs_dir)
  assert index == f"{gcs_dir}/report/index.md"
  found = listing(gcs_dir)
  for name in ("study.json", "report/index.md", "report/results.md", "report/results.csv", "report/errors.png",
               "report/verdicts.json", "report/layer_responses.png", "plain-8-seed0/train.log",
               "residual-8-seed0/finished.json", "residual-8-seed0/checkpoints/10/commit_success.txt"):
    assert name in found, sorted(found)
  assert storage.read_bytes(f"{gcs_dir}/report/errors.png").startswith(b"\x89PNG")
  assert "| plain | 8 |" in storage.read_text(f"{gcs_dir}/report/results.md").replace("plain-8", "plain | 8")
  assert f"under `{gcs_dir}`" in storage.read_text(index)
  capsys.readouterr()
  assert run_sweep(str(study), gcs_dir, at_once="1") == []  # finished members are seen as finished
  assert "plain-8-seed0: skipped (finished" in capsys.readouterr().out


def test_weights_export_to_gs_and_import_from_it(gcs_dir, tmp_path, capsys):
  """A torchvision-shaped net trained on gs:// exports to gs:// (the same tensors as to a local file) and imports
  back from there into another gs:// work directory."""
  net = spec("configs/synthetic.py:family=imagenet,depth=18,image_size=32,batch=8,num_classes=10")
  torchvision_like = ["--config.model.shortcut=B", "--config.data.normalize=channel_mean_std"]
  trained, imported = f"{gcs_dir}/run", f"{gcs_dir}/imported"
  assert cli.main(["train", "--config", net, "--workdir", trained, *torchvision_like,
                   "--config.train.num_steps=2"]) == 0
  weights, local = f"{gcs_dir}/weights.safetensors", tmp_path / "weights.safetensors"
  for output in (weights, str(local)):
    assert cli.main(["convert", "--to", "torchvision", "--workdir", trained, "--output", output]) == 0
  from resnet_jax.interop.files import read_state_dict
  exported, written_here = read_state_dict(weights), read_state_dict(str(local))
  assert exported.keys() == written_here.keys() and len(exported) == 122
  assert all(np.array_equal(exported[name], written_here[name]) for name in exported)
  capsys.readouterr()
  assert cli.main(["convert", "--from", "torchvision", "--input", weights, "--config", net, *torchvision_like,
                   "--workdir", imported]) == 0, capsys.readouterr().err
  again = f"{gcs_dir}/again.safetensors"
  assert cli.main(["convert", "--to", "torchvision", "--workdir", imported, "--output", again]) == 0
  again = read_state_dict(again)
  assert again.keys() == exported.keys()
  for name in exported:
    if not name.endswith("num_batches_tracked"):  # the step: 2 trained, 0 imported
      np.testing.assert_array_equal(again[name], exported[name], err_msg=name)


def test_a_gs_path_without_the_client_libraries_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(storage, "_configured", False)
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
  assert cli.main(argv("gs://runs/never")) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "pip install 'resnet-jax[gcs]'" in err[0], err
  assert not os.listdir(tmp_path)
