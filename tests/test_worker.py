"""The sweep worker (resnet_jax.worker): members one after another in one process train exactly as in
processes of their own, reuse the compiled steps, hand back what needs another device split, and a
failure ends the worker; the pool reports failed members and goes on."""

import json
import os
import subprocess
import sys

import pytest

from conftest import records, spec
from resnet_jax.studies import launchers

STEPS = ["--config.train.num_steps=20", "--config.train.log_every_steps=10", "--config.train.eval_every_steps=10",
         "--config.train.analysis_every_steps=10"]


def _argv(workdir, seed: int = 0, depth: int = 8, *extra: str) -> list[str]:
  return ["train", "--config", spec(f"configs/digits.py:depth={depth},variant=residual,seed={seed}"),
          "--workdir", str(workdir), *STEPS, *extra]


def _env(**extra: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return dict(env, JAX_PLATFORMS="cpu", **extra)


def _worker(jobs: list[list[str]], logs: list, env: dict) -> tuple[list[dict], int]:
  """The worker's replies to `jobs` (sent all at once) and its exit status."""
  lines = "".join(json.dumps(dict(argv=argv, log=str(log))) + "\n" for argv, log in zip(jobs, logs))
  done = subprocess.run([sys.executable, "-m", "resnet_jax.worker"], input=lines, capture_output=True, text=True,
                        env=env, timeout=300)
  return [json.loads(line) for line in done.stdout.splitlines()], done.returncode


def test_later_seeds_in_one_worker_train_exactly_as_in_a_process_of_their_own(tmp_path):
  env = _env(RESNET_JAX_CPU_CORES=str(min(os.sched_getaffinity(0))))
  replies, status = _worker([_argv(tmp_path / "seed0"), _argv(tmp_path / "seed1", 1)],
                            [tmp_path / "seed0.log", tmp_path / "seed1.log"], env)
  assert replies == [{"exit": 0}, {"exit": 0}] and status == 0
  subprocess.run([sys.executable, "-m", "resnet_jax.cli", *_argv(tmp_path / "alone", 1)], env=env, check=True,
                 capture_output=True, timeout=300)
  assert records(tmp_path / "seed1") == records(tmp_path / "alone") and len(records(tmp_path / "alone")) >= 4
  assert records(tmp_path / "seed0") != records(tmp_path / "seed1")  # another seed, not a copy
  assert "step 20/20" in (tmp_path / "seed1.log").read_text()  # each member's output in its own log
  environment = json.loads((tmp_path / "seed1" / "environment.json").read_text())
  assert environment["device_count"] == 1 and len(environment["cpu_cores"]) == 1


def test_a_member_that_needs_another_device_split_is_handed_back_unrun(tmp_path):
  first = _argv(tmp_path / "two", 0, 8, "--config.train.num_steps=2", "--config.optimizer.schedule=constant")
  replies, status = _worker([["--cpu-devices", "2", *first], ["--cpu-devices", "1", *_argv(tmp_path / "one")]],
                            [tmp_path / "two.log", tmp_path / "one.log"], _env())
  assert replies == [{"exit": 0}, {"exit": None}] and status == 0
  assert not (tmp_path / "one").exists() and not (tmp_path / "one.log").exists()


def test_a_failed_member_ends_its_worker_with_its_error_in_its_log(tmp_path):
  replies, _ = _worker([_argv(tmp_path / "bad", 0, 7), _argv(tmp_path / "never")],
                       [tmp_path / "bad.log", tmp_path / "never.log"], _env())
  assert replies == [{"exit": 2}]
  assert "model.depth" in (tmp_path / "bad.log").read_text() and not (tmp_path / "never").exists()


def test_the_pool_reports_a_failed_member_and_runs_the_rest_in_fresh_workers(tmp_path, monkeypatch, capsys):
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) < 2:
    pytest.skip("needs 2 cores (CI has them)")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
  jobs = [launchers.Job(name, _argv(tmp_path / name, seed, depth), str(tmp_path / name))
          for name, seed, depth in (("bad", 0, 7), ("a", 0, 8), ("b", 1, 8), ("c", 2, 8))]
  assert launchers.run_parallel(jobs, "2") == ["bad"]
  out = capsys.readouterr().out
  assert "2 members at once on the CPU" in out and "bad: failed (exit 2)" in out and "model.depth" in out
  used = [json.loads((tmp_path / name / "environment.json").read_text())["cpu_cores"] for name in "abc"]
  assert all(len(c) == 1 for c in used) and {c[0] for c in used} == set(cores[:2])
  assert all(json.loads((tmp_path / name / "finished.json").read_text())["step"] == 20 for name in "abc")


def test_a_process_reuses_its_compiled_steps_for_another_seed_only():
  """jit's cache, keyed by the steps' settings: a later seed of a member compiles nothing; another net does."""
  from resnet_jax.config import load_config
  from resnet_jax.train import loop
  from resnet_jax.train.step import train_step

  def step_once(arg: str) -> int:
    """Programs in the train step's cache after one step of the config `arg`."""
    exp = loop.setup(load_config(spec(f"configs/digits.py:{arg}"), STEPS))
    exp.train_step(exp.state, next(exp.inputs.train_batches(0)))
    return train_step._cache_size()

  first = step_once("depth=8,seed=0")
  assert step_once("depth=8,seed=3") == first
  assert step_once("depth=8,seed=0,variant=plain") == first + 1


def test_a_sweep_stopped_by_sigterm_stops_its_members_at_a_checkpoint_and_resumes(tmp_path):
  import signal
  import time
  study = tmp_path / "one.py"
  study.write_text(f'BASE_CONFIG = "{spec("configs/digits.py")}"\nGRID = {{"depth": [8], "variant": ["residual"]}}\n')
  sweep = [sys.executable, "-m", "resnet_jax.cli", "sweep", str(study), "--root", str(tmp_path / "runs"),
           "--config.train.num_steps=400", "--config.train.log_every_steps=5"]
  log = tmp_path / "runs" / "residual-8" / "train.log"
  process = subprocess.Popen(sweep, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 240
  while not (log.exists() and "step 10/400" in log.read_text()) and time.monotonic() < deadline:
    time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  out = process.communicate(timeout=120)[0]
  assert process.returncode == 130 and "sweep interrupted: run the same command again to resume" in out
  assert "stopped by SIGTERM at step" in log.read_text()  # the member checkpointed (and its worker ended)
  done = subprocess.run(sweep, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and "resuming from step" in log.read_text()
  assert json.loads((tmp_path / "runs" / "residual-8" / "finished.json").read_text())["step"] == 400

