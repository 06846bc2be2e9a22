"""The programs a GPU or TPU would run, built on this CPU host: the trainer's real train and eval steps lowered
for cuda and for tpu, on one device and on a mesh of 8 simulated devices, are the generic program (no XLA:CPU
rewrite inside), with the expected convolutions, the batch sharded on 'data', the state replicated and donated,
and bf16 where configured."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from resnet_jax import platforms

HELPER = REPO / "tests" / "_multidevice_run.py"
_spec = importlib.util.spec_from_file_location("_multidevice_run", HELPER)
multidevice = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(multidevice)

# (config, overrides, convolution layers, compute dtype): ResNet-8 on the digits' 8x8 images (2x2 maps in its
# last stage) and ResNet-20 on 32x32 images in bfloat16, the batch over 8 devices.
DIGITS_8 = ("configs/digits.py:depth=8", ["--config.data.batch_size=32"], 7, "f32")
CIFAR_20_BF16 = ("configs/synthetic.py:depth=20,batch=64,dtype=bfloat16", [], 19, "bf16")
ACCELERATORS = ("cuda", "tpu")


def _lowered(case, platform: str, generic: bool = False) -> dict:
  config, overrides, _, _ = case
  return dict(config=config, overrides=overrides, platform=platform, generic=generic, kind="lowered")


# What a choice by platform (jax.lax.platform_dependent) leaves in a program lowered for one platform: a `case`
# on a constant index, returning that platform's branch, and zeros for the residuals of the branches not taken;
# XLA folds them away.
PLATFORM_CHOICE = ("case", "return", "constant", "broadcast_in_dim")


def _check_accelerator_program(program: dict, generic: dict, case) -> None:
  _, _, conv_layers, dtype = case
  for step in ("train", "eval"):
    ours, theirs = program[step]["ops"], generic[step]["ops"]
    if ours.get("case"):  # the digits' 2x2 maps: the network's own operations otherwise
      ours, theirs = [{k: v for k, v in ops.items() if k not in PLATFORM_CHOICE} for ops in (ours, theirs)]
    assert ours == theirs, step
  train, evaluate = program["train"], program["eval"]
  # Forward, filter-gradient and input-gradient convolutions (the stem's input needs no gradient).
  assert train["ops"]["convolution"] == 3 * conv_layers - 1 and evaluate["ops"]["convolution"] == conv_layers
  assert train["ops"]["dot_general"] == 3 and evaluate["ops"]["dot_general"] == 1  # the classifier only
  assert train["convolution_types"] == evaluate["convolution_types"] == [dtype]
  assert train["batch_constraints"] == ['[{"data"}, {}, {}, {}]', '[{"data"}]']  # images and labels
  assert train["state_donated"] and not evaluate["state_donated"]
  # The state, and data in memory: every argument replicated (but the eval step's batch index, a Python number).
  assert train["sharded_arguments"] == evaluate["sharded_arguments"] == 0
  assert train["replicated_arguments"] > evaluate["replicated_arguments"] > 10


@pytest.mark.parametrize("case", [DIGITS_8, CIFAR_20_BF16], ids=["digits-8", "cifar-20-bf16"])
def test_the_steps_lowered_for_an_accelerator_are_the_generic_program(case, monkeypatch):
  for platform in ACCELERATORS:
    with monkeypatch.context() as patch:
      patch.setattr(platforms, "LAYERS", platforms.LAYERS)  # restored after run_lowered's swap to JAX's own layers
      generic = multidevice.run_lowered(_lowered(case, platform, generic=True))
    program = multidevice.run_lowered(_lowered(case, platform))
    assert program["devices"] == 1
    _check_accelerator_program(program, generic, case)
  cpu = multidevice.run_lowered(_lowered(case, "cpu"))
  assert cpu["train"]["ops"]["case"] > 0  # the CPU program is another one: its activations are materialized


def _on_8_devices(tasks: list[dict], cache: str) -> list[dict]:
  run = subprocess.run([sys.executable, str(HELPER), json.dumps(tasks)], capture_output=True, text=True,
                       env=subprocess_env(cache, 8), cwd=REPO, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(run.stdout.split("RESULT ")[1])


def test_the_steps_lowered_for_accelerators_on_8_devices_are_the_generic_program(tmp_path):
  programs = _on_8_devices([_lowered(CIFAR_20_BF16, platform) for platform in ACCELERATORS], str(tmp_path))
  # A process of its own: run_lowered(generic=True) swaps the platform layer for the rest of the process.
  generics = _on_8_devices([_lowered(CIFAR_20_BF16, platform, True) for platform in ACCELERATORS], str(tmp_path))
  for program, generic in zip(programs, generics):
    assert program["devices"] == 8
    _check_accelerator_program(program, generic, CIFAR_20_BF16)
    assert program["train"]["ops"].get("case", 0) == 0  # 32x32 images: no choice by platform at all
