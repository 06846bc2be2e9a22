"""Sweeps and multi-process training on a real Slurm: the one-node cluster of tools/local_slurm.sh
(slurm-wlm and munge on this machine), started here when it is not up.

Members train digits at depth 8 on one XLA device each (RESNET_JAX_CPU_DEVICES=1, exported to the
tasks by sbatch), so a member's curve can be compared with the same run trained here without Slurm.
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, records

ENV = dict(os.environ, RESNET_JAX_CPU_DEVICES="1", JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
ENV.pop("XLA_FLAGS", None)  # conftest's one-device flag is this process's; members choose their own
STUDY = f'''"""Two digits members for the Slurm tests; residual-9 is not a 6n+2 depth and fails in its task."""
BASE_CONFIG = "{REPO / 'configs' / 'digits.py'}"
GRID = {{"depth": [8, 9], "variant": ["residual"], "seed": [0]}}
OVERRIDES = {{"train.log_every_steps": 10, "train.eval_every_steps": 50, "train.checkpoint_every_steps": 100}}
SLURM = ["--time=30"]
'''
LONG = ["--config.train.num_steps=400"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
  """The local cluster up (tools/local_slurm.sh start is idempotent)."""
  subprocess.run(["bash", str(REPO / "tools" / "local_slurm.sh"), "start"], check=True, capture_output=True,
                 timeout=300)
  yield
  subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)


@pytest.fixture
def study(tmp_path):
  path = tmp_path / "two.py"
  path.write_text(STUDY)
  return path


def _sweep(study, root, *args: str, **popen) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "resnet_jax.cli", "sweep", str(study), "--root", str(root),
                           "--launcher", "slurm", *args], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=REPO, **popen)


def _wait_for(condition, timeout=240, what="condition"):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, f"timed out waiting for {what}"
    time.sleep(0.5)


def _squeue(*args: str) -> str:
  return subprocess.run(["squeue", "-h", "-r", *args], capture_output=True, text=True, check=True).stdout


def _start_requeued_now(task: str) -> None:
  """Start a requeued task now instead of in Slurm's two minutes. Not at once: slurmd revokes the first
  run's credential at the requeue and refuses a relaunch whose credential dates from the same second
  ('Job credential revoked', the task then fails), so wait a few seconds after the task is pending."""
  _wait_for(lambda: "PENDING" in _squeue("-j", task, "-o", "%T"), what="the requeued task")
  time.sleep(5)
  subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True)


def _logged_step(workdir) -> int:
  log = workdir / "train.log"
  steps = re.findall(r"^step (\d+)/", log.read_text(), re.M) if log.exists() else []
  return int(steps[-1]) if steps else 0


def _curve(workdir) -> list[dict]:
  return [{k: v for k, v in r.items() if k != "epoch"} for r in records(workdir)]


def test_sweep_submits_follows_names_the_failed_task_and_reports(study, tmp_path):
  root = tmp_path / "runs"
  sweep = _sweep(study, root, "--config.train.num_steps=30", "--slurm-arg=--job-name=rj-test", "--report")
  out = sweep.communicate(timeout=300)[0]
  assert sweep.returncode == 1, out
  job = re.search(r"as Slurm job (\d+) \(2 array tasks, sbatch --time=30 --job-name=rj-test\)", out)
  assert job, out
  assert re.search(rf"residual-8-seed0: finished \(Slurm task {job[1]}_[01]\)", out), out
  failed = re.search(rf"residual-9-seed0: failed \(Slurm task {job[1]}_[01] left the queue unfinished; log (\S+)\): (.*)",
                     out)
  assert failed and failed[1] == str(root / "residual-9-seed0" / "train.log"), out
  assert "depth" in failed[2]  # the member's own error line
  assert "sweep: 1 ran, 0 skipped, 1 failed" in out and "report skipped: 1 members failed (residual-9-seed0)" in out
  assert json.loads((root / "residual-8-seed0" / "finished.json").read_text())["step"] == 30
  assert [a["job_id"] for a in json.loads((root / "slurm.json").read_text())["arrays"]] == [job[1]]


def test_dry_run_only_writes_the_script_and_asks_for_no_gpu(study, tmp_path):
  root = tmp_path / "runs"
  sweep = _sweep(study, root, "--dry-run", "--slurm-arg=--cpus-per-task=1")
  out = sweep.communicate(timeout=120)[0]
  assert sweep.returncode == 0, out
  script = (root / "sweep.slurm").read_text()
  assert "#SBATCH --array=0-1" in script and "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR1@120" in script
  assert "gres" not in script and "gpu" not in script
  assert f"sbatch --time=30 --cpus-per-task=1 {root / 'sweep.slurm'}" in out
  assert not (root / "slurm.json").exists() and not (root / "residual-8-seed0").exists()
  assert subprocess.run(["bash", "-n", str(root / "sweep.slurm")]).returncode == 0


def test_requeued_task_resumes_the_rerun_sweep_follows_it_and_the_curve_is_uninterrupted(study, tmp_path):
  """The follower is killed, the running task requeued (SIGTERM: checkpoint, exit 143); a second sweep
  re-attaches to the queued task instead of submitting it again, and the member's metrics equal a run
  that was never interrupted."""
  root = tmp_path / "runs"
  member = root / "residual-8-seed0"
  first = _sweep(study, root, *LONG, "--only", "depth=8")
  try:
    _wait_for(lambda: _logged_step(member) >= 50, what="the task to train")
    task = json.loads((root / "slurm.json").read_text())["arrays"][0]["job_id"] + "_0"
  finally:
    first.kill()
    first.wait()
  subprocess.run(["scontrol", "requeue", task], check=True)
  _start_requeued_now(task)
  log = (member / "train.log").read_text()
  assert "stopped by SIGTERM at step" in log
  stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", log)[1])
  assert 50 <= stopped < 400
  second = _sweep(study, root, *LONG, "--only", "depth=8")
  out = second.communicate(timeout=300)[0]
  assert second.returncode == 0, out
  assert f"residual-8-seed0: already queued as Slurm task {task}: following it" in out and "submitted" not in out
  assert f"resuming from step {stopped}" in (member / "train.log").read_text()
  assert len(json.loads((root / "slurm.json").read_text())["arrays"]) == 1

  reference = tmp_path / "reference"
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", "train", "--config", f"{REPO}/configs/digits.py:depth=8",
                  "--workdir", str(reference), *LONG, "--config.train.log_every_steps=10",
                  "--config.train.eval_every_steps=50", "--config.train.checkpoint_every_steps=100"],
                 env=ENV, check=True, capture_output=True, timeout=300)
  assert _curve(member) == _curve(reference)


def test_two_task_job_trains_one_model_over_both_processes(tmp_path):
  """srun starts two processes; jax.distributed reads Slurm's variables and the job trains one model,
  equal to the same run in one process."""
  common = ["--config", f"{REPO}/configs/digits.py:depth=8", "--config.train.num_steps=20",
            "--config.train.log_every_steps=5", "--config.train.eval_every_steps=10",
            "--config.data.batch_size=64", "--config.data.eval_batch_size=64"]
  cli = [sys.executable, "-m", "resnet_jax.cli", "train"]
  job = subprocess.run(["sbatch", "--wait", "-n", "2", f"--output={tmp_path}/job.out", "--wrap",
                        " ".join(["srun", *cli, "--workdir", str(tmp_path / "two"), *common,
                                  "--config.distributed.enabled=True"])],
                       env=ENV, capture_output=True, text=True, timeout=300)
  assert job.returncode == 0, (tmp_path / "job.out").read_text()[-3000:]
  environment = json.loads((tmp_path / "two" / "environment.json").read_text())
  assert environment["process_count"] == 2 and environment["device_count"] == 2
  subprocess.run([*cli, "--workdir", str(tmp_path / "one"), *common], env=dict(ENV, RESNET_JAX_CPU_DEVICES="2"),
                 check=True, capture_output=True, timeout=300)
  two, one = _curve(tmp_path / "two"), _curve(tmp_path / "one")
  assert [r["step"] for r in two] == [r["step"] for r in one] == [5, 10, 15, 20]
  for a, b in zip(two, one):
    keys = [k for k in a if k in ("train_loss", "train_error", "grad_norm", "eval_loss", "eval_error", "eval_count")]
    np.testing.assert_allclose([a[k] for k in keys], [b[k] for k in keys], rtol=1e-4, atol=1e-5)


def test_a_second_writer_is_refused_naming_the_slurm_job_that_holds_the_workdir(tmp_path):
  workdir = tmp_path / "run"
  train = [sys.executable, "-m", "resnet_jax.cli", "train", "--config", f"{REPO}/configs/digits.py:depth=8",
           "--workdir", str(workdir), "--config.train.num_steps=5000"]
  job = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/job.out", "--wrap", " ".join(train)],
                       env=ENV, capture_output=True, text=True, check=True).stdout.strip()
  try:
    _wait_for(lambda: (workdir / "environment.json").exists(), what="the job to start writing")
    written_once = ("config.json", "environment.json", "lock")  # by the holder as it starts, never again
    before = {name: ((workdir / name).stat().st_mtime_ns, (workdir / name).read_text()) for name in written_once}
    second = subprocess.run(train, env=ENV, capture_output=True, text=True, timeout=120)
  finally:
    subprocess.run(["scancel", job], check=True)
  assert second.returncode == 2
  assert re.fullmatch(rf"resnet-jax train: error: --workdir {workdir} is being written by pid \d+ on host \S+ "
                      rf"\(Slurm job {job}\) since \S+: one run per work directory; wait for it, stop it, or use "
                      r"another --workdir\n", second.stderr), second.stderr
  assert before == {name: ((workdir / name).stat().st_mtime_ns, (workdir / name).read_text()) for name in written_once}


def test_a_task_near_its_time_limit_saves_requeues_itself_and_resumes(study, tmp_path):
  """--signal=B:USR1 reaches the task's shell only: it passes SIGTERM to the trainer, which saves and
  exits 143, and requeues the task, which resumes from that checkpoint."""
  root = tmp_path / "runs"
  member = root / "residual-8-seed0"
  sweep = _sweep(study, root, "--config.train.num_steps=100000", "--only", "depth=8", "--slurm-arg=--time=3",
                 "--slurm-arg=--signal=B:USR1@60")  # 120 s in; Slurm may send it up to 60 s early (sbatch(1))
  try:
    log = member / "train.log"
    _wait_for(lambda: log.exists() and "requeueing task" in log.read_text(), timeout=300, what="the time-limit signal")
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", log.read_text())[1])
    assert (member / "checkpoints" / str(stopped)).is_dir()
    _start_requeued_now(json.loads((root / "slurm.json").read_text())["arrays"][0]["job_id"] + "_0")
    _wait_for(lambda: f"resuming from step {stopped}" in log.read_text(), what="the resumed task")
    assert "restart 1" in log.read_text()
  finally:
    sweep.kill()
    sweep.wait()
    subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)
