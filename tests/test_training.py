"""The trainer end to end on tiny runs: exact resume, 1 vs 8 devices, exact eval counts,
the NaN guard, SIGTERM, and `resnet-jax eval`.

Runs are digits ResNet-8 for a few dozen steps (or synthetic 8x8 images); multi-device runs
are subprocesses of tests/_multidevice_run.py with simulated CPU devices. A persistent
compilation cache (this module only) lets identical programs compile once.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from resnet_jax import cli
from resnet_jax.config import load_config
from resnet_jax.train.checkpoint import Checkpointer
from resnet_jax.train.loop import setup
from resnet_jax.train.metrics import read_metrics

from conftest import REPO, checkpoint_steps, records, sigterm_after_first_records, spec, subprocess_env

pytestmark = pytest.mark.usefixtures("compile_cache")  # one compilation cache for the module
HELPER = REPO / "tests" / "_multidevice_run.py"
_spec = importlib.util.spec_from_file_location("_multidevice_run", HELPER)
multidevice = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(multidevice)


def leaves(tree) -> list[np.ndarray]:
  return list(named_leaves(tree).values())


def named_leaves(tree) -> dict[str, np.ndarray]:
  """Every leaf as a host array (PRNG keys as their raw data), by tree path."""
  def host(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))
  return {jax.tree_util.keystr(path): host(x) for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def restore(workdir, config: str, overrides=(), step=None):
  """The TrainState checkpointed in `workdir` (latest, or `step`)."""
  like = setup(load_config(spec(config), list(overrides))).state
  checkpointer = Checkpointer(str(workdir))
  try:
    return checkpointer.restore(like, step)
  finally:
    checkpointer.close()


# ----------------------------------------------------------------------------- gradient-norm analysis

def test_layer_gradient_norms_are_those_of_the_analysed_steps_update(tmp_path):
  """Logged every step, the train gradient norm at step s+1 is that of step s's batch: on analysis
  steps it must equal the per-layer norms combined, and the layers must be every parameter."""
  flags = ["--config.train.log_every_steps=1", "--config.train.analysis_every_steps=3",
           "--config.train.eval_every_steps=7", "--config.train.checkpoint_every_steps=7"]
  assert train_cli(tmp_path, config="configs/digits.py:depth=8,steps=7", flags=flags) == 0
  logged = records(tmp_path)
  analysed = {r["step"]: {k[len("grad_norm/"):]: v for k, v in r.items() if k.startswith("grad_norm/")}
              for r in logged if any(k.startswith("grad_norm/") for k in r)}
  assert sorted(analysed) == [0, 3, 6]
  params = setup(load_config(spec("configs/digits.py:depth=8,steps=7"), [])).state.params
  names = {"/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))
           for path, _ in jax.tree_util.tree_leaves_with_path(params)}
  train_norm = {r["step"]: r["grad_norm"] for r in logged if "grad_norm" in r}
  for step, layers in analysed.items():
    assert set(layers) == names and all(v > 0 for v in layers.values())
    np.testing.assert_allclose(np.sqrt(sum(v * v for v in layers.values())), train_norm[step + 1], rtol=1e-5)


# ----------------------------------------------------------------------------- exact resume

RESUME_CONFIG = "configs/digits.py:depth=8,steps=20"
RESUME_FLAGS = ["--config.train.log_every_steps=5", "--config.train.eval_every_steps=10",
                "--config.train.checkpoint_every_steps=10"]


def train_cli(workdir, config=RESUME_CONFIG, flags=RESUME_FLAGS, extra=()) -> int:
  return cli.main(["train", "--config", spec(config), "--workdir", str(workdir), *flags, *extra])


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory):
  """A: 20 steps straight. B: A's work directory as a crash after the step-10 checkpoint leaves it
  (the step-20 checkpoint and finished.json not written, stale records past step 10, a torn last
  line), then the same command resumes it to 20."""
  root = tmp_path_factory.mktemp("resume")
  a, b = root / "a", root / "b"
  assert train_cli(a) == 0
  shutil.copytree(a, b)
  shutil.rmtree(b / "checkpoints" / "20")
  (b / "finished.json").unlink()
  with open(b / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 15, "train_loss": -1.0}) + "\n")
    f.write(json.dumps({"step": 40, "train_loss": -2.0}) + "\n")
    f.write('{"step": 45, "train_lo')
  assert checkpoint_steps(b) == [10]
  assert train_cli(b) == 0
  return a, b


def test_resumed_run_matches_uninterrupted_run_bit_for_bit(resume_runs):
  a, b = resume_runs
  assert checkpoint_steps(a) == checkpoint_steps(b) == [10, 20]
  final_a, final_b = restore(a, RESUME_CONFIG), restore(b, RESUME_CONFIG)
  assert int(np.max(final_a.step)) == int(np.max(final_b.step)) == 20
  initial = setup(load_config(spec(RESUME_CONFIG), [])).state
  assert not np.array_equal(leaves(initial.params)[0], leaves(final_a.params)[0])  # it trained
  named_a, named_b = named_leaves(final_a), named_leaves(final_b)
  assert named_a.keys() == named_b.keys() == named_leaves(initial).keys()  # params, BN, optimiser, step, rng
  assert any(".opt_state" in name for name in named_a) and any(".batch_stats" in name for name in named_a)
  for name, x in named_a.items():
    assert x.dtype == named_b[name].dtype and np.array_equal(x, named_b[name]), f"{name} differs after resuming"


def test_resumed_metrics_match_and_stale_records_are_dropped(resume_runs):
  a, b = resume_runs
  expected = records(a)
  assert [r["step"] for r in expected] == [5, 10, 15, 20]
  assert [r["step"] for r in expected if "eval_error" in r] == [10, 20]
  assert all(r["train_loss"] > 0 for r in records(b))  # the fake records past step 10 are gone
  assert records(b) == expected
  assert json.loads((b / "finished.json").read_text())["step"] == 20


# ----------------------------------------------------------------------------- resnet-jax eval

def test_eval_command_reproduces_the_recorded_eval(resume_runs, capsys):
  a, _ = resume_runs
  evals = {r["step"]: r for r in records(a) if "eval_error" in r}
  capsys.readouterr()
  for step_args, step in (([], 20), (["--step", "10"], 10)):
    assert cli.main(["eval", "--workdir", str(a), *step_args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["step"] == step
    assert result["eval_count"] == 297  # the digits test split, every example once
    assert result["eval_error"] == evals[step]["eval_error"]
    assert result["eval_loss"] == pytest.approx(evals[step]["eval_loss"], rel=1e-6)


# ----------------------------------------------------------------------------- NaN guard

NAN_CONFIG = "configs/digits.py:depth=8,steps=30"
# lr 0.05 for 10 steps, then 1e30: the parameters overflow within a step or two.
NAN_FLAGS = ["--config.optimizer.warmup_steps=10", "--config.optimizer.warmup_learning_rate=0.05",
             "--config.optimizer.learning_rate=1e30", "--config.train.checkpoint_every_steps=5"]


@pytest.mark.parametrize("log_every", [5, 100], ids=["log-every-5", "checkpoints-log-too"])
def test_divergence_stops_with_exit_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys, log_every):
  flags = NAN_FLAGS + [f"--config.train.log_every_steps={log_every}"]
  code = train_cli(tmp_path, NAN_CONFIG, flags)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == cli.EXIT_DIVERGED == 3
  assert len(err) == 1 and "diverged" in err[0] and "non-finite" in err[0], err
  assert "by step 15" in err[0] and "(step 10)" in err[0] and "optimizer.learning_rate" in err[0], err[0]
  assert checkpoint_steps(tmp_path) == [5, 10]  # nothing saved after the parameters went bad
  assert not (tmp_path / "finished.json").exists()
  state = restore(tmp_path, NAN_CONFIG, flags)
  assert int(np.max(state.step)) == 10
  assert all(np.isfinite(x).all() for x in leaves(state.params) + leaves(state.batch_stats))
  assert all(r["step"] <= 10 and np.isfinite(r["train_loss"]) for r in read_metrics(str(tmp_path)))


# ----------------------------------------------------------------------------- SIGTERM

def test_sigterm_checkpoints_at_the_stop_step_and_the_run_resumes(tmp_path, compile_cache):
  steps = 200  # the resume runs' program (compiled already), run longer
  argv = ["train", "--config", spec(RESUME_CONFIG), "--workdir", str(tmp_path), f"--config.train.num_steps={steps}",
          "--config.train.log_every_steps=5", f"--config.train.eval_every_steps={steps}",
          f"--config.train.checkpoint_every_steps={steps}"]
  code, output = sigterm_after_first_records(argv, tmp_path, subprocess_env(compile_cache))
  assert code == 143, output  # 128 + SIGTERM: stopped, not finished
  assert "run the same command to resume" in output
  saved = checkpoint_steps(tmp_path)
  assert len(saved) == 1, saved  # where it stopped, not at a checkpoint interval
  stop = saved[0]
  assert 5 <= stop < steps and stop % 5 == 0, output  # on a logging step
  assert read_metrics(str(tmp_path))[-1]["step"] == stop
  assert not (tmp_path / "finished.json").exists()

  assert cli.main(argv) == 0  # the same command resumes and finishes
  assert checkpoint_steps(tmp_path)[-1] == steps
  assert json.loads((tmp_path / "finished.json").read_text())["step"] == steps
  logged = [r["step"] for r in read_metrics(str(tmp_path))]
  assert logged == list(range(5, steps + 1, 5))  # exactly the records of an uninterrupted run
  assert read_metrics(str(tmp_path))[-1]["eval_count"] == 297


# ----------------------------------------------------------------------------- 1 vs 3 vs 8 devices

# Batch 48: 6 examples per device on 8 devices, where BN groups of 4 straddle device boundaries;
# 16 per device on 3 devices, where groups of 4 align with them. None: whole-batch statistics.
DEVICE_CONFIG = "configs/synthetic.py:depth=8,image_size=8,batch=48,steps=3,dtype=float32"
TRAIN_RUNS = {1: (None, 4), 8: (None, 4), 3: (4,)}  # device count: BN group sizes trained
EVAL = dict(kind="eval_count", num_examples=10_000, eval_batch_size=768)  # 768 does not divide 10000


def _train_task(group):
  overrides = [] if group is None else [f"--config.model.bn_group_size={group}"]
  return dict(kind="train", config=DEVICE_CONFIG, overrides=overrides, steps=3)


def _tasks(num_devices):
  return [_train_task(g) for g in TRAIN_RUNS[num_devices]] + [EVAL]


def _launch(tasks, num_devices, compile_cache):
  return subprocess.Popen([sys.executable, str(HELPER), json.dumps(tasks)],
                          env=subprocess_env(compile_cache, num_devices), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=str(REPO))


def _collect(proc) -> list[dict]:
  output = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, output
  lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
  assert lines, output
  return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def device_runs(compile_cache, tmp_path_factory):
  """{device count: {"train": {bn group: result}, "eval": result}}; 3 and 8 devices run in
  subprocesses while this process (one CPU device) computes the reference."""
  workdir = tmp_path_factory.mktemp("eight") / "run"
  bad_batch = dict(kind="cli", argv=["train", "--config", spec("configs/digits.py:depth=8"), "--workdir",
                                     str(workdir), "--config.data.batch_size=100"])
  procs = {8: _launch(_tasks(8) + [bad_batch], 8, compile_cache), 3: _launch(_tasks(3), 3, compile_cache)}
  try:
    if jax.default_backend() == "cpu" and jax.device_count() == 1:  # the usual case: no extra process
      one = multidevice.run_tasks(_tasks(1))
    else:
      one = _collect(_launch(_tasks(1), 1, compile_cache))
    raw = {1: one, **{n: _collect(p) for n, p in procs.items()}}
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  results = {n: dict(train=dict(zip(TRAIN_RUNS[n], r)), eval=r[len(TRAIN_RUNS[n])]) for n, r in raw.items()}
  results["bad_batch"] = dict(raw[8][-1], workdir=workdir)
  return results


@pytest.mark.parametrize("num_devices, group", [(8, None), (8, 4), (3, 4)],
                         ids=["8-devices-global-bn", "8-devices-bn-groups-straddle", "3-devices-bn-groups-align"])
def test_devices_train_the_same_as_one(device_runs, num_devices, group):
  one, many = device_runs[1]["train"][group], device_runs[num_devices]["train"][group]
  assert (one["devices"], many["devices"]) == (1, num_devices)
  for key in ("loss", "grad_norm", "learning_rate"):
    np.testing.assert_allclose([h[key] for h in many["history"]], [h[key] for h in one["history"]],
                               rtol=1e-4, err_msg=key)
  assert len(one["batch_stats"]) == len(many["batch_stats"]) > 0
  for x, y in zip(many["batch_stats"], one["batch_stats"]):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_bn_groups_change_the_result(device_runs):
  runs = device_runs[1]["train"]
  grouped = np.array([h["loss"] for h in runs[4]["history"]])
  global_bn = np.array([h["loss"] for h in runs[None]["history"]])
  assert np.max(np.abs(grouped - global_bn) / global_bn) > 1e-3
  assert not np.allclose(runs[4]["batch_stats"][1], runs[None]["batch_stats"][1], rtol=1e-3)


@pytest.mark.parametrize("num_devices", [1, 3, 8])
def test_eval_counts_every_example_once(device_runs, num_devices):
  result, reference = device_runs[num_devices]["eval"], device_runs[1]["eval"]
  assert result["devices"] == num_devices
  assert result["padded"] == 14 * 768  # 13 full batches and one padded
  assert result["eval_count"] == 10_000
  # Batched and sharded evaluation may round logits differently: allow two flipped argmaxes in 10,000.
  assert result["eval_error"] == pytest.approx(reference["reference_error"], abs=2.5e-4)
  assert result["eval_error"] == pytest.approx(reference["eval_error"], abs=2.5e-4)
  assert result["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-5)


def test_batch_that_does_not_divide_over_eight_devices_is_rejected(device_runs):
  result = device_runs["bad_batch"]
  lines = result["stderr"].strip().splitlines()
  assert result["code"] == cli.EXIT_BAD_INPUT
  assert len(lines) == 1 and "data.batch_size=100" in lines[0] and "8 devices" in lines[0], result["stderr"]
  assert not (result["workdir"] / "checkpoints").exists()
