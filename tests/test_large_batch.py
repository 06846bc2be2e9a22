"""Large batches: the learning rate follows the batch (linear scaling rule), warm-up in epochs, LARS and
polynomial decay, gradient accumulation equal to one step on the whole batch, the studies' rates kept,
recorded runs continued, and the ImageNet recipes' numbers."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from resnet_jax import cli
from resnet_jax.config import load_config, resolve, validate
from resnet_jax.errors import ConfigError
from resnet_jax.report import plots
from resnet_jax.report.runs import load_runs
from resnet_jax.studies.study import load_study
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train.checkpoint import Checkpointer
from resnet_jax.train.accumulate import microbatch_mean
from resnet_jax.train.loop import initial_state, setup
from resnet_jax.train.optimizer import decay_mask, learning_rate_schedule, make_optimizer
from resnet_jax.train.parallel import make_mesh

from conftest import REPO, records, spec, subprocess_env

pytestmark = pytest.mark.usefixtures("compile_cache")  # one compilation cache for the module
_spec = importlib.util.spec_from_file_location("_multidevice_run", REPO / "tests" / "_multidevice_run.py")
multidevice = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(multidevice)

IMAGENET_TRAIN, DIGITS_TRAIN = 1_281_167, 1500


def resolved(config: str, overrides=(), num_train: int = DIGITS_TRAIN, num_devices: int = 1):
  """The config of `config` with `overrides`, validated and resolved for a training split of `num_train`."""
  loaded = load_config(spec(config), list(overrides))
  validate(loaded, num_devices)
  return resolve(loaded, num_train // loaded.data.batch_size)


def rates(config, steps) -> np.ndarray:
  return np.asarray(learning_rate_schedule(config)(jnp.asarray(steps)))


# ----------------------------------------------------------------------------- the linear scaling rule

@pytest.mark.parametrize("config, overrides, expected", [
    ("configs/digits.py", [], 0.1),
    ("configs/digits.py", ["--config.data.batch_size=64"], 0.05),
    ("configs/digits.py", ["--config.data.batch_size=512", "--config.optimizer.learning_rate=0.2"], 0.8),
    ("configs/digits.py", ["--config.optimizer.base_batch_size=256"], 0.05),
    ("configs/digits.py", ["--config.data.batch_size=512", "--config.optimizer.lr_scaling=none"], 0.1),
    ("configs/fashion_mnist.py:batch=1024", [], 0.8),  # a config argument
    ("configs/fashion_mnist.py:batch=1024,lr_scaling=none", [], 0.1),
    ("configs/cifar10.py", ["--config.data.batch_size=512"], 0.4),
    ("configs/imagenet.py", [], 0.1),  # the paper's 0.1 belongs to 256 on ImageNet
    ("configs/imagenet.py", ["--config.data.batch_size=1024"], 0.4),
])
def test_the_rate_follows_the_batch_and_the_base_rate(config, overrides, expected):
  config = resolved(config, overrides, num_train=10_000)
  assert config.derived.learning_rate == pytest.approx(expected, rel=1e-12)
  assert rates(config, [0])[0] == pytest.approx(expected, rel=1e-6)  # the schedule starts from it (no warm-up)


def test_the_derived_rate_is_shown_and_a_run_in_micro_batches_resumes_exactly(tmp_path, capsys):
  """--dry-run and the run's log show the rate; a run of 2 micro-batches per step, stopped after its
  step-2 checkpoint and resumed, ends with the uninterrupted run's metrics and state, bit for bit."""
  run, resumed, config = tmp_path / "run", tmp_path / "resumed", spec("configs/digits.py:depth=8,steps=4")
  overrides = ["--config.data.batch_size=64", "--config.train.log_every_steps=1",
               "--config.train.checkpoint_every_steps=2", "--config.model.bn_group_size=32",
               "--config.train.microbatch_size=32"]
  argv = lambda workdir: ["train", "--config", config, "--workdir", str(workdir), *overrides]
  assert cli.main([*argv(run), "--dry-run"]) == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed["derived"]["learning_rate"] == 0.05 and printed["optimizer"]["learning_rate"] == 0.1
  assert printed["derived"]["microbatches"] == 2
  assert cli.main(argv(run)) == 0
  assert "learning rate 0.05 = 0.1 x batch 64 / base batch 128 (linear scaling rule)" in capsys.readouterr().out
  assert json.loads((run / "config.json").read_text())["derived"]["learning_rate"] == 0.05
  shutil.copytree(run, resumed)
  shutil.rmtree(resumed / "checkpoints" / "4")
  (resumed / "finished.json").unlink()
  assert cli.main(argv(resumed)) == 0
  assert records(resumed) == records(run) and len(records(run)) == 4
  final = [Checkpointer(str(d)) for d in (run, resumed)]
  try:
    like = setup(load_config(config, overrides)).state
    states = [jax.device_get(c.restore(like, 4)) for c in final]
  finally:
    for checkpointer in final:
      checkpointer.close()
  for x, y in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params)):
    assert np.array_equal(x, y)


