"""A work directory holds one experiment, whatever happens to the process that writes it.

Evaluation and checkpoints keep their own intervals; a config that differs from the recorded one
is refused before anything is written; re-running a finished run changes nothing; kill -9 at
any moment, then the same command, leaves the files an uninterrupted run leaves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from resnet_jax import cli

from conftest import checkpoint_steps, records, spec, subprocess_env

pytestmark = pytest.mark.usefixtures("compile_cache")
CONFIG = "configs/digits.py:depth=8,steps=20"
# Intervals that divide none of each other, and gradient-norm analysis on its own interval too.
INTERVALS = ["--config.train.log_every_steps=3", "--config.train.eval_every_steps=5",
             "--config.train.checkpoint_every_steps=7", "--config.train.keep_checkpoints=10",
             "--config.train.analysis_every_steps=4"]


def train(workdir, *extra: str, config: str = CONFIG) -> int:
  return cli.main(["train", "--config", spec(config), "--workdir", str(workdir), *INTERVALS, *extra])


def snapshot(workdir) -> dict[str, tuple[str, int]]:
  """Every file under the work directory: content hash and modification time."""
  files = {}
  for folder, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, workdir)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
  return files


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("finished") / "run"
  assert train(workdir) == 0
  return workdir


def test_eval_checkpoint_and_log_each_keep_their_own_interval(finished):
  logged = records(finished)
  assert [r["step"] for r in logged if "train_loss" in r] == [3, 6, 7, 9, 12, 14, 15, 18, 20]  # + checkpoint steps
  assert [r["step"] for r in logged if "eval_error" in r] == [5, 10, 15, 20]
  assert [r["step"] for r in logged if "grad_norm/head/kernel" in r] == [0, 4, 8, 12, 16]
  assert checkpoint_steps(finished) == [7, 14, 20]
  assert all(r["eval_count"] == 297 for r in logged if "eval_error" in r)


def test_eval_interval_in_epochs_follows_the_batch_size(tmp_path):
  # digits: 1500 training examples, batch 128 -> 11 steps per epoch; batch 64 -> 23.
  assert train(tmp_path / "a", "--config.train.eval_every_steps=0", "--config.train.eval_every_epochs=1") == 0
  assert [r["step"] for r in records(tmp_path / "a") if "eval_error" in r] == [11, 20]
  assert train(tmp_path / "b", "--config.train.eval_every_steps=0", "--config.train.eval_every_epochs=0.5",
               "--config.data.batch_size=64") == 0
  assert [r["step"] for r in records(tmp_path / "b") if "eval_error" in r] == [12, 20]


def test_rerunning_a_finished_run_changes_nothing(finished, capsys):
  before = snapshot(finished)
  assert train(finished) == 0
  assert "finished at step 20: nothing to do" in capsys.readouterr().out
  assert snapshot(finished) == before


@pytest.mark.parametrize("argument, extra, named", [
    ("variant=plain", [], "model.variant 'residual' -> 'plain'"),
    ("depth=14", [], "model.depth 8 -> 14"),
    ("seed=1", [], "seed 0 -> 1"),
    ("", ["--config.data.batch_size=64"], "data.batch_size 128 -> 64"),
    ("", ["--config.optimizer.learning_rate=0.2"], "optimizer.learning_rate 0.1 -> 0.2"),
    # Longer, but the lr decays would move from steps 10 and 15 to 20 and 30: the trained steps change.
    ("", ["--config.train.num_steps=40"], "derived.lr_boundaries [10, 15] -> [20, 30]"),
])
def test_another_experiment_in_the_work_directory_is_refused(finished, capsys, argument, extra, named):
  before = snapshot(finished)
  config = CONFIG + ("," + argument if argument else "")
  assert train(finished, *extra, config=config) == cli.EXIT_BAD_INPUT
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and named in lines[0] and str(finished) in lines[0], lines
  assert "nothing was changed" in lines[0]
  assert snapshot(finished) == before


def test_a_field_added_after_the_run_continues_at_its_default_only(finished, tmp_path, capsys):
  """A run recorded before config fields existed (here data.eval_crops and the profiler's) is the same experiment
  when they keep their defaults, and another one when one is set to something else; its models restore."""
  from resnet_jax.analysis.trained import read_checkpoint, restore
  old = tmp_path / "old"
  shutil.copytree(finished, old)
  recorded = json.loads((old / "config.json").read_text())
  del recorded["data"]["eval_crops"], recorded["train"]["profile_steps"], recorded["train"]["profile_start_step"]
  (old / "config.json").write_text(json.dumps(recorded))
  before = snapshot(old)
  assert train(old) == 0
  assert "finished at step 20: nothing to do" in capsys.readouterr().out
  assert snapshot(old) == before
  assert restore(read_checkpoint(str(old))).config.train.profile_steps == 0  # what the report's analyses do
  assert train(old, "--config.data.eval_crops=ten") == cli.EXIT_BAD_INPUT
  assert "data.eval_crops 'center' -> 'ten'" in capsys.readouterr().err  # the field at its default
  assert snapshot(old) == before


def test_a_longer_run_with_the_same_learning_rates_continues(tmp_path):
  short, straight = tmp_path / "short", tmp_path / "straight"
  constant = ["--config.optimizer.schedule=constant"]
  assert train(short, *constant) == 0
  assert train(short, *constant, "--config.train.num_steps=30") == 0  # allowed: every trained step had lr 0.1
  assert train(straight, *constant, "--config.train.num_steps=30") == 0
  evals = lambda run: [{k: v for k, v in r.items() if k.startswith("eval_")} for r in records(run) if "eval_error" in r]
  assert evals(short) == evals(straight)  # the same model at every evaluation, 5 ... 30
  # The first run logged its end (step 20), so the logging interval after it starts later; from
  # step 24 on the logged training metrics cover the same steps again and agree exactly.
  late = lambda run: [r for r in records(run) if "train_loss" in r and r["step"] >= 24]
  assert late(short) == late(straight) != []
  assert json.loads((short / "config.json").read_text())["train"]["num_steps"] == 30
  environment = json.loads((short / "environment.json").read_text())  # both starts, each from its step
  assert environment["start_step"] == 20 and [r["start_step"] for r in environment["earlier"]] == [0]
  assert environment["earlier"][0].keys() == environment.keys() - {"earlier"}
  assert "earlier" not in json.loads((straight / "environment.json").read_text())


# ----------------------------------------------------------------------------- kill -9 at any moment

def _run_until(workdir, compile_cache, lines: int | None) -> None:
  """Run the train command in a subprocess; kill -9 once metrics.jsonl has `lines` lines (None: finish)."""
  command = [sys.executable, "-m", "resnet_jax.cli", "train", "--config", spec(CONFIG), "--workdir", str(workdir),
             *INTERVALS]
  # One device, as the in-process run it is compared with (float sums differ in the last bits).
  proc = subprocess.Popen(command, env=subprocess_env(compile_cache, num_devices=1), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics, deadline = workdir / "metrics.jsonl", time.monotonic() + 300
  try:
    while lines is not None and proc.poll() is None and time.monotonic() < deadline:
      if metrics.exists() and metrics.read_text().count("\n") >= lines:
        proc.kill()
        break
      time.sleep(0.01)
    output = proc.communicate(timeout=300)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  if lines is None:
    assert proc.returncode == 0, output


def test_kill_9_at_any_moment_then_resume_leaves_an_uninterrupted_runs_metrics(finished, tmp_path, compile_cache):
  workdir = tmp_path / "killed"
  for lines in (1, 4, 9, 13):  # before the first checkpoint, between checkpoints, around analysis records
    _run_until(workdir, compile_cache, lines)
  _run_until(workdir, compile_cache, None)
  assert records(workdir) == records(finished)
  assert checkpoint_steps(workdir)[-1] == 20
  finished_record = json.loads((workdir / "finished.json").read_text())
  assert finished_record["step"] == 20 and finished_record["eval_count"] == 297
  # The starts whose steps the work directory keeps: from 0, each from a checkpoint of the one before.
  environment = json.loads((workdir / "environment.json").read_text())
  starts = [r["start_step"] for r in environment.get("earlier", [])] + [environment["start_step"]]
  assert starts[0] == 0 and starts == sorted(set(starts)) and set(starts[1:]) <= set(checkpoint_steps(workdir)), starts
