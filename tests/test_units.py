"""Small pieces a run's result silently depends on: the learning rate at and around every
boundary, which parameters weight decay touches, He initialisation, and the derived fields of
a config however its fields were set (argument after ':', --config override, both)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax.config import base_config, load_config, resolve, validate
from resnet_jax.errors import ConfigError
from resnet_jax.train.loop import initial_state
from resnet_jax.train.optimizer import learning_rate_schedule, make_optimizer

from conftest import spec

DIGITS_STEPS_PER_EPOCH = 1500 // 128
IMAGENET_TRAIN = 1281167


def resolved(steps_per_epoch: int = 100, **fields):
  """base_config() with `fields` ({'optimizer.warmup_steps': 10, ...}) set, validated and resolved."""
  config = base_config()
  for field, value in fields.items():
    section, name = field.split(".")
    config[section][name] = value
  validate(config, num_devices=1)
  return resolve(config, steps_per_epoch)


def rates(config, steps) -> list[float]:
  schedule = learning_rate_schedule(config)
  return [float(schedule(jnp.asarray(step))) for step in steps]


# ----------------------------------------------------------------------------- learning-rate schedule

def test_piecewise_decays_take_effect_at_their_boundary_step():
  # Step k is the (k+1)-th update: the paper's "divide by 10 at 32k iterations" gives updates 0..31999 lr 0.1.
  config = resolved(**{"train.num_steps": 64_000})
  assert config.derived.lr_boundaries == (32_000, 48_000)
  np.testing.assert_allclose(rates(config, [0, 31_999, 32_000, 32_001, 47_999, 48_000, 48_001, 63_999]),
                             [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001], rtol=1e-6)


def test_the_boundaries_follow_the_run_length():
  config = resolved(**{"train.num_steps": 1000, "optimizer.decay_fractions": (0.3, 0.6, 0.9),
                       "optimizer.decay_factor": 0.5})
  assert config.derived.lr_boundaries == (300, 600, 900)
  np.testing.assert_allclose(rates(config, [299, 300, 599, 600, 899, 900]),
                             [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125], rtol=1e-6)


def test_constant_warmup_holds_its_rate_then_the_schedule_continues():
  config = resolved(**{"train.num_steps": 1000, "optimizer.warmup_steps": 100})
  assert config.derived.warmup_steps == 100
  np.testing.assert_allclose(rates(config, [0, 50, 99, 100, 101, 499, 500]),
                             [0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.01], rtol=1e-6)


def test_linear_warmup_ramps_to_the_rate():
  config = resolved(**{"train.num_steps": 1000, "optimizer.warmup_steps": 100, "optimizer.warmup": "linear",
                       "optimizer.warmup_learning_rate": 0.0})
  np.testing.assert_allclose(rates(config, [0, 25, 50, 99, 100, 101]), [0.0, 0.025, 0.05, 0.099, 0.1, 0.1],
                             rtol=1e-5, atol=1e-9)


def test_warmup_applies_only_from_warmup_min_depth():
  fields = {"train.num_steps": 1000, "optimizer.warmup_steps": 100, "optimizer.warmup_min_depth": 110}
  assert resolved(**fields, **{"model.depth": 56}).derived.warmup_steps == 0
  assert rates(resolved(**fields, **{"model.depth": 56}), [0]) == pytest.approx([0.1])
  assert resolved(**fields, **{"model.depth": 110}).derived.warmup_steps == 100


def test_cosine_starts_at_the_rate_and_ends_near_zero():
  config = resolved(**{"train.num_steps": 1000, "optimizer.schedule": "cosine"})
  assert config.derived.lr_boundaries == ()
  start, middle, last, end = rates(config, [0, 500, 999, 1000])
  assert start == pytest.approx(0.1) and middle == pytest.approx(0.05)
  assert 0 < last < 1e-6 and end == pytest.approx(0.0, abs=1e-9)
  assert rates(resolved(**{"optimizer.schedule": "constant"}), [0, 63_999]) == pytest.approx([0.1, 0.1])


# ----------------------------------------------------------------------------- weight decay, initialisation

def _model(**fields):
  """A real model's (resolved config, optimiser, TrainState) at initialisation: a CIFAR ResNet-20 with
  projection shortcuts unless `fields` ({'model.depth': 18, ...}) say otherwise."""
  config = resolved(**{"model.shortcut": "B", **fields})
  tx, _ = make_optimizer(config)
  _, state, _ = initial_state(config, tx, num_classes=10, in_channels=3, seed=0, platform="cpu")
  return config, tx, state


def _named(tree) -> dict[str, jax.Array]:
  return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("decay_norm_and_bias", [False, True])
def test_weight_decay_reaches_kernels_only_unless_asked(decay_norm_and_bias):
  """With zero gradients, the optimiser's update is the weight decay alone: non-zero exactly where it applies."""
  config, tx, state = _model(**{"optimizer.decay_norm_and_bias": decay_norm_and_bias})
  params = jax.tree.map(jnp.ones_like, state.params)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  decayed = {name: bool(jnp.any(update != 0)) for name, update in _named(updates).items()}
  kernels = {name for name, leaf in _named(params).items() if leaf.ndim >= 2}  # conv (4-D) and dense (2-D)
  assert {n for n in kernels if "shortcut" in n} and {n for n in kernels if "head" in n}  # projections, head
  assert any("bias" in n for n in decayed) and any("scale" in n for n in decayed)  # BN and dense leaves exist
  expected = set(decayed) if decay_norm_and_bias else kernels
  assert {name for name, on in decayed.items() if on} == expected
  step = -config.optimizer.learning_rate * config.optimizer.weight_decay
  for name in expected:
    np.testing.assert_allclose(np.asarray(_named(updates)[name]), step, rtol=1e-6)


