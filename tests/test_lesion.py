"""Lesion study (Veit et al. 2016): the block gate, which blocks can be deleted, the lesion patterns, and
the analysis of trained work directories (records, skipping, figures, command line)."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _analysis_workdirs import root, run_cli  # noqa: F401 (root is a fixture)
from resnet_jax.errors import ConfigError
from resnet_jax.analysis import lesion
from resnet_jax.report import analyze, lesion_plots
from resnet_jax.models import build_model
from resnet_jax.models.batchnorm import BatchNorm
from resnet_jax.models.blocks import BasicBlock, PreActBasicBlock, UnitSettings

IMAGE_SHAPE = (8, 8, 1)


def settings(residual: bool = True, shortcut: str = "A") -> UnitSettings:
  return UnitSettings(residual=residual, shortcut=shortcut, norm=functools.partial(BatchNorm), dtype=jnp.float32)


def features(shape, seed: int = 0, positive: bool = False) -> jax.Array:
  x = jax.random.normal(jax.random.key(seed), (3, *shape), jnp.float32)
  return jnp.abs(x) if positive else x


def network(variant: str = "residual", depth: int = 14, shortcut: str = "A"):
  return build_model({"family": "cifar", "depth": depth, "variant": variant, "shortcut": shortcut},
                     num_classes=10, in_channels=1, seed=0, platform="cpu")


# ----------------------------------------------------------------------------- one block lesioned

@pytest.mark.parametrize("shortcut, stride, width", [("A", 1, 16), ("A", 2, 32), ("B", 2, 32)])
def test_deleted_post_activation_block_is_relu_of_its_shortcut(shortcut, stride, width):
  block = BasicBlock(16, width, stride, settings(shortcut=shortcut), rngs=nnx.Rngs(0))
  x = features((8, 8, 16), positive=True)
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(1)), block(x, train=False))
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(0)),
                                nnx.relu(block.shortcut(x, train=False)))


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_deleted_pre_activation_block_is_its_shortcut(shortcut):
  block = PreActBasicBlock(16, 32, 2, settings(shortcut=shortcut), rngs=nnx.Rngs(0))
  x = features((8, 8, 16))  # raw conv outputs: negatives included
  pre = nnx.relu(block.bn1(x, train=False))
  expected = block.shortcut(pre if block.shortcut.projects else x, train=False)
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(0)), expected)
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(1)), block(x, train=False))


@pytest.mark.parametrize("block_cls, positive", [(BasicBlock, True), (PreActBasicBlock, False)])
def test_deleted_plain_block_passes_its_input_on(block_cls, positive):
  block = block_cls(16, 16, 1, settings(residual=False), rngs=nnx.Rngs(0))
  x = features((8, 8, 16), positive=positive)  # a post-activation block's input is a ReLU output
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(0)), x)
  np.testing.assert_array_equal(lesion.lesioned_block(block, x, jnp.float32(1)), block(x, train=False))


def test_a_shape_changing_plain_block_cannot_be_deleted():
  block = BasicBlock(16, 32, 2, settings(residual=False), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="cannot be deleted: it has no shortcut to keep"):
    lesion.lesioned_block(block, features((8, 8, 16)), jnp.float32(0))


def test_a_traced_gate_vmaps_over_lesion_patterns():
  block = BasicBlock(16, 16, 1, settings(), rngs=nnx.Rngs(0))
  x = features((8, 8, 16), positive=True)
  gated = jax.jit(jax.vmap(lambda keep: lesion.lesioned_block(block, x, keep)))(jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(gated[0], block(x, train=False), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(gated[1], nnx.relu(block.shortcut(x, train=False)), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- the network

def test_layout_residual_blocks_are_all_deletable_plain_downsampling_are_not():
  residual = lesion.block_layout(network("residual", 20), IMAGE_SHAPE)
  plain = lesion.block_layout(network("plain", 20), IMAGE_SHAPE)
  assert [r["name"] for r in residual][:4] == ["stage1.block1", "stage1.block2", "stage1.block3", "stage2.block1"]
  assert [r["downsampling"] for r in residual] == [False] * 3 + [True, False, False] * 2
  assert all(r["deletable"] for r in residual)
  assert [r["deletable"] for r in plain] == [not r["downsampling"] for r in plain]


def test_no_deletion_is_the_model_itself():
  model = network("residual")
  x = features(IMAGE_SHAPE)
  deletable = tuple(r["deletable"] for r in lesion.block_layout(model, IMAGE_SHAPE))
  np.testing.assert_allclose(lesion.lesioned_logits(model, x, jnp.ones(len(deletable)), deletable),
                             model(x, train=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("deleted", [0, 2, 3])  # first block, last of stage 1, option-A downsampling block
def test_deleting_a_residual_block_changes_only_that_block(deleted):
  model = network("residual")
  x = features(IMAGE_SHAPE)
  blocks = [block for stage in model.stages for block in stage]
  keep = jnp.ones(len(blocks)).at[deleted].set(0)
  got = jax.jit(lambda k: lesion.lesioned_logits(model, x, k, (True,) * len(blocks)))(keep)
  h = model.apply_stem(x, train=False)  # by hand: every other block as trained, the deleted one its shortcut
  for i, block in enumerate(blocks):
    h = nnx.relu(block.shortcut(h, train=False)) if i == deleted else block(h, train=False)
  np.testing.assert_allclose(got, model.classify(h, train=False), rtol=1e-5, atol=1e-5)
  assert float(jnp.max(jnp.abs(got - model(x, train=False)))) > 1e-4  # and it did change something


def test_patterns_delete_k_distinct_deletable_blocks_and_repeat_with_the_seed():
  layout = lesion.block_layout(network("plain", 20), IMAGE_SHAPE)
  options = lesion.LesionOptions(draws=4, seed=3)
  patterns, singles, ks = lesion.lesion_patterns(layout, options)
  deletable = np.array([r["deletable"] for r in layout])
  n = int(deletable.sum())
  assert patterns.shape == (1 + n + n * 4, len(layout)) and len(ks) == n * 4
  assert patterns[0].all() and not (patterns[:, ~deletable] == 0).any()
  np.testing.assert_array_equal(1 - patterns[1:1 + n], np.eye(len(layout))[singles])
  np.testing.assert_array_equal((patterns[1 + n:] == 0).sum(1), ks)
  np.testing.assert_array_equal(lesion.lesion_patterns(layout, options)[0], patterns)
  assert not np.array_equal(lesion.lesion_patterns(layout, lesion.LesionOptions(draws=4, seed=4))[0], patterns)


@pytest.mark.parametrize("field, value", [("draws", 0), ("draws", 1.5), ("patterns_per_call", 0)])
def test_bad_options_name_the_option(field, value):
  with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}={value!r} is invalid"):
    lesion.LesionOptions(**{field: value})


# ----------------------------------------------------------------------------- trained work directories

def test_lesion_of_every_seed_reproduces_the_test_error_and_is_kept_on_rerun(root):
  from resnet_jax.train.loop import evaluate_checkpoint
  workdir = str(root / "residual-8")
  paths = analyze.run("lesion", workdir, lesion.LesionOptions(draws=2), all_seeds=True)  # computes, then draws
  assert paths == [os.path.join(workdir, f"seed{s}", "analysis", "lesion.json") for s in (0, 1)]
  for path, evaluated in zip(paths, evaluate_checkpoint(workdir)):
    record = json.loads(open(path).read())
    assert record["seed"] == evaluated["seed"] and record["num_examples"] == evaluated["eval_count"] == 297
    assert record["test_error"] == pytest.approx(evaluated["eval_error"], abs=1e-6)
    assert [b["deletable"] for b in record["blocks"]] == [True] * 3
    assert [r["k"] for r in record["random"]] == [1, 2, 3]
    assert all(len(r["errors"]) == 2 for r in record["random"]) and record["random"][-1]["std"] == 0
    assert os.path.exists(path.replace(".json", ".png"))
  stamps = [os.path.getmtime(p) for p in paths]
  assert lesion.run_lesion(workdir, lesion.LesionOptions(draws=2), all_seeds=True) == paths
  assert [os.path.getmtime(p) for p in paths] == stamps


def test_plain_lesion_reports_the_blocks_it_cannot_delete(root):
  (path,) = lesion.run_lesion(str(root / "plain-8"))
  record = json.loads(open(path).read())
  assert [(b["deletable"], b["test_error"] is None) for b in record["blocks"]] == [(True, False), (False, True),
                                                                                   (False, True)]
  assert len(record["random"]) == 1 and "cannot be deleted" in record["method"]
  assert "stage2.block1, stage3.block1 change the shape and always run" in lesion.summary(path)


def test_study_figure_places_plain_and_residual_side_by_side(root, tmp_path):
  from resnet_jax.report.runs import load_runs
  lesion.run_lesion(str(root / "residual-8"), lesion.LesionOptions(draws=2), all_seeds=True)
  lesion.run_lesion(str(root / "plain-8"))
  study = load_runs(str(root))
  assert lesion_plots.plot_lesions(study, str(tmp_path / "lesion"), ("png", "svg")) == [
      str(tmp_path / "lesion.png"), str(tmp_path / "lesion.svg")]


def test_command_line_analyses_and_refuses_bad_input_in_one_line(root, tmp_path):
  done = run_cli("analyze", "lesion", "--workdir", str(root / "plain-8"))
  assert done.returncode == 0, done.stderr
  assert "plain-8 seed 0, step 8: test error" in done.stdout
  for args, message in ((["--workdir", str(tmp_path)], "has no checkpoint"),
                        (["--workdir", str(root / "plain-8"), "--draws", "0"], "lesion --draws=0 is invalid"),
                        (["--workdir", str(root / "plain-8"), "--formats", "gif"], "--formats 'gif' is invalid")):
    failed = run_cli("analyze", "lesion", *args)
    assert failed.returncode == 2 and message in failed.stderr
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
