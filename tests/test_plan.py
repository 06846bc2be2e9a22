"""`resnet-jax plan`: the trainer's steps compiled on this CPU host for an H100 and a TPU v5e (with the `plan` and
`plan-tpu` extras: jax's CUDA plugin with ptxas and libdevice, and libtpu), their memory per device, and the
search for the largest batch that fits."""

from __future__ import annotations

import json

import pytest

from conftest import spec
from resnet_jax import plan as plan_lib
from resnet_jax.cli import EXIT_BAD_INPUT, main
from resnet_jax.platforms import targets


def _plan(capsys, *args: str) -> tuple[int, dict | str, str]:
  code = main(["plan", *args])
  out, err = capsys.readouterr()
  return code, json.loads(out) if code == 0 and "--json" in args else out, err


@pytest.mark.parametrize("config, devices, dtype", [
    ("configs/synthetic.py:depth=20,batch=128,dtype=auto", 8, "bfloat16"),
    ("configs/synthetic.py:family=imagenet,depth=50,image_size=224,batch=64,num_classes=1000,dtype=bfloat16", 1,
     "bfloat16"),
], ids=["cifar-20-on-8-h100", "resnet-50-bf16-on-1-h100"])
def test_the_steps_compile_for_an_h100_without_conditionals_and_say_their_memory(capsys, config, devices, dtype):
  searched = devices > 1  # the search's compiles for the smaller net only
  code, result, err = _plan(capsys, "--config", spec(config), "--target", "h100", "--devices", str(devices),
                            *([] if searched else ["--no-search"]), "--json")
  assert code == 0, err
  assert result["device_kind"] == "NVIDIA H100 80GB HBM3" and result["devices"] == devices
  assert result["dtype"] == dtype  # 'auto' is bfloat16 on a GPU, whatever host compiles
  train, evaluate = result["steps"]["train"], result["steps"]["eval"]
  assert train["conditionals"] == evaluate["conditionals"] == 0  # no XLA:CPU rewrite survives
  assert (train["collectives"] > 0) == (devices > 1)  # gradients and BatchNorm's statistics over the global batch
  for step in (train, evaluate):
    assert step["arguments"] > 0 and step["temporaries"] > 0 and step["compile_seconds"] > 0
    assert step["peak"] == step["arguments"] + step["outputs"] - step["aliased"] + step["temporaries"]
  assert train["aliased"] > 0 and evaluate["aliased"] == 0  # the train step's state is donated
  assert result["peak_bytes"] == train["peak"] and result["fits"]
  assert result["usable_bytes"] == int(0.75 * result["device_memory_bytes"]) == int(0.75 * 81_559 * 2**20)
  if searched:  # synthetic data holds 8 batches: 128 per device is all of it, and tiny next to 60 GiB
    assert result["largest_batch"]["per_device"] == 128 and result["largest_batch"]["capped_by_data"]
    assert list(result["largest_batch"]["compiled"])[:2] == ["16", "32"]  # JSON keys


@pytest.mark.parametrize("curve", ["linear", "convex", "concave"])
def test_the_largest_batch_search_lands_within_5_percent_of_the_memory(curve):
  """Memory nearly linear in the batch (XLA's schedules bend it either way): a few secant steps find the largest
  batch that fits, within 5 % of the limit, from the config's batch 32 and 64."""
  bend = {"linear": 0.0, "convex": 2e-4, "concave": -1e-4}[curve]
  peak_of = lambda batch: int(100e6 + 40e6 * batch * (1 + bend * batch))
  limit = 60 << 30
  found = plan_lib.largest_batch(peak_of, 32, peak_of(32), limit, unit=4)
  assert found["per_device"] % 4 == 0 and 0.95 * limit <= peak_of(found["per_device"]) <= limit
  assert found["peak_bytes"] == peak_of(found["per_device"]) and len(found["compiled"]) <= 6
  assert list(found["compiled"])[:2] == [32, 64] and not found["capped_by_data"]
  assert all(found["compiled"][b] == peak_of(b) for b in found["compiled"])
  capped = plan_lib.largest_batch(peak_of, 32, peak_of(32), limit, unit=4, cap=200)
  assert capped["per_device"] == 200 and capped["capped_by_data"]
  nothing = plan_lib.largest_batch(peak_of, 32, peak_of(32), 1 << 20, unit=4)
  assert nothing["per_device"] is None and nothing["peak_bytes"] is None


def test_a_jump_in_memory_is_searched_by_halving():
  """XLA may switch to another schedule at some batch (memory jumps): secant steps would stall there."""
  peak_of = lambda batch: int(1e9 + 4e7 * batch) if batch <= 700 else int(1e12)
  limit = 60 << 30
  found = plan_lib.largest_batch(peak_of, 32, peak_of(32), limit, unit=4, compiles=12)
  assert found["per_device"] == 700 or found["compiled"].get(found["per_device"] + 4, 0) > limit
  assert 600 <= found["per_device"] <= 700


def test_the_steps_compile_for_a_tpu_v5e(capsys):
  code, result, err = _plan(capsys, "--config", spec("configs/digits.py:depth=8"), "--target", "v5e", "--devices", "4",
                            "--no-search", "--json")
  assert code == 0, err
  assert result["device_kind"] == "TPU v5 lite" and result["dtype"] == "bfloat16"
  assert result["steps"]["train"]["conditionals"] == 0 and result["steps"]["train"]["collectives"] > 0
  assert result["usable_bytes"] == result["device_memory_bytes"] == 16 << 30 and result["fits"]
  assert not err  # libtpu is told the slice it compiles for: no warnings about the host


@pytest.mark.parametrize("args, named", [
    (["--target", "a100"], "--target 'a100' is invalid: allowed values are h100, v5e"),
    (["--target", "h100", "--devices", "0"], "--devices 0 is invalid"),
    (["--target", "v5e", "--devices", "3"], "--devices 3 is invalid for v5e: allowed values are 1, 4, 8"),
    (["--target", "h100", "--devices", "3"], "data.batch_size=128 does not divide over 3 devices"),
])
def test_bad_input_is_one_line(capsys, args, named):
  code, out, err = _plan(capsys, "--config", spec("configs/digits.py:depth=8"), *args)
  assert code == EXIT_BAD_INPUT and not out and named in err and len(err.strip().splitlines()) == 1


def test_a_missing_compiler_names_the_extra_that_brings_it(capsys, monkeypatch):
  def absent(**_):
    raise RuntimeError("Unable to initialize backend 'cuda': the plugin is not installed")
  monkeypatch.setattr(targets.topologies, "get_topology_desc", absent)
  code, out, err = _plan(capsys, "--config", spec("configs/digits.py:depth=8"), "--target", "h100")
  assert code == EXIT_BAD_INPUT and not out and len(err.strip().splitlines()) == 1
  assert "pip install 'resnet-jax[plan]'" in err and "NVIDIA H100 80GB HBM3" in err
