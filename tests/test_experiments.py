"""Sweeps and reports: a tiny digits study (depth 8, 20 steps) run end to end through the CLI,
resumption by skipping finished members, failures that do not stop the others, launchers, study files."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from resnet_jax.errors import ConfigError
from resnet_jax.studies import launchers
from resnet_jax.studies.study import load_study
from resnet_jax.studies.sweep import run_sweep

TINY_STEPS = ["--config.train.num_steps=20"]
# plain-9 is not a 6n+2 depth: it fails inside its train process, after the sweep has started.
TINY_STUDY = f'''"""A tiny digits study for the tests."""
BASE_CONFIG = "{REPO / 'configs' / 'digits.py'}"
GRID = {{"depth": [9, 8], "variant": ["plain", "residual"], "seed": [0]}}
EXCLUDE = [{{"depth": 9, "variant": "residual"}}]
OVERRIDES = {{"train.log_every_steps": 10, "train.eval_every_steps": 10, "train.checkpoint_every_steps": 20,
             "train.analysis_every_steps": 10}}
PAPER = {{("residual", 8): 12.5}}
'''


def _cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "resnet_jax.cli", *args], capture_output=True, text=True,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """The tiny study swept once (one member fails) and reported in PNG and SVG."""
  tmp = tmp_path_factory.mktemp("sweep")
  study, root = tmp / "tiny.py", tmp / "runs"
  study.write_text(TINY_STUDY)
  sweep = _cli("sweep", str(study), "--root", str(root), "--report", *TINY_STEPS)
  report = _cli("report", str(root), "--formats", "png,svg")
  return study, root, sweep, report


def test_sweep_reports_failure_and_runs_the_others(swept):
  _, root, sweep, _ = swept
  assert sweep.returncode == 1, sweep.stderr
  assert "plain-9-seed0: failed (exit 2)" in sweep.stdout and "6n+2" in sweep.stdout
  for name in ("plain-8-seed0", "residual-8-seed0"):
    assert f"{name}: finished in" in sweep.stdout
    assert json.loads((root / name / "finished.json").read_text())["step"] == 20
    assert "step 20/20" in (root / name / "train.log").read_text()
  assert "report skipped" in sweep.stdout
  assert [m["name"] for m in json.loads((root / "study.json").read_text())["members"]] == [
      "plain-9-seed0", "plain-8-seed0", "residual-8-seed0"]


def test_report_writes_figures_tables_and_index(swept):
  _, root, _, report = swept
  assert report.returncode == 0, report.stderr
  out = root / "report"
  assert report.stdout.strip() == str(out / "index.md")
  for stem in ("errors", "layer_responses", "gradient_norms"):
    for fmt in ("png", "svg"):
      assert (out / f"{stem}.{fmt}").stat().st_size > 1000
  index = (out / "index.md").read_text()
  for link in ("](errors.png)", "](layer_responses.png)", "](gradient_norms.png)", "](results.csv)"):
    assert link in index
  assert "| plain | 8 | 75,002 | 1 | 20 |" in index and "No metrics (not started, or failed before logging): plain-9-seed0" in index
  responses = json.loads((out / "layer_responses.json").read_text())
  assert len(responses["plain-8-seed0"]["std"]) == 7  # stem and 3 blocks of two 3x3 layers


def test_table_numbers_are_the_last_eval_records(swept):
  _, root, _, _ = swept
  with open(root / "report" / "results.csv") as f:
    rows = {row["variant"]: row for row in csv.DictReader(f)}
  assert set(rows) == {"plain", "residual"}
  for variant, row in rows.items():
    records = [json.loads(line) for line in (root / f"{variant}-8-seed0" / "metrics.jsonl").read_text().splitlines()]
    last_eval = [r for r in records if "eval_error" in r][-1]
    last_train = [r for r in records if "train_error" in r][-1]
    assert last_eval["step"] == 20
    assert float(row["test_error_mean"]) == pytest.approx(100 * last_eval["eval_error"])
    for column in ("test_error_min", "test_error_max"):
      assert float(row[column]) == pytest.approx(100 * last_eval["eval_error"])
    assert float(row["train_error_mean"]) == pytest.approx(100 * last_train["train_error"])
    assert row["seeds"] == "1" and row["test_error_std"] == "" and row["eval_protocol"] == "single view"
    assert int(row["params"]) == json.loads((root / f"{variant}-8-seed0" / "finished.json").read_text())["num_params"]
  assert rows["residual"]["paper_test_error"] == "12.5" and rows["plain"]["paper_test_error"] == ""
  assert rows["residual"]["paper_protocol"] == ""  # the paper tested no digits: no protocol to name


def test_rerun_skips_finished_members(swept, capsys):
  study, root, _, _ = swept
  finished = root / "plain-8-seed0" / "finished.json"
  mtime = finished.stat().st_mtime_ns
  failed = run_sweep(str(study), str(root), overrides=TINY_STEPS)
  out = capsys.readouterr().out
  assert failed == ["plain-9-seed0"]
  assert "plain-8-seed0: skipped (finished, 20 steps)" in out
  assert "residual-8-seed0: skipped (finished, 20 steps)" in out
  assert finished.stat().st_mtime_ns == mtime


def test_longer_schedule_makes_finished_members_resume(swept, capsys):
  study, root, _, _ = swept
  run_sweep(str(study), str(root), dry_run=True, overrides=["--config.train.num_steps=30"])
  out = capsys.readouterr().out
  assert "plain-8-seed0     resume@20" in out and "plain-9-seed0     new" in out


def test_seeds_trained_together_are_one_member_and_several_runs(tmp_path, capsys):
  from resnet_jax.report.index import make_report
  study, root = tmp_path / "seeds.py", tmp_path / "runs"
  study.write_text(f'BASE_CONFIG = "{REPO / "configs" / "digits.py"}"\n'
                   'GRID = {"depth": [8], "variant": ["residual"]}\n'
                   'OVERRIDES = {"train.num_seeds": 2, "train.num_steps": 10, "train.log_every_steps": 5}\n')
  assert run_sweep(str(study), str(root)) == []
  assert run_sweep(str(study), str(root)) == []
  assert "residual-8: skipped (finished, 10 steps)" in capsys.readouterr().out
  make_report(str(root))
  with open(root / "report" / "results.csv") as f:
    (row,) = csv.DictReader(f)
  errors = [100 * [json.loads(line) for line in (root / "residual-8" / f"seed{s}" / "metrics.jsonl").read_text()
                   .splitlines()][-1]["eval_error"] for s in (0, 1)]
  assert row["seeds"] == "2" and float(row["test_error_mean"]) == pytest.approx(sum(errors) / 2)
  assert float(row["test_error_std"]) == pytest.approx(abs(errors[0] - errors[1]) / 2 ** 0.5)  # ddof=1
  assert (float(row["test_error_min"]), float(row["test_error_max"])) == pytest.approx(sorted(errors))
  responses = json.loads((root / "report" / "layer_responses.json").read_text())
  assert responses["residual-8/seed0"]["std"] != responses["residual-8/seed1"]["std"]


def test_dry_run_lists_members_and_runs_nothing(tmp_path, capsys):
  study = tmp_path / "tiny.py"
  study.write_text(TINY_STUDY)
  assert run_sweep(str(study), str(tmp_path / "runs"), dry_run=True, overrides=TINY_STEPS) == []
  out = capsys.readouterr().out
  for line in ("plain-9-seed0     new           depth=9,variant=plain,seed=0     20 steps",
               "residual-8-seed0  new           depth=8,variant=residual,seed=0  20 steps"):
    assert line in out
  assert "--config.train.num_steps=20" in out and "--config.train.analysis_every_steps=10" in out
  assert not (tmp_path / "runs").exists()


def test_slurm_dry_run_writes_an_array_of_the_unfinished_members(tmp_path, capsys):
  study = tmp_path / "tiny.py"
  study.write_text(TINY_STUDY)
  assert run_sweep(str(study), str(tmp_path / "runs"), launcher="slurm", overrides=TINY_STEPS, dry_run=True,
                   slurm_args=["--time=10"]) == []
  script = (tmp_path / "runs" / "sweep.slurm").read_text()
  assert "#SBATCH --array=0-2" in script
  assert script.count("; command=(") == 3 and "  2) workdir=" in script and "--config.train.num_steps=20" in script
  assert f"sbatch --time=10 {tmp_path / 'runs' / 'sweep.slurm'}" in capsys.readouterr().out
  assert not (tmp_path / "runs" / "plain-8-seed0").exists()


@pytest.mark.parametrize("count, cores, sizes", [(1, 4, [4]), (2, 4, [2, 2]), (3, 4, [2, 1, 1]), (2, 2, [1, 1])])
def test_cpu_slots_split_the_cores_into_disjoint_groups(monkeypatch, count, cores, sizes):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(10, 10 + cores)))
  slots = launchers.cpu_slots(count)
  if count == 1:
    assert slots == [launchers.Slot()]  # one member at a time keeps every core (and its own device count)
    return
  assert [len(s.cores) for s in slots] == sizes
  assert sorted(c for s in slots for c in s.cores) == list(range(10, 10 + cores))


def test_members_at_once_default_to_one_per_core_and_bad_values_are_one_line(monkeypatch):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
  assert launchers.jobs_at_once("auto", 12) == 2 and launchers.jobs_at_once("auto", 1) == 1
  assert launchers.jobs_at_once("3", 12) == 3
  for bad in ("0", "-1", "two"):
    with pytest.raises(ConfigError, match=r"--jobs .* allowed values are auto or a whole number >= 1"):
      launchers.jobs_at_once(bad, 12)
  with pytest.raises(ConfigError, match="at most 2 members at once, one per core"):
    launchers.cpu_slots(3)
  monkeypatch.delattr(os, "sched_getaffinity")  # an OS that cannot pin: one member at a time, every core
  assert launchers.jobs_at_once("auto", 12) == 1 and launchers.cpu_slots(1) == [launchers.Slot()]
  with pytest.raises(ConfigError, match="--jobs 2 is invalid here: this OS cannot pin"):
    launchers.cpu_slots(2)


def test_first_seeds_start_first_and_the_longest_first_within_a_seed():
  from resnet_jax.studies import sweep
  study = load_study(str(REPO / "experiments" / "digits.py"))
  configs = {m.name: sweep._load(study, m, study.overrides) for m in study.members}
  order = [m.name for m in sweep._start_order(study.members, configs)]
  assert order[:4] == ["plain-56-seed0", "residual-56-seed0", "plain-20-seed0", "residual-20-seed0"]
  assert [name[-1] for name in order] == list("000011112222")


def test_only_restricts_the_sweep_to_matching_members(tmp_path, capsys):
  study = tmp_path / "tiny.py"
  study.write_text(TINY_STUDY)
  assert run_sweep(str(study), str(tmp_path / "runs"), launcher="slurm", overrides=TINY_STEPS, only="depth=8",
                   dry_run=True) == []
  script = (tmp_path / "runs" / "sweep.slurm").read_text()
  assert "#SBATCH --array=0-1" in script and "plain-9-seed0" not in script
  assert "plain-8-seed0" in script and "residual-8-seed0" in script
  capsys.readouterr()
  run_sweep(str(study), str(tmp_path / "runs"), dry_run=True, overrides=TINY_STEPS, only="depth=8,variant=residual")
  out = capsys.readouterr().out
  assert "1 of 3 members" in out and "residual-8-seed0" in out and "plain-8-seed0" not in out


@pytest.mark.parametrize("only, message", [
    ("width=2", r"--only 'width=2': expected key=value with key one of depth, seed, variant"),
    ("depth", r"--only 'depth': expected key=value"),
    ("depth=20", r"--only 'depth=20' matches no member of tiny: depth is one of 9, 8"),
])
def test_bad_only_filter_names_the_allowed_values(tmp_path, only, message):
  study = tmp_path / "tiny.py"
  study.write_text(TINY_STUDY)
  with pytest.raises(ConfigError, match=message):
    run_sweep(str(study), str(tmp_path / "runs"), dry_run=True, only=only)


def test_gpus_follow_cuda_visible_devices(monkeypatch):
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
  assert launchers.local_gpus() == ["2", "3"]


@pytest.mark.parametrize("study, members", [("digits", 12), ("cifar10", 45), ("fashion_mnist", 12), ("imagenet", 4)])
def test_shipped_studies_dry_run(study, members, capsys):
  assert len(load_study(str(REPO / "experiments" / f"{study}.py")).members) == members
  assert run_sweep(str(REPO / "experiments" / f"{study}.py"), "/nonexistent/root", dry_run=True) == []
  assert "members of configs/" in capsys.readouterr().out


def test_cifar10_study_has_no_plain_110():
  names = [m.name for m in load_study(str(REPO / "experiments" / "cifar10.py")).members]
  assert "residual-110-seed4" in names and not any(n.startswith("plain-110") for n in names)


def test_missing_base_config_is_listed_in_dry_run_and_refused_otherwise(tmp_path, capsys):
  study = tmp_path / "future.py"
  study.write_text('BASE_CONFIG = "configs/not_yet.py"\nGRID = {"depth": [18, 34], "variant": ["plain"]}\n')
  run_sweep(str(study), str(tmp_path / "runs"), dry_run=True)
  out = capsys.readouterr().out
  assert "plain-18  ?" in out and "configs/not_yet.py does not exist yet" in out
  with pytest.raises(ConfigError, match="base config configs/not_yet.py does not exist"):
    run_sweep(str(study), str(tmp_path / "runs"))


@pytest.mark.parametrize("text, message", [
    ('BASE_CONFIG = "configs/digits.py"\n', "GRID is missing"),
    ('GRID = {"depth": [20]}\n', "BASE_CONFIG is missing"),
    ('BASE_CONFIG = "configs/digits.py"\nGRID = {"depth": []}\n', r"GRID\['depth'\] must be a non-empty list"),
    ('BASE_CONFIG = "configs/digits.py"\nGRID = {"depth": [20]}\nEXCLUDE = [{"width": 2}]\n', "EXCLUDE entry"),
    ('BASE_CONFIG = "configs/digits.py"\nGRID = {"depth": [20]}\nPAPER = {20: 8.75}\n', "PAPER must be"),
    ('BASE_CONFIG = "configs/digits.py"\nGRID = {"depth": [20]}\nSLURM = "--time=10"\n', "SLURM must be a list"),
])
def test_bad_study_files_fail_with_one_line(tmp_path, text, message):
  study = tmp_path / "x.py"
  study.write_text(text)
  with pytest.raises(ConfigError, match=f"study .*x.py: {message}"):
    load_study(str(study))


def test_bad_grid_argument_is_refused_before_anything_runs(tmp_path):
  study = tmp_path / "x.py"
  study.write_text(f'BASE_CONFIG = "{REPO / "configs" / "digits.py"}"\nGRID = {{"width": [2]}}\n')
  with pytest.raises(ConfigError, match="member width2: .*config argument 'width=2'"):
    run_sweep(str(study), str(tmp_path / "runs"))
  assert not (tmp_path / "runs").exists()


def test_report_refuses_bad_formats_and_empty_roots(tmp_path):
  from resnet_jax.report.index import make_report
  with pytest.raises(ConfigError, match="allowed values are png, svg, pdf"):
    make_report(str(tmp_path), formats=("jpg",))
  with pytest.raises(FileNotFoundError, match="no work directories with metrics"):
    make_report(str(tmp_path))


@pytest.mark.parametrize("override, field", [("--config.seed=1", "seed"), ("--config.model.depth=20", "model.depth"),
                                             ("--config.model.variant=preact", "model.variant")])
def test_overrides_of_what_names_the_members_are_refused(tmp_path, override, field):
  study = tmp_path / "tiny.py"
  study.write_text(TINY_STUDY)
  with pytest.raises(ConfigError, match=rf"{override}: {field} is set by the study's grid argument"):
    run_sweep(str(study), str(tmp_path / "runs"), overrides=[override])
  assert not (tmp_path / "runs").exists()


def test_a_member_directory_holding_another_experiment_is_refused_untouched(swept, capsys):
  study, root, _, _ = swept
  run_sweep(str(study), str(root), dry_run=True, overrides=[*TINY_STEPS, "--config.optimizer.learning_rate=0.2"])
  assert "residual-8-seed0  conflict" in capsys.readouterr().out
  before = (root / "residual-8-seed0" / "metrics.jsonl").read_text()
  failed = run_sweep(str(study), str(root), overrides=[*TINY_STEPS, "--config.optimizer.learning_rate=0.2"],
                     only="depth=8,variant=residual")
  out = capsys.readouterr().out
  assert failed == ["residual-8-seed0"]
  assert "residual-8-seed0: refused" in out and "optimizer.learning_rate 0.1 -> 0.2" in out
  assert (root / "residual-8-seed0" / "metrics.jsonl").read_text() == before
