"""`resnet-jax benchmark` on a tiny config: the JSON has every field, with sane types (never speeds)."""

from __future__ import annotations

import json

import jax
import pytest

from resnet_jax.benchmark import format_benchmark
from resnet_jax.cli import EXIT_BAD_INPUT, main

TINY = "configs/synthetic.py:depth=8,image_size=8,batch=16"
POSITIVE_NUMBERS = (
    "train_lower_s", "train_compile_s", "train_first_call_s", "train_examples_per_s", "train_step_ms",
    "eval_examples_per_s", "eval_step_ms", "data_examples_per_s", "data_step_ms", "data_fraction_of_train_step",
    "train_flops_per_step_xla", "train_flops_per_example_xla", "model_train_flops_per_example",
    "achieved_tflops", "mfu",
)


def _run(repo, capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
  monkeypatch.chdir(repo)
  code = main(["benchmark", "--config", TINY, *args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_json_fields_are_complete_and_sane(repo, capsys, monkeypatch):
  code, out, _ = _run(repo, capsys, monkeypatch, "--steps", "2", "--json", "--peak-tflops", "1.5")
  assert code == 0
  result = json.loads(out)
  for field in POSITIVE_NUMBERS:
    assert isinstance(result[field], (int, float)) and result[field] > 0, field
  assert result["batch_size"] == 16 and result["num_seeds"] == 1 and result["steps_per_window"] == 2
  assert result["image_shape"] == [8, 8, 3] and result["num_params"] > 0
  assert result["peak_tflops"] == 1.5 and result["mfu"] == pytest.approx(result["achieved_tflops"] / 1.5)
  assert len(result["train_window_examples_per_s"]) == result["windows"]
  assert result["platform"] == jax.devices()[0].platform and result["device_count"] >= 1
  assert result["peak_memory_bytes"] is None or result["peak_memory_bytes"] > 0
  memory = result["train_compiled_memory_bytes"]
  assert memory is None or all(isinstance(v, int) and v >= 0 for v in memory.values())
  assert len(result["load_average_1m"]) == 2
  table = format_benchmark(result)
  assert "examples/s" in table and "MFU" in table


@pytest.mark.parametrize("args, field", [(("--steps", "0"), "--steps"), (("--peak-tflops", "-1"), "--peak-tflops")])
def test_bad_arguments_are_one_line_errors(repo, capsys, monkeypatch, args, field):
  code, out, err = _run(repo, capsys, monkeypatch, *args)
  assert code == EXIT_BAD_INPUT and not out
  assert field in err and len(err.strip().splitlines()) == 1
