"""The platform layer (resnet_jax/platforms): XLA:CPU's rewrites are exact and appear only in what is lowered
for a CPU; the network's analyses are the same whatever the layers; the CPU program and the generic program
train the same models."""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import spec
from resnet_jax import cli, platforms
from resnet_jax.analysis import lesion
from resnet_jax.config import load_config
from resnet_jax.models import build_model
from resnet_jax.models.analysis import count_macs, count_params, layer_responses, stage_table
from resnet_jax.models.layers import Layers
from resnet_jax.platforms import xla_cpu
from resnet_jax.train import loop

ACCELERATORS = ("cuda", "tpu")


def ops(fn, *args, platform: str) -> collections.Counter:
  """StableHLO operations of `fn` lowered for `platform`, by name."""
  return collections.Counter(re.findall(r"stablehlo\.(\w+)", jax.jit(fn).trace(*args).lower(
      lowering_platforms=(platform,)).as_text()))


def relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


# ----------------------------------------------------------------------------- the rewrites, one by one

def _lax_conv(x, kernel, stride, pad):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("size,kernel,stride", [(2, 3, 1), (1, 3, 1), (4, 3, 2), (5, 3, 2), (7, 7, 2), (3, 1, 1)])
def test_conv_as_matmul_equals_lax_convolution_and_its_gradients(size, kernel, stride):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (4, size, size, 6))
  w = jax.random.normal(keys[1], (kernel, kernel, 6, 5))
  pad = kernel // 2
  as_matmul = lambda x, w: xla_cpu.conv_as_matmul(x, w, (stride, stride), ((pad, pad), (pad, pad)))
  reference = _lax_conv(x, w, stride, pad)
  np.testing.assert_allclose(as_matmul(x, w), reference, rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(keys[2], reference.shape)
  grads = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent), (0, 1))(x, w)
  for ours, theirs in zip(grads(as_matmul), grads(lambda x, w: _lax_conv(x, w, stride, pad))):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_maps_smaller_than_the_kernel_are_one_matrix_product_only_where_lowered_for_a_cpu():
  """The digits' last stage (2x2 maps, 3x3 kernels): XLA:CPU would swap the convolution's operands."""
  layer = xla_cpu.LAYERS.conv(8, 8, 3, dtype=jnp.float32, rngs=nnx.Rngs(0))
  small, large = jnp.ones((2, 2, 2, 8)), jnp.ones((2, 4, 4, 8))
  loss = lambda x: jnp.sum(layer(x) ** 2)
  grad = jax.grad(loss)
  cpu = ops(grad, small, platform="cpu")
  assert cpu["dot_general"] >= 2 and cpu["convolution"] == 0 and cpu["concatenate"] == 0
  for platform in ACCELERATORS:
    accelerator = ops(grad, small, platform=platform)
    assert accelerator["convolution"] == 2 and accelerator["dot_general"] == 0, (platform, accelerator)
  for platform in ("cpu", *ACCELERATORS):
    assert ops(grad, large, platform=platform)["dot_general"] == 0
  np.testing.assert_allclose(layer(small), _lax_conv(small, layer.kernel[...], 1, 1), rtol=1e-5, atol=1e-5)


def test_activations_are_written_to_memory_only_where_lowered_for_a_cpu():
  """A ReLU's output and its gradient each pass through one conditional on the CPU, nowhere else."""
  x = jax.random.normal(jax.random.key(0), (4, 4, 4, 3))
  grad = jax.grad(lambda x: jnp.sum(xla_cpu.relu(x) * x))
  assert ops(grad, x, platform="cpu")["case"] == 2
  for platform in ACCELERATORS:
    assert ops(grad, x, platform=platform)["case"] == 0
  np.testing.assert_array_equal(jax.jit(grad)(x), jax.grad(lambda x: jnp.sum(nnx.relu(x) * x))(x))
  np.testing.assert_array_equal(jax.vmap(xla_cpu.materialize)(x), x)


_INITIALISERS = {  # ours, the library's, our draw program, shapes, one shape past the smallest draw
    "he_normal": (xla_cpu.he_normal, nnx.initializers.variance_scaling(2.0, "fan_in", "normal"), xla_cpu._normals,
                  [(3, 3, 1, 16), (3, 3, 16, 32), (1, 1, 16, 32), (7, 7, 3, 64), (3, 3, 64, 64)], (3, 3, 256, 256)),
    "lecun_normal": (xla_cpu.lecun_normal, nnx.initializers.lecun_normal(), xla_cpu._truncated_normals,
                     [(64, 10), (16, 10), (512, 10), (2048, 10)], (2048, 1000)),
}


@pytest.mark.parametrize("name", sorted(_INITIALISERS))
@pytest.mark.parametrize("key", [jax.random.key(5), jax.random.PRNGKey(5)], ids=["typed key", "raw key"])
def test_initialisers_draw_the_librarys_values_from_one_compiled_program(name, key):
  """Bit for bit the values of nnx's variance_scaling initialiser, one draw program for all shapes."""
  ours, reference, program, shapes, big = _INITIALISERS[name]
  compiled_before = program._cache_size()
  for shape in shapes:
    mine, theirs = ours(key, shape), reference(key, shape)
    assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
    np.testing.assert_array_equal(mine, theirs)
  assert program._cache_size() - compiled_before <= 1
  np.testing.assert_array_equal(ours(key, big), reference(key, big))  # a longer draw, the same values
  with jax.threefry_partitionable(False):  # element i no longer depends on i alone: the per-shape draw
    np.testing.assert_array_equal(ours(key, shapes[0]), reference(key, shapes[0]))
  traced = jax.jit(lambda key: ours(key, shapes[0]))(key)  # a traced key: the library's own program
  np.testing.assert_array_equal(traced, jax.jit(lambda key: reference(key, shapes[0]))(key))


