"""Tests for resnet_jax.models: sizes, costs, config validation, shortcuts, BN, dtypes, probes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from resnet_jax import platforms
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_macs, count_params, layer_responses, stage_table
from resnet_jax.models.batchnorm import BatchNorm
from resnet_jax.models.blocks import BasicBlock, PreActBasicBlock, UnitSettings
from resnet_jax.models.layers import Layers, response_std
from resnet_jax.models.shortcuts import Shortcut

CIFAR_SHAPE = (32, 32, 3)
IMAGENET_SHAPE = (224, 224, 3)


# ----------------------------------------------------------------------------- helpers

def cifar(depth: int = 20, **overrides) -> dict:
  return {"family": "cifar", "depth": depth, "variant": "residual", "shortcut": "A", **overrides}


def imagenet(depth: int = 18, **overrides) -> dict:
  return {"family": "imagenet", "depth": depth, "variant": "residual", "shortcut": "B", **overrides}


def build(config: dict, *, num_classes: int = 10, seed: int = 0, layers: Layers = Layers()):
  """The network with JAX's own layers (`layers`: a platform layer's instead)."""
  return build_model(config, num_classes=num_classes, in_channels=3, seed=seed, platform="cpu", layers=layers)


def build_abstract(config: dict, *, num_classes: int = 10):
  """The model with ShapeDtypeStruct leaves: no parameter memory, no initialiser compilation.

  Tracing cost grows quadratically with the number of layers under nnx.eval_shape, so very
  deep CIFAR nets (ResNet-1202) are built eagerly instead.
  """
  return nnx.eval_shape(lambda: build(config, num_classes=num_classes))


def images(batch: int = 2, shape=CIFAR_SHAPE, seed: int = 0) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (batch, *shape), jnp.float32)


def norm_factory(**kwargs):
  return functools.partial(BatchNorm, **kwargs)


CONV = functools.partial(Layers().conv, dtype=jnp.float32)  # a Shortcut's projection


def relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def manual_responses(model, x) -> list[float]:
  """Fig. 7 responses of a post-activation basic-block net, computed by walking the layers."""
  y = model.stem_norm(model.stem_conv(x), train=False)
  stds = [float(response_std(y))]
  x = nnx.relu(y)
  for stage in model.stages:
    for block in stage:
      y1 = block.bn1(block.conv1(x), train=False)
      y2 = block.bn2(block.conv2(nnx.relu(y1)), train=False)
      stds += [float(response_std(y1)), float(response_std(y2))]
      x = nnx.relu(y2 + block.shortcut(x, train=False))
  return stds


# ----------------------------------------------------------------------------- 1. parameters

CIFAR_OPTION_A_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
IMAGENET_OPTION_B_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                            152: 60_192_808}


@pytest.mark.parametrize("depth, expected", sorted(CIFAR_OPTION_A_PARAMS.items()))
def test_cifar_option_a_param_counts(depth, expected):
  assert count_params(build_abstract(cifar(depth))) == expected


def test_cifar_resnet1202_param_count():
  # Built eagerly (the platform layer's initialisers: one draw program): ~3 s, against ~50 s for
  # nnx.eval_shape (quadratic tracing cost).
  assert count_params(build(cifar(1202), layers=platforms.LAYERS)) == 19_421_274


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_plain_twin_and_option_b_param_counts(depth):
  option_a = CIFAR_OPTION_A_PARAMS[depth]
  assert count_params(build_abstract(cifar(depth, variant="plain"))) == option_a
  # Two projections (16->32 and 32->64, 1x1 conv + BN): 512 + 64 + 2048 + 128.
  assert count_params(build_abstract(cifar(depth, shortcut="B"))) == option_a + 2_752


def test_cifar_option_c_projects_every_block():
  # Stage 1: 3 x (16*16 + 32); stage 2: (16*32 + 64) + 2 x (32*32 + 64);
  # stage 3: (32*64 + 128) + 2 x (64*64 + 128).
  assert count_params(build_abstract(cifar(20, shortcut="C"))) == 269_722 + 14_240


@pytest.mark.parametrize("depth, expected", sorted(IMAGENET_OPTION_B_PARAMS.items()))
def test_imagenet_option_b_param_counts(depth, expected):
  assert count_params(build_abstract(imagenet(depth), num_classes=1000)) == expected


@pytest.mark.parametrize("depth", [50, 101])
def test_bottleneck_versions_have_identical_param_counts(depth):
  v1 = count_params(build_abstract(imagenet(depth, bottleneck_version="v1"), num_classes=1000))
  v15 = count_params(build_abstract(imagenet(depth, bottleneck_version="v1.5"), num_classes=1000))
  assert v1 == v15 == IMAGENET_OPTION_B_PARAMS[depth]


def test_param_count_excludes_batch_stats():
  model = build_abstract(cifar(20))
  stats = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
  assert stats > 0
  total = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model)))
  assert count_params(model) == total - stats == 269_722


def test_stage_table_cifar20():
  model = build(cifar(20))  # stage_table traces the concrete model
  rows = stage_table(model, CIFAR_SHAPE)
  assert [r["name"] for r in rows] == ["stem", "stage1", "stage2", "stage3", "head"]
  assert [r["blocks"] for r in rows] == [0, 3, 3, 3, 0]
  assert [tuple(r["output_shape"]) for r in rows] == [
      (32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64), (10,)]
  assert rows[0]["params"] == 3 * 3 * 3 * 16 + 2 * 16
  assert rows[-1]["params"] == 64 * 10 + 10
  assert sum(r["params"] for r in rows) == count_params(model)


# ----------------------------------------------------------------------------- 2. multiply-adds

@pytest.mark.parametrize("config, num_classes, shape, published, rel_tol", [
    pytest.param(cifar(20), 10, CIFAR_SHAPE, 40.8e6, 0.01, id="cifar-20"),
    pytest.param(cifar(56), 10, CIFAR_SHAPE, 125.8e6, 0.01, id="cifar-56"),
    pytest.param(imagenet(18), 1000, IMAGENET_SHAPE, 1.8e9, 0.02, id="resnet18"),
    pytest.param(imagenet(50, bottleneck_version="v1"), 1000, IMAGENET_SHAPE, 3.86e9, 0.02,
                 id="resnet50-v1"),
    pytest.param(imagenet(50, bottleneck_version="v1.5"), 1000, IMAGENET_SHAPE, 4.09e9, 0.02,
                 id="resnet50-v1.5"),
])
def test_macs_match_published(config, num_classes, shape, published, rel_tol):
  macs = count_macs(build_abstract(config, num_classes=num_classes), shape)
  assert macs == pytest.approx(published, rel=rel_tol)


def test_macs_v15_exceeds_v1_and_shortcuts_cost():
  v1 = count_macs(build_abstract(imagenet(50, bottleneck_version="v1"), num_classes=1000), IMAGENET_SHAPE)
  v15 = count_macs(build_abstract(imagenet(50, bottleneck_version="v1.5"), num_classes=1000), IMAGENET_SHAPE)
  assert v15 > v1
  # Option A shortcuts and the plain twin add no multiply-adds; option B's projections do.
  a = count_macs(build_abstract(cifar(20)), CIFAR_SHAPE)
  assert count_macs(build_abstract(cifar(20, variant="plain")), CIFAR_SHAPE) == a
  # Projections: 16x16 positions x 16->32 and 8x8 positions x 32->64.
  assert count_macs(build_abstract(cifar(20, shortcut="B")), CIFAR_SHAPE) == a + 16 * 16 * 16 * 32 + 8 * 8 * 32 * 64


# ----------------------------------------------------------------------------- 3. arguments, in the modules' own terms
# (a config's fields are checked, with their names, by config.validate: tests/test_config.py)

@pytest.mark.parametrize("config, patterns", [
    pytest.param(cifar(21), ["CIFAR basic blocks need depth 6n+2", "20, 32", "got 21"], id="cifar-depth-21"),
    pytest.param(cifar(50, block="bottleneck"), ["CIFAR bottleneck blocks need depth 9n+2", "29"],
                 id="cifar-bottleneck-50"),
    pytest.param(imagenet(20), ["ImageNet depth must be one of [18, 34, 50, 101, 152, 200], got 20"],
                 id="imagenet-depth-20"),
    pytest.param(cifar(8, variant="highway"), ["variant must be one of", "'highway'"], id="variant"),
    pytest.param(cifar(8, shortcut="D"), ["shortcut option must be one of ('A', 'B', 'C'), got 'D'"], id="shortcut"),
    pytest.param(imagenet(50, bottleneck_version="v2"), ["bottleneck version must be one of", "'v2'"],
                 id="bottleneck-version"),
    pytest.param(cifar(8, dtype="float16"), ["dtype must be one of", "'float16'"], id="dtype"),
    pytest.param(cifar(8, variant="plain", zero_init_residual=True), ["zero_init_residual", "plain"],
                 id="zero-init-plain"),
    pytest.param(cifar(8, family="mnist"), ["family must be one of ('cifar', 'imagenet')"], id="family"),
    pytest.param(imagenet(18, block="bottleneck"), ["block 'bottleneck' does not match ImageNet depth 18"],
                 id="imagenet-block"),
    pytest.param(cifar(8, bn_group_size=0), ["group_size must be a positive integer"], id="bn-group-size"),
    pytest.param(cifar(8, bn_momentum=1.0), ["momentum must be in [0, 1), got 1.0"], id="bn-momentum"),
    pytest.param(cifar(8, width_multiplier=0.0), ["width_multiplier must be > 0"], id="width"),
])
def test_a_bad_argument_is_refused_by_the_module_it_reaches(config, patterns):
  with pytest.raises(ValueError) as info:
    build(config)
  for pattern in patterns:
    assert pattern in str(info.value)
  assert "model." not in str(info.value)  # the module speaks of its own arguments, not of config fields


# ----------------------------------------------------------------------------- 4. shortcuts

def test_plain_and_residual_differ_with_identical_weights():
  residual = build(cifar(20), seed=0)
  plain = build(cifar(20, variant="plain"), seed=1)
  params = nnx.state(residual, nnx.Param)
  assert jax.tree.structure(nnx.state(plain, nnx.Param)) == jax.tree.structure(params)
  nnx.update(plain, params)
  for a, b in zip(jax.tree.leaves(nnx.state(plain, nnx.Param)), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  x = images(4)
  y_plain, y_residual = plain(x, train=False), residual(x, train=False)
  assert np.all(np.isfinite(y_plain)) and np.all(np.isfinite(y_residual))
  assert float(jnp.max(jnp.abs(y_plain - y_residual))) > 1e-3
  # Sanity: the copy is exact, so the same variant gives the same output.
  twin = build(cifar(20), seed=1)
  nnx.update(twin, params)
  np.testing.assert_allclose(twin(x, train=False), y_residual, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("residual", [True, False])
def test_zero_init_basic_block_is_identity_or_zero(residual):
  settings = UnitSettings(residual=residual, shortcut="A", norm=norm_factory(), dtype=jnp.float32,
                          zero_init_residual=True)
  block = BasicBlock(16, 16, 1, settings, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(block.bn2.scale[...], 0.0)
  x = jnp.abs(images(2, (8, 8, 16)))
  y = block(x, train=False)
  np.testing.assert_array_equal(y, x if residual else jnp.zeros_like(x))


def test_zero_init_preact_block_is_identity_for_any_input():
  settings = UnitSettings(residual=True, shortcut="A", norm=norm_factory(), dtype=jnp.float32,
                          zero_init_residual=True)
  block = PreActBasicBlock(16, 16, 1, settings, rngs=nnx.Rngs(0))
  x = images(2, (8, 8, 16))  # includes negatives: no ReLU after the addition
  np.testing.assert_array_equal(block(x, train=False), x)


def test_option_a_downsampling_shortcut_subsamples_and_zero_pads():
  shortcut = Shortcut(16, 32, 2, "A", norm=norm_factory(), conv=CONV, rngs=nnx.Rngs(0))
  assert not shortcut.projects
  assert count_params(shortcut) == 0
  x = images(2, (8, 8, 16))
  y = shortcut(x, train=True)
  assert y.shape == (2, 4, 4, 32)
  np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(y[..., 16:], 0.0)


@pytest.mark.parametrize("option, in_features, out_features, stride, projects", [
    ("A", 16, 16, 1, False), ("A", 16, 32, 2, False),
    ("B", 16, 16, 1, False), ("B", 16, 32, 2, True), ("B", 16, 16, 2, True), ("B", 16, 64, 1, True),
    ("C", 16, 16, 1, True), ("C", 16, 32, 2, True),
])
def test_shortcut_projects_only_where_option_says(option, in_features, out_features, stride, projects):
  shortcut = Shortcut(in_features, out_features, stride, option, norm=norm_factory(), conv=CONV,
                      rngs=nnx.Rngs(0))
  assert shortcut.projects is projects
  expected_params = in_features * out_features + 2 * out_features if projects else 0
  assert count_params(shortcut) == expected_params
  x = images(2, (8, 8, in_features))
  y = shortcut(x, train=False)
  assert y.shape == (2, 8 // stride, 8 // stride, out_features)
  if not projects and in_features == out_features and stride == 1:
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("option, expected", [("A", 0), ("B", 2), ("C", 9)])
def test_network_projection_count(option, expected):
  model = build_abstract(cifar(20, shortcut=option))
  assert sum(block.shortcut.projects for stage in model.stages for block in stage) == expected


# ----------------------------------------------------------------------------- 5. BatchNorm

def test_batchnorm_train_normalises_and_updates_running_stats():
  bn = BatchNorm(5, momentum=0.9, epsilon=1e-5)
  x = 3.0 + 2.0 * images(8, (4, 4, 5))
  y = bn(x, train=True)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
  batch_mean = np.asarray(x).mean(axis=(0, 1, 2))
  batch_var = np.asarray(x).var(axis=(0, 1, 2))  # biased
  np.testing.assert_allclose(bn.mean[...], 0.9 * 0.0 + 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bn.var[...], 0.9 * 1.0 + 0.1 * batch_var, rtol=1e-5)
  # A second step moves the averages further by the same rule.
  bn(x, train=True)
  np.testing.assert_allclose(bn.mean[...], (0.9 * 0.1 + 0.1) * batch_mean, rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_uses_running_stats_without_updating():
  bn = BatchNorm(3, epsilon=1e-5)
  mean, var = jnp.array([1.0, -2.0, 0.5]), jnp.array([4.0, 0.25, 1.0])
  bn.mean[...], bn.var[...] = mean, var
  bn.scale[...], bn.bias[...] = jnp.array([2.0, 1.0, -1.0]), jnp.array([0.0, 3.0, 1.0])
  x = images(4, (2, 2, 3))
  y = bn(x, train=False)
  expected = (x - mean) / jnp.sqrt(var + 1e-5) * bn.scale[...] + bn.bias[...]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(bn.mean[...], mean)
  np.testing.assert_array_equal(bn.var[...], var)


def test_model_train_and_eval_outputs_differ():
  model = build(cifar(8))
  x = 1.0 + images(4)
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
  y_train = model(x, train=True)
  after_train = nnx.state(model, nnx.BatchStat)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after_train)))
  frozen = jax.tree.map(jnp.copy, after_train)
  y_eval = model(x, train=False)
  assert float(jnp.max(jnp.abs(y_train - y_eval))) > 1e-3
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(nnx.state(model, nnx.BatchStat))):
    np.testing.assert_array_equal(a, b)


def test_grouped_batchnorm_equals_separate_halves():
  x = 2.0 + images(8, (3, 3, 4))
  grouped = BatchNorm(4, group_size=4)
  first, second = BatchNorm(4), BatchNorm(4)
  y = grouped(x, train=True)
  expected = jnp.concatenate([first(x[:4], train=True), second(x[4:], train=True)])
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  assert float(jnp.max(jnp.abs(y - BatchNorm(4)(x, train=True)))) > 1e-3  # groups matter
  np.testing.assert_allclose(grouped.mean[...], (first.mean[...] + second.mean[...]) / 2, rtol=1e-5)
  np.testing.assert_allclose(grouped.var[...], (first.var[...] + second.var[...]) / 2, rtol=1e-5)


def test_grouped_batchnorm_model_equals_model_on_each_half():
  x = images(8)
  grouped = build(cifar(8, bn_group_size=4), seed=3)
  whole = build(cifar(8), seed=3)
  y = grouped(x, train=True)
  expected = jnp.concatenate([whole(x[:4], train=True), whole(x[4:], train=True)])
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_group_size_must_divide_batch():
  with pytest.raises(ValueError, match="group_size 3 must divide the batch of 8"):
    BatchNorm(4, group_size=3)(images(8, (2, 2, 4)), train=True)
  model = build(cifar(8, bn_group_size=3))
  with pytest.raises(ValueError, match="group_size 3 must divide the batch of 4"):
    model(images(4), train=True)
  assert model(images(4), train=False).shape == (4, 10)  # eval mode does not group


# ----------------------------------------------------------------------------- 6. dtypes

def test_bfloat16_matches_float32_and_keeps_float32_state():
  f32 = build(cifar(20, dtype="float32"), seed=7)
  bf16 = build(cifar(20, dtype="bfloat16"), seed=7)
  for a, b in zip(jax.tree.leaves(nnx.state(f32, nnx.Param)), jax.tree.leaves(nnx.state(bf16, nnx.Param))):
    np.testing.assert_array_equal(a, b)
  x = images(8)
  assert bf16.stem_conv(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16  # computes in bf16
  y32, y16 = f32(x, train=True), bf16(x, train=True)
  assert y32.dtype == y16.dtype == jnp.float32
  error = relative_error(y16, y32)
  assert 0.0 < error < 5e-2
  for state in (nnx.state(bf16, nnx.Param), nnx.state(bf16, nnx.BatchStat)):
    assert {leaf.dtype for leaf in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
  assert relative_error(bf16(x, train=False), f32(x, train=False)) < 5e-2


# ----------------------------------------------------------------------------- 7. layer responses

def test_layer_responses_cifar20():
  model = build(cifar(20))
  x = images(4)
  responses = layer_responses(model, x)
  assert responses.shape == (19,)  # stem + 9 blocks x 2
  assert np.all(np.isfinite(responses)) and np.all(responses > 0)
  np.testing.assert_allclose(responses, manual_responses(model, x), rtol=1e-4)
  # Probing is switched off again: a normal forward leaves no Intermediate state behind.
  assert not any(getattr(m, "record_responses", False) for _, m in nnx.iter_graph(model)
                 if isinstance(m, nnx.Module))
  model(x, train=False)
  model(x, train=True)
  assert jax.tree.leaves(nnx.state(model, nnx.Intermediate)) == []


def test_layer_responses_plain_and_preact_counts():
  assert layer_responses(build(cifar(20, variant="plain")), images(2)).shape == (19,)
  # A pre-activation CIFAR net has no stem BN, so only the 18 3x3 block layers are probed.
  assert layer_responses(build(cifar(20, variant="preact")), images(2)).shape == (18,)


# ----------------------------------------------------------------------------- 8. variants and widths

def test_preact_cifar20_builds_and_runs():
  model = build(cifar(20, variant="preact"))
  assert model.stem_norm is None and model.final_norm is not None
  # No stem BN (-32), a final BN (+128), first-unit BNs see 16/32 not 32/64 channels (-96).
  assert count_params(model) == 269_722
  x = images(4)
  for train in (True, False):
    y = model(x, train=train)
    assert y.shape == (4, 10) and y.dtype == jnp.float32
    assert np.all(np.isfinite(y))


def test_preact_bottleneck_cifar164():
  model = build_abstract(cifar(164, variant="preact", block="bottleneck", shortcut="B"))
  assert [len(stage) for stage in model.stages] == [18, 18, 18]
  assert 1.6e6 < count_params(model) < 1.8e6
  assert model.num_features == 256
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state,
                       jax.ShapeDtypeStruct((2, *CIFAR_SHAPE), jnp.float32))
  assert out.shape == (2, 10) and out.dtype == jnp.float32


def test_width_multiplier_shrinks_imagenet_model():
  full = count_params(build_abstract(imagenet(18), num_classes=1000))
  half_model = build_abstract(imagenet(18, width_multiplier=0.5), num_classes=1000)
  half = count_params(half_model)
  assert half_model.num_features == 256
  # Convolutions shrink ~4x, the classifier 2x.
  assert 0.2 * full < half < 0.35 * full


def test_imagenet_small_input_forward():
  model = build(imagenet(18, width_multiplier=0.25), num_classes=7)
  y = model(images(2, (64, 64, 3)), train=True)
  assert y.shape == (2, 7) and np.all(np.isfinite(y))
  rows = stage_table(model, (64, 64, 3))
  assert [tuple(r["output_shape"]) for r in rows] == [
      (16, 16, 16), (16, 16, 16), (8, 8, 32), (4, 4, 64), (2, 2, 128), (7,)]