# ----------------------------------------------------------------------------- warm-up in epochs

def test_warmup_in_epochs_follows_the_batch():
  fields = ["--config.optimizer.warmup_epochs=2", "--config.optimizer.warmup=linear"]
  assert resolved("configs/digits.py", fields).derived.warmup_steps == 2 * (1500 // 128)
  assert resolved("configs/digits.py", [*fields, "--config.data.batch_size=64"]).derived.warmup_steps == 2 * 23
  goyal = resolved("configs/imagenet_goyal.py", num_train=IMAGENET_TRAIN)
  np.testing.assert_allclose(rates(goyal, [0, 390, 779, 780, 781]), [0.1, 1.65, 3.2 - 3.1 / 780, 3.2, 3.2], rtol=1e-5)
  with pytest.raises(ConfigError, match=r"optimizer\.warmup_steps=10 and optimizer\.warmup_epochs=2"):
    resolved("configs/digits.py", ["--config.optimizer.warmup_steps=10", "--config.optimizer.warmup_epochs=2"])
  with pytest.raises(ConfigError, match=r"optimizer\.warmup_epochs=200\.0 \(2200 steps\) must be below"):
    resolved("configs/digits.py", ["--config.optimizer.warmup_epochs=200"])


# ----------------------------------------------------------------------------- existing studies keep their rates

STUDY_RATES = {"experiments/digits.py": 0.05, "experiments/fashion_mnist_cpu.py": 0.1,
               "experiments/fashion_mnist.py": 0.1, "experiments/cifar10.py": 0.1, "experiments/imagenet.py": 0.1}


@pytest.mark.parametrize("path", sorted(STUDY_RATES))
def test_the_studies_train_at_the_rates_they_had_before_the_rule(path):
  """Before the rule the digits study gave lr 0.05 for batch 64 and the others used 0.1 as given: the
  rule now derives the same rate, and every step of every member keeps its learning rate."""
  study = load_study(str(REPO / path))
  for member in study.members:
    config = load_config(study.spec(member), study.overrides)
    validate(config, 1)
    config = resolve(config, 50_000 // config.data.batch_size)
    before = load_config(study.spec(member), [*study.overrides, "--config.optimizer.lr_scaling=none",
                                              f"--config.optimizer.learning_rate={STUDY_RATES[path]}"])
    before = resolve(before, 50_000 // config.data.batch_size)
    assert config.derived.learning_rate == STUDY_RATES[path], member.name
    steps = np.unique(np.linspace(0, config.derived.num_steps - 1, 500).astype(int))
    assert np.array_equal(rates(config, steps), rates(before, steps)), member.name


def _old_record(config) -> dict:
  """`config` as a run recorded before the rule, LARS and micro-batches wrote it."""
  raw = json.loads(config.to_json())
  for field in ("name", "base_batch_size", "lr_scaling", "decay_power", "end_learning_rate", "warmup_epochs",
                "trust_coefficient", "lars_epsilon"):
    del raw["optimizer"][field]
  del raw["train"]["microbatch_size"], raw["derived"]["learning_rate"], raw["derived"]["microbatches"]
  return raw


def test_a_run_recorded_before_the_rule_reads_as_what_it_computed(tmp_path):
  """A recorded config that predates the rule trained at its learning_rate, which belonged to its own batch:
  the digits study's members (0.05 given for batch 64) continue under the study as it reads now; a run of
  batch 64 at the default 0.1 is another experiment than the same command now (0.05); micro-batches may
  change on resume."""
  study = load_study(str(REPO / "experiments/digits.py"))
  member = lambda *extra: resolve(load_config(study.spec(study.members[0]), [*study.overrides, *extra]),
                                  DIGITS_TRAIN // 64)
  record = lambda raw: (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(raw))
  record(_old_record(member()))
  recorded = workdir_lib.recorded_config(str(tmp_path))
  assert (recorded.optimizer.base_batch_size, recorded.derived.learning_rate, recorded.train.microbatch_size) == \
      (64, 0.05, 0)
  workdir_lib.check_continues(str(tmp_path), member(), resume_step=300)
  with pytest.raises(ConfigError, match=r"optimizer\.learning_rate 0\.05 -> 0\.2"):
    workdir_lib.check_continues(str(tmp_path), member("--config.optimizer.learning_rate=0.2"), resume_step=300)
  default_rate = ("--config.optimizer.learning_rate=0.1", "--config.optimizer.base_batch_size=128")
  record(_old_record(member("--config.optimizer.lr_scaling=none", "--config.optimizer.learning_rate=0.1")))
  with pytest.raises(ConfigError, match=r"derived\.learning_rate 0\.1 -> 0\.05.*base_batch_size 64 -> 128"):
    workdir_lib.check_continues(str(tmp_path), member(*default_rate), resume_step=300)
  record(json.loads(member("--config.model.bn_group_size=32").to_json()))
  workdir_lib.check_continues(str(tmp_path), member("--config.model.bn_group_size=32",
                                                    "--config.train.microbatch_size=32"), resume_step=300)


# ----------------------------------------------------------------------------- gradient accumulation

ACCUMULATE = "configs/digits.py:depth=8"
GROUPS = ["--config.model.bn_group_size=32"]


def _one_step(overrides) -> tuple[dict, dict]:
  """Metrics and every state leaf after one train step of ACCUMULATE with `overrides`."""
  exp = setup(load_config(spec(ACCUMULATE), [*GROUPS, *overrides]))
  state, metrics = exp.train_step(exp.state, next(exp.inputs.train_batches(0)))
  leaves = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(
      jax.device_get((state.params, state.batch_stats, state.opt_state)))}
  return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}, leaves


@pytest.mark.parametrize("seeds", [[], ["--config.train.num_seeds=2", "--config.train.seeds_together=vmap"]],
                         ids=["one-seed", "two-seeds-vmapped"])
def test_micro_batches_equal_one_step_on_the_whole_batch(seeds):
  """4 micro-batches of 32 with BN groups of 32 are one step on the batch of 128 with those groups:
  parameters, BN statistics, momentum and the metrics over the whole batch."""
  whole_metrics, whole = _one_step(seeds)
  micro_metrics, micro = _one_step([*seeds, "--config.train.microbatch_size=32"])
  for key in ("loss", "error", "grad_norm", "learning_rate"):
    np.testing.assert_allclose(micro_metrics[key], whole_metrics[key], rtol=2e-6, err_msg=key)
  assert whole.keys() == micro.keys() and any("batch_stats" not in k for k in whole)
  for name, x in whole.items():
    np.testing.assert_allclose(micro[name], x, rtol=2e-5, atol=2e-7, err_msg=name)


def test_micro_batches_on_four_devices_train_as_the_whole_batch_on_one(compile_cache):
  config = "configs/synthetic.py:depth=8,image_size=8,batch=48,steps=3,dtype=float32"
  task = lambda *extra: dict(kind="train", config=config, overrides=["--config.model.bn_group_size=4", *extra],
                             steps=3)
  proc = subprocess.run([sys.executable, str(REPO / "tests" / "_multidevice_run.py"),
                         json.dumps([task("--config.train.microbatch_size=12")])],
                        env=subprocess_env(compile_cache, 4), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  (four,) = json.loads(proc.stdout.split("RESULT ")[-1])
  (one,) = multidevice.run_tasks([task()])
  assert (four["devices"], one["devices"]) == (4, 1)
  for key in ("loss", "error", "grad_norm"):
    np.testing.assert_allclose([h[key] for h in four["history"]], [h[key] for h in one["history"]], rtol=1e-4,
                               err_msg=key)
  for x, y in zip(four["batch_stats"], one["batch_stats"]):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_micro_batches_loop_on_accelerators_and_are_unrolled_on_cpu():
  """XLA:CPU runs convolutions inside loops 10-25x slower: the program lowered for a CPU has no loop,
  the one for a GPU or TPU keeps one micro-batch in flight."""
  mesh = make_mesh()
  mean_of = lambda x, y: microbatch_mean(lambda a, b: jnp.mean(jnp.exp(a) * b[:, None]), x, y, 4, mesh)
  x, y = jnp.arange(24.0).reshape(8, 3) / 24, jnp.arange(8.0)
  assert float(jax.jit(mean_of)(x, y)) == pytest.approx(float(jnp.mean(jnp.exp(x) * y[:, None])), rel=1e-6)
  lowered = {p: jax.jit(mean_of).trace(x, y).lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda", "tpu")}
  assert "stablehlo.while" not in lowered["cpu"]
  assert "stablehlo.while" in lowered["cuda"] and "stablehlo.while" in lowered["tpu"]


@pytest.mark.parametrize("overrides, named", [
    (["--config.train.microbatch_size=48"], "train.microbatch_size=48"),
    (["--config.train.microbatch_size=32"], "the global batch"),
    (["--config.model.bn_group_size=64", "--config.train.microbatch_size=32"], "groups of 64"),
])
def test_micro_batches_that_would_change_the_result_are_refused(overrides, named):
  with pytest.raises(ConfigError, match=named):
    resolved("configs/digits.py", overrides)  # digits: BN over the whole batch unless bn_group_size


def test_micro_batches_divide_over_the_devices():
  overrides = ["--config.data.batch_size=192", "--config.data.eval_batch_size=96", "--config.model.bn_group_size=16",
               "--config.train.microbatch_size=32"]
  assert resolved("configs/digits.py", overrides, num_devices=4).derived.microbatches == 6
  with pytest.raises(ConfigError, match=r"train\.microbatch_size=32 does not divide over 3 devices"):
    resolved("configs/digits.py", overrides, num_devices=3)


# ----------------------------------------------------------------------------- LARS and polynomial decay

def test_lars_is_optax_lars_with_bn_and_biases_neither_adapted_nor_decayed():
  config = resolved("configs/digits.py:depth=8", ["--config.optimizer.name=lars", "--config.optimizer.learning_rate=2",
                                                  "--config.optimizer.schedule=constant"])
  tx, _ = make_optimizer(config)
  _, state, _ = initial_state(config, tx, num_classes=10, in_channels=1, seed=0, platform="cpu")
  params = state.params
  keys = jax.random.split(jax.random.PRNGKey(1), len(jax.tree.leaves(params)))
  grads = jax.tree.unflatten(jax.tree.structure(params),
                             [jax.random.normal(k, x.shape) for k, x in zip(keys, jax.tree.leaves(params))])
  first_update = lambda tx: jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)
  kernels = decay_mask(params, False)
  updates = first_update(tx)
  expected = first_update(optax.lars(2.0, 1e-4, weight_decay_mask=kernels, trust_coefficient=0.001, eps=0.0,
                                     trust_ratio_mask=kernels, momentum=0.9))
  for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
    np.testing.assert_allclose(u, e, rtol=1e-6)
  # By hand: kernels get -lr x 0.001 ||w|| / ||g + wd w|| x (g + wd w); BN scales and biases -lr x g.
  flat = jax.tree_util.tree_leaves_with_path
  for (path, u), w, g, kernel in zip(flat(updates), jax.tree.leaves(params), jax.tree.leaves(grads),
                                     jax.tree.leaves(kernels)):
    decayed = g + 1e-4 * w if kernel else g
    trust = 0.001 * jnp.linalg.norm(w) / jnp.linalg.norm(decayed) if kernel else 1.0
    np.testing.assert_allclose(u, -2.0 * trust * decayed, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
  assert {bool(k) for k in jax.tree.leaves(kernels)} == {True, False}


def test_polynomial_decay_after_a_linear_warmup():
  config = resolved("configs/digits.py", ["--config.train.num_steps=1000", "--config.optimizer.schedule=polynomial",
                                          "--config.optimizer.learning_rate=10.0", "--config.optimizer.lr_scaling=none",
                                          "--config.optimizer.warmup_steps=100", "--config.optimizer.warmup=linear",
                                          "--config.optimizer.warmup_learning_rate=0.0",
                                          "--config.optimizer.end_learning_rate=1e-4"])
  expected = [0.0, 5.0, 10.0, (10 - 1e-4) * (1 - 450 / 900) ** 2 + 1e-4, 1e-4, 1e-4]
  np.testing.assert_allclose(rates(config, [0, 50, 100, 550, 1000, 1200]), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- the ImageNet recipes

@pytest.mark.parametrize("config, derived, stated", [
    ("configs/imagenet_goyal.py", dict(learning_rate=3.2, warmup_steps=780, num_steps=14_040,
                                       lr_boundaries=(4680, 9360, 12_480)),
     ["batch 8192", "(3.2 at batch 8192)", "780 steps", "23.74 +- 0.09", "23.60 +- 0.12"]),
    ("configs/imagenet_goyal.py:batch=256", dict(learning_rate=0.1, num_steps=450_360), ["batch=256"]),
    ("configs/imagenet_mlperf.py", dict(learning_rate=10.0, warmup_steps=1560, num_steps=13_104, lr_boundaries=()),
     ["batch 4096", "10.0 over", "1,560 warm-up steps of 13,104", "75.9 %", "coefficient 0.001"]),
    ("configs/imagenet_mlperf.py:batch=32768", dict(learning_rate=31.2, warmup_steps=25 * 39), ["31.2 over 25"]),
])
def test_the_imagenet_recipes_resolve_to_the_numbers_their_docstrings_state(config, derived, stated):
  recipe = resolved(config, num_train=IMAGENET_TRAIN, num_devices=8)
  for key, value in derived.items():
    assert recipe.derived[key] == pytest.approx(value), key
  doc = ast.get_docstring(ast.parse((REPO / config.split(":")[0]).read_text()))
  for text in stated:
    assert text in doc, text
  if "goyal" in config:
    assert (recipe.model.bn_group_size, recipe.model.zero_init_residual, recipe.optimizer.nesterov) == (32, True, True)
  else:
    assert (recipe.optimizer.name, recipe.optimizer.schedule, recipe.optimizer.label_smoothing) == \
        ("lars", "polynomial", 0.1)
  assert math.isclose(recipe.derived.learning_rate, float(rates(recipe, recipe.derived.warmup_steps)), rel_tol=1e-6)


# ----------------------------------------------------------------------------- the report

def test_the_report_draws_runs_of_different_batches_against_epochs(tmp_path):
  """At the same epochs batch 1024 takes 1/8 of batch 128's steps: the error curves share an epoch axis."""
  for batch in (128, 1024, 1024):
    workdir = tmp_path / f"b{batch}-seed{len(list(tmp_path.iterdir()))}"
    workdir.mkdir()
    config = resolve(load_config(spec(f"configs/fashion_mnist.py:batch={batch},epochs=2"), []), 60_000 // batch)
    workdir_lib.save_config(str(workdir), config)
    steps = range(10, config.derived.num_steps + 1, 10)
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(dict(step=s, train_error=0.5, eval_error=0.4)) + "\n"
                                                   for s in steps))
  study = load_runs(str(tmp_path))
  assert plots._x_axis(study) == ("epochs", {"b128-seed0": 468, "b1024-seed1": 58, "b1024-seed2": 58})
  assert plots.error_curves(study, str(tmp_path / "errors"), ("png",)) == [str(tmp_path / "errors.png")]
  study.runs = [run for run in study.runs if run.name.startswith("b1024")]
  assert plots._x_axis(study) == ("iterations", {"b1024-seed1": 1, "b1024-seed2": 1})