# ----------------------------------------------------------------------------- the network, whatever the layers

def _digits_net(layers: Layers, depth: int = 20):
  return build_model({"family": "cifar", "depth": depth, "variant": "residual", "shortcut": "A"}, num_classes=10,
                     in_channels=1, seed=0, platform="cpu", layers=layers)


def test_multiply_adds_and_parameters_are_the_networks_whatever_the_layers():
  """Digits ResNet-20 (8x8 inputs, 2x2 last maps): 2,515,968 convolution and 640 classifier multiply-adds;
  the CPU's dense products of the 2x2 maps are not the network's."""
  shape = (8, 8, 1)
  network, on_cpu = _digits_net(Layers()), _digits_net(platforms.LAYERS)
  assert count_macs(network, shape) == count_macs(on_cpu, shape) == 2_515_968 + 640
  assert count_params(network) == count_params(on_cpu)
  assert stage_table(network, shape) == stage_table(on_cpu, shape)


def test_describe_counts_the_networks_multiply_adds(capsys):
  assert cli.main(["describe", "--config", spec("configs/digits.py:depth=20"), "--json"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["macs_per_example"] == 2_516_608 and info["num_params"] == 269_434


def test_responses_and_lesions_are_the_networks_whatever_the_layers():
  network, on_cpu = _digits_net(Layers(), 8), _digits_net(platforms.LAYERS, 8)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(network), nnx.state(on_cpu))  # the same initial weights
  x = jax.random.normal(jax.random.key(1), (16, 8, 8, 1))
  np.testing.assert_allclose(layer_responses(on_cpu, x), layer_responses(network, x), rtol=1e-5)
  layout = lesion.block_layout(network, (8, 8, 1))
  assert layout == lesion.block_layout(on_cpu, (8, 8, 1))
  deletable = tuple(row["deletable"] for row in layout)
  keep = jnp.ones(len(layout)).at[1].set(0)
  logits = [jax.jit(lambda x, m=m: lesion.lesioned_logits(m, x, keep, deletable))(x) for m in (network, on_cpu)]
  np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- the CPU program and the generic one

def _train(config_spec: str, overrides: list[str], steps: int, monkeypatch, generic: bool):
  """`steps` SGD steps and an evaluation through the trainer's own steps; `generic`: the accelerators'
  program (JAX's own layers, seeds vmapped), run on the CPU."""
  with monkeypatch.context() as patch:
    if generic:
      patch.setattr(platforms, "LAYERS", Layers())
      overrides = [*overrides, "--config.train.seeds_together=vmap"]
    exp = loop.setup(load_config(spec(config_spec), overrides))
    state, batches = exp.state, exp.inputs.train_batches(0)
    losses = []
    for _ in range(steps):
      state, metrics = exp.train_step(state, next(batches))
      losses.append(np.asarray(metrics["loss"]))
    return jax.device_get(state.params), jax.device_get(state.batch_stats), np.array(losses), exp.evaluate(state)


@pytest.mark.parametrize("config, overrides", [
    # Two seeds in one program: unrolled on the CPU, vmapped on accelerators.
    pytest.param("configs/digits.py:depth=8", ["--config.data.batch_size=32", "--config.train.num_seeds=2"],
                 id="cifar-8-on-2x2-maps-two-seeds"),
    # Last blocks identities at the start (zero BN gamma), as a deep net on random labels is otherwise chaotic:
    # weights perturbed by 1e-6 end 70 % apart after three steps, so no two programs could agree.
    pytest.param("configs/synthetic.py:family=imagenet,depth=50,image_size=32,batch=8,dtype=float32",
                 ["--config.model.width_multiplier=0.125", "--config.model.zero_init_residual=True",
                  "--config.optimizer.learning_rate=0.01"], id="imagenet-50-bottleneck"),
])
def test_the_cpu_program_and_the_generic_program_train_the_same_models(config, overrides, monkeypatch):
  cpu = _train(config, overrides, 3, monkeypatch, generic=False)
  generic = _train(config, overrides, 3, monkeypatch, generic=True)
  for ours, theirs in zip(jax.tree.leaves(cpu[:2]), jax.tree.leaves(generic[:2])):
    assert relative_error(ours, theirs) < 1e-5
  np.testing.assert_allclose(cpu[2], generic[2], rtol=1e-5)
  for ours, theirs in zip(cpu[3], generic[3]):
    assert ours["eval_count"] == theirs["eval_count"]
    assert ours["eval_loss"] == pytest.approx(theirs["eval_loss"], rel=1e-5)
    assert abs(ours["eval_error"] - theirs["eval_error"]) <= 1 / ours["eval_count"]  # one example on an edge at most


def test_an_accelerator_plugin_without_its_device_is_one_line():
  """The test extra installs JAX's CUDA plugin: on a machine without a GPU its start-up failure is one warning line,
  not a traceback, and the command runs on the CPU."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  describe = [sys.executable, "-m", "resnet_jax.cli", "describe", "--config", spec("configs/digits.py:depth=8")]
  run = subprocess.run(describe, capture_output=True, text=True, timeout=300, env=env)
  assert run.returncode == 0 and "residual-8" in run.stdout, run.stderr
  assert "Traceback" not in run.stderr, run.stderr
  plugin_lines = [line for line in run.stderr.splitlines() if "xla_cuda" in line]
  gpu = glob.glob("/dev/nvidia[0-9]*")
  assert plugin_lines == ([] if gpu else [
      "WARNING:jax._src.xla_bridge:jax_plugins.xla_cuda13 is installed but found no device: JAX runs without it"])