@pytest.mark.parametrize("fields", [
    {},  # 3x3 convs, 1x1 projections
    {"model.depth": 29, "model.block": "bottleneck"},  # 1x1 - 3x3 - 1x1 units
])  # ImageNet nets build their 7x7 stem with the same conv (a new net costs ~10 s of compiling here)
def test_convolutions_have_he_initialisation(fields):
  """Each conv kernel [kh, kw, in, out]: mean 0, std sqrt(2 / (kh kw in)), within 4 standard errors."""
  _, _, state = _model(**fields)
  kernels = {name: np.asarray(leaf, np.float64) for name, leaf in _named(state.params).items() if leaf.ndim == 4}
  assert len(kernels) > fields.get("model.depth", 20) - 2  # every conv, projections included
  for name, kernel in kernels.items():
    kh, kw, fan_in, _ = kernel.shape
    expected, n = math.sqrt(2 / (kh * kw * fan_in)), kernel.size
    assert abs(kernel.std() / expected - 1) < 4 / math.sqrt(2 * n), (name, kernel.std(), expected)
    assert abs(kernel.mean()) < 4 * expected / math.sqrt(n), (name, kernel.mean())


def test_the_classifier_keeps_flax_default_initialisation():
  """The dense head is not He-initialised: flax's default LeCun normal (std sqrt(1 / fan_in)), zero bias."""
  _, _, state = _model()
  head = {name: np.asarray(leaf, np.float64) for name, leaf in _named(state.params).items() if "head" in name}
  kernel = next(v for k, v in head.items() if "kernel" in k)
  bias = next(v for k, v in head.items() if "bias" in k)
  fan_in = kernel.shape[0]
  assert abs(kernel.std() * math.sqrt(fan_in) - 1) < 4 / math.sqrt(2 * kernel.size)
  np.testing.assert_array_equal(bias, 0.0)


# ----------------------------------------------------------------------------- derived fields, however set

def derived(config_spec: str, overrides=(), steps_per_epoch: int = DIGITS_STEPS_PER_EPOCH):
  config = load_config(spec(config_spec), list(overrides))
  validate(config, num_devices=1)
  return resolve(config, steps_per_epoch).derived


@pytest.mark.parametrize("config_spec, overrides", [
    ("configs/digits.py:steps=600", []),
    ("configs/digits.py", ["--config.train.num_steps=600"]),
    ("configs/digits.py:steps=1200", ["--config.train.num_steps=600"]),  # the override wins
])
def test_decay_boundaries_follow_the_run_length_however_set(config_spec, overrides):
  assert derived(config_spec, overrides).lr_boundaries == (300, 450)


