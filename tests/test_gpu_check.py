"""benchmarks/gpu_check.sh --smoke on the CPU, as on a fresh device image: a bare venv holding only the image's
packages (jax, flax, optax, orbax-checkpoint, scikit-learn, matplotlib), pip's index off, the wheels of
benchmarks/gpu_wheels.sh carried. The Markdown block has every section, each with sane numbers, and goes into
BENCHMARKS.md's GPU section."""

from __future__ import annotations

import importlib.metadata
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MARKER = "===== gpu_check.md =====\n"
IMAGE = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "scikit-learn", "matplotlib", "numpy")


def _rows(block: str, first_cell: str) -> list[list[str]]:
  """The cells of the Markdown table rows whose first cell starts with `first_cell`."""
  rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
          if line.startswith("|")]
  return [r for r in rows if r[0].startswith(first_cell)]


def _number(cell: str) -> float:
  return float(cell.replace(",", "").rstrip("%"))


def _section(block: str, title: str) -> str:
  start = block.index(f"#### {title}")
  end = block.find("\n#### ", start + 1)
  return block[start:end if end > 0 else None]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
  """A venv with the device image's packages only, at this venv's versions (pip's cache has them)."""
  venv = tmp_path_factory.mktemp("bare") / "venv"
  pins = [f"{name}=={importlib.metadata.version(name)}" for name in IMAGE]
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins], check=True, timeout=600)
  python = str(venv / "bin" / "python")
  bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  for module in ("pytest", "ml_collections", "tensorboardX", "tensorflow", "torch", "resnet_jax"):
    assert subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd="/", env=bare).returncode, module
  return python


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, bare_python, fashion_mnist_dir) -> tuple[str, str, str]:
  out, work = tmp_path_factory.mktemp("gpu-check"), tmp_path_factory.mktemp("gpu-check-work")
  wheels, data = work / ".whl", work / ".data"
  subprocess.run(["bash", "benchmarks/gpu_wheels.sh", str(wheels), str(data)], cwd=REPO, check=True,
                 capture_output=True, env=dict(os.environ, PYTHON=sys.executable), timeout=300)
  assert len(list((data / "fashion-mnist").glob("*.gz"))) == 4
  benchmarks = work / "BENCHMARKS.md"
  benchmarks.write_text((REPO / "BENCHMARKS.md").read_text())
  env = dict({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, PYTHON=bare_python, OUT=str(out),
             JAX_PLATFORMS="cpu", GPU_CHECK_BUDGET_S="300", GPU_CHECK_COMMIT="test", GPU_CHECK_WHEELS=str(wheels),
             GPU_CHECK_DATA=str(data), GPU_CHECK_BENCHMARKS=str(benchmarks), PIP_NO_INDEX="1")
  env.pop("GPU_CHECK_SMOKE", None)
  run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  block = run.stdout.split(MARKER)[1]
  assert block == (out / "gpu_check.md").read_text()
  assert (out / "BENCHMARKS.md").read_text() == benchmarks.read_text()
  logs = (out / "gpu_check.log").read_text()[-3000:] + "\n--- pytest.log\n" + (out / "pytest.log").read_text()[-6000:]
  return block, logs, benchmarks.read_text()


def test_every_step_ran(smoke):
  block, log, _ = smoke
  for failure in ("timed out", "failed, exit code", "skipped, budget", "missing on this image", "Traceback"):
    assert failure not in block, (failure, block, log)
  assert "jax.devices(): 1 x cpu (cpu)" in block and "**smoke mode**" in block and "code: test" in block


def test_tests_section_counts_passes_and_names_what_the_image_lacks(smoke):
  section = _section(smoke[0], "Test suite on the device")
  counts = dict(reversed(c.split()) for c in section.split("**")[1].split(", "))
  assert int(counts["passed"]) > 0, section
  # The image has no TensorFlow, which data/imagenet_preprocess.py imports: the one failure, named as such.
  assert counts.get("failed") == "1" and "- failed for want of `tensorflow` (not on the device image): 1" in section
  assert "other failures" not in section, section


@pytest.mark.parametrize("title, name", [("Throughput", "cifar-resnet20"), ("Benchmark suite", "cifar-resnet20")])
def test_benchmark_tables_have_positive_throughput(smoke, title, name):
  (row,) = _rows(_section(smoke[0], title), name)
  assert _number(row[5]) > 0 and _number(row[6]) > 0 and _number(row[8]) > 0  # compile s, train and eval img/s


def test_bf16_and_float32_agree_with_the_reference(smoke):
  rows = {(r[3], r[4]): r for r in _rows(_section(smoke[0], "bfloat16 and float32"), "cifar-resnet8")}
  assert rows.keys() == {("float32", "highest"), ("float32", "default"), ("bfloat16", "default")}
  assert rows["float32", "highest"][6] == "(reference)" and math.isfinite(_number(rows["float32", "highest"][5]))
  f32 = [_number(c) for c in rows["float32", "default"][6:10]]
  bf16 = [_number(c) for c in rows["bfloat16", "default"][6:10]]  # loss, logits, gradient, worst gradient tensor
  assert all(0 <= d < 1e-5 for d in f32), f32  # on the CPU 'default' is float32 arithmetic too
  assert 0 < bf16[0] < 0.01 and 0 < bf16[1] < 0.05 and 0 < bf16[2] < 0.5 and bf16[2] <= bf16[3] < 1, bf16


def test_vmap_and_unroll_train_the_same_models(smoke):
  section = _section(smoke[0], "Several seeds")
  runs = [r for r in _rows(section, "") if len(r) == 6 and r[1] in ("-", "unroll", "vmap")]
  assert [(r[0], r[1]) for r in runs] == [("1", "-"), ("2", "unroll"), ("2", "vmap")]
  assert all(_number(r[2]) > 0 and _number(r[3]) > 0 and _number(r[4]) > 0 for r in runs)  # compile s, ms, img/s
  comparisons = _rows(section, "unroll vs vmap") + _rows(section, "seed 0 alone")
  assert len(comparisons) == 3
  for _, loss_diff, update_diff in comparisons:
    assert math.isfinite(_number(loss_diff)) and _number(loss_diff) < 1e-5, comparisons
    assert math.isfinite(_number(update_diff)) and _number(update_diff) < 1e-4, comparisons
  assert "members differ: True" in section


def test_the_study_trains_a_member_on_the_carried_data(smoke):
  (row,) = _rows(_section(smoke[0], "The GPU-sized Fashion-MNIST study"), "residual-20-seed0")
  assert row[1] == "10" and 0 <= _number(row[2]) <= 100 and 0 <= _number(row[3]) <= 100


def test_the_block_goes_to_the_top_of_benchmarks_gpu_section(smoke):
  block, _, benchmarks = smoke
  original = (REPO / "BENCHMARKS.md").read_text()
  head, gpu = original.split("## GPU\n", 1)
  heading = block.splitlines()[0]
  assert heading.startswith("### GPU check, ")
  assert benchmarks == f"{head}## GPU\n\n<!-- gpu_check: {heading} -->\n{block.strip()}\n<!-- gpu_check: end -->\n{gpu}"