@pytest.mark.parametrize("config_spec, overrides, warmup", [
    ("configs/cifar10.py:depth=110", [], 400),
    ("configs/cifar10.py:depth=56", [], 0),
    ("configs/cifar10.py:depth=20", ["--config.model.depth=110"], 400),
    ("configs/cifar10.py:depth=110", ["--config.model.depth=56"], 0),
    ("configs/cifar10.py:depth=20", ["--config.optimizer.warmup_min_depth=0"], 400),
])
def test_cifar_warmup_follows_the_depth_however_set(config_spec, overrides, warmup):
  assert derived(config_spec, overrides, steps_per_epoch=50_000 // 128).warmup_steps == warmup


def test_imagenet_epochs_become_steps_of_the_batch_size():
  steps_per_epoch = IMAGENET_TRAIN // 512  # ImageNet is not on this machine: its size, by hand
  d = derived("configs/imagenet.py", ["--config.data.batch_size=512"], steps_per_epoch)
  assert d.steps_per_epoch == steps_per_epoch
  assert d.num_steps == 90 * steps_per_epoch
  assert d.eval_every_steps == 5 * steps_per_epoch
  assert d.lr_boundaries == (30 * steps_per_epoch, 60 * steps_per_epoch)
  d = derived("configs/imagenet.py:epochs=120", [], IMAGENET_TRAIN // 256)
  assert d.lr_boundaries == tuple(e * (IMAGENET_TRAIN // 256) for e in (30, 60, 90))
  d = derived("configs/imagenet.py", ["--config.train.eval_every_epochs=0.5"], 1001)
  assert d.eval_every_steps == 500  # round(0.5 x 1001)


# ----------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("fields, named", [
    ({"optimizer.learning_rate": float("nan")}, "optimizer.learning_rate=nan"),
    ({"optimizer.warmup_learning_rate": float("inf")}, "optimizer.warmup_learning_rate=inf"),
    ({"optimizer.decay_fractions": (0.5, 1.0)}, "optimizer.decay_fractions=(0.5, 1.0)"),
    ({"optimizer.decay_fractions": (0.0, 0.5)}, "optimizer.decay_fractions=(0.0, 0.5)"),
    ({"optimizer.decay_fractions": (0.75, 0.5)}, "optimizer.decay_fractions=(0.75, 0.5)"),
    ({"optimizer.decay_fractions": (0.5, 0.5)}, "optimizer.decay_fractions=(0.5, 0.5)"),
    ({"train.num_epochs": 10.0}, "train.num_steps=64000 and train.num_epochs=10.0 are both set"),
    ({"train.num_steps": 0}, "train.num_steps and train.num_epochs are both 0"),
    ({"train.eval_every_epochs": 1.0}, "train.eval_every_steps=2000 and train.eval_every_epochs=1.0"),
])
def test_validate_rejects_bad_values_naming_the_field(fields, named):
  with pytest.raises(ConfigError) as error:
    resolved(**fields)
  assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("fields, named", [
    ({"train.num_steps": 1000, "optimizer.warmup_steps": 1000}, "optimizer.warmup_steps=1000 must be below"),
    ({"train.num_steps": 3, "optimizer.decay_fractions": (0.1, 0.5)}, "at steps (0, 2) of train.num_steps=3"),
    ({"train.num_steps": 3, "optimizer.decay_fractions": (0.5, 0.9)}, "at steps (2, 3) of train.num_steps=3"),
    ({"train.num_steps": 4, "optimizer.decay_fractions": (0.5, 0.6)}, "at steps (2, 2) of train.num_steps=4"),
    ({"train.num_steps": 0, "train.num_epochs": 0.01}, "(1 steps of 100 per epoch)"),
])
def test_resolve_rejects_a_schedule_that_does_not_fit_the_run(fields, named):
  with pytest.raises(ConfigError) as error:
    resolved(**fields)
  assert named in str(error.value) and "\n" not in str(error.value)
  assert "optimizer." in str(error.value)  # names the field to change


def test_a_nan_learning_rate_override_is_refused():
  config = load_config(spec("configs/digits.py"), ["--config.optimizer.learning_rate=nan"])
  with pytest.raises(ConfigError, match=r"optimizer\.learning_rate=nan is invalid"):
    validate(config, num_devices=1)
