"""The report of a study with several seeds per member, from work directories written by hand in the
trainer's formats (no training): the table's spread over seeds, its CSV, the figures, and the test
protocol named beside the paper's numbers."""

import csv
import json
import math

import ml_collections
import numpy as np
import pytest

from conftest import REPO
from resnet_jax.config import load_config, resolve
from resnet_jax.report.index import make_report
from resnet_jax.studies.study import STUDY_FILE
from resnet_jax.train.workdir import mark_finished, save_config

NUM_STEPS, EVERY = 1200, 100
# (variant, depth) -> final (test, train) error % of each seed. plain-56's spread is the knife-edge the
# digits study shows; residual-110 trained one seed.
FINALS = {("plain", 20): [(10.0, 4.0), (12.0, 5.0), (14.0, 9.0)],
          ("plain", 56): [(80.0, 87.0), (60.0, 63.0), (55.0, 58.0)],
          ("residual", 20): [(5.0, 1.0), (6.0, 2.0), (7.0, 0.0)],
          ("residual", 56): [(4.0, 0.5), (4.5, 1.5), (6.5, 1.0)],
          ("residual", 110): [(3.25, 0.25)]}


def _layers(depth: int) -> list[str]:
  blocks = (depth - 2) // 6
  return ["stem_conv/kernel", *(f"stages/{s}/{b}/conv{c}/kernel" for s in range(3) for b in range(blocks)
                                for c in (1, 2)), "head/kernel"]


def _records(variant: str, depth: int, test: float, train: float, rng: np.random.Generator) -> list[dict]:
  """Metrics lines as the trainer writes them: decaying errors that end exactly at (test, train),
  and per-layer gradient norms every 300 steps (a plain net's growing towards the input early on)."""
  records, layers = [], _layers(depth)
  for step in range(0, NUM_STEPS + 1, EVERY):
    if step % 300 == 0 and step < NUM_STEPS:
      growth = (depth / 10 if variant == "plain" else 0.5) * (1 - step / NUM_STEPS)
      norms = np.exp(growth * np.linspace(1, 0, len(layers)) + rng.normal(0, 0.3, len(layers)))
      records.append({"step": step, **{f"grad_norm/{k}": float(v) for k, v in zip(layers, norms)}})
    if step == 0:
      continue
    final = step == NUM_STEPS
    decay, noise = (0.0, 0.0) if final else (math.exp(-step / 250), rng.normal(0, 2))
    train_error = max(0.0, train + (90 - train) * decay + noise) / 100
    test_error = max(0.0, test + (90 - test) * decay + noise) / 100
    records.append(dict(step=step, train_loss=2 * train_error, train_error=train_error, grad_norm=1.0,
                        learning_rate=0.05, examples_per_second=1000.0, eval_loss=2 * test_error,
                        eval_error=test_error, eval_top5_error=0.0, eval_count=297, epoch=step / 23))
  return records


def write_study_root(root, finals: dict = FINALS, base: str = "configs/digits.py", paper: dict | None = None,
                     overrides: tuple[str, ...] = ()) -> None:
  """A finished study under `root` as `sweep` and `train` leave it, without checkpoints: members with
  several seeds hold seed<s>/ folders (train.num_seeds), one-seed members are named ...-seed0."""
  root.mkdir(parents=True)
  study = root / "study_file.py"
  study.write_text(f'"""A study written by the tests."""\nBASE_CONFIG = "{base}"\nGRID = {{"depth": [20]}}\n'
                   f"PAPER = {paper or {}!r}\n")
  members, rng = [], np.random.default_rng(0)
  for (variant, depth), seeds in finals.items():
    several = len(seeds) > 1
    name = f"{variant}-{depth}" if several else f"{variant}-{depth}-seed0"
    args = dict(depth=depth, variant=variant, **({} if several else {"seed": 0}))
    steps = [f"--config.train.num_steps={NUM_STEPS}", f"--config.train.num_seeds={len(seeds)}"]
    config = load_config(f"{REPO / base}:depth={depth},variant={variant}", [*steps, *overrides])
    config = resolve(config, steps_per_epoch=23)
    member = root / name
    member.mkdir()
    if several:
      save_config(str(member), config)
    for seed, (test, train) in enumerate(seeds):
      workdir = member / f"seed{seed}" if several else member
      workdir.mkdir(exist_ok=True)
      seed_config = ml_collections.ConfigDict(config.to_dict())
      seed_config.seed = seed
      save_config(str(workdir), seed_config)
      records = _records(variant, depth, test, train, rng)
      (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
      mark_finished(str(workdir), dict(records[-1], num_params=1000 * depth))
    members.append(dict(name=name, args=args))
  (root / STUDY_FILE).write_text(json.dumps(dict(study=str(study), base_config=str(REPO / base), overrides=[],
                                                 members=members)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  root = tmp_path_factory.mktemp("report") / "digits"
  write_study_root(root)
  make_report(str(root), formats=("png", "svg"))
  return root / "report"


def _csv(report) -> dict[tuple[str, int], dict]:
  with open(report / "results.csv") as f:
    return {(row["variant"], int(row["depth"])): row for row in csv.DictReader(f)}


def test_table_gives_mean_sample_std_min_max_and_seeds(report):
  rows = _csv(report)
  assert list(rows) == list(FINALS)
  for key, seeds in FINALS.items():
    row = rows[key]
    for column, values in zip(("test", "train"), np.array(seeds).T):
      assert float(row[f"{column}_error_mean"]) == pytest.approx(np.mean(values), abs=1e-9)
      assert float(row[f"{column}_error_min"]) == pytest.approx(np.min(values), abs=1e-9)
      assert float(row[f"{column}_error_max"]) == pytest.approx(np.max(values), abs=1e-9)
      if len(values) > 1:
        assert float(row[f"{column}_error_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-9)
    assert row["seeds"] == str(len(seeds)) and row["steps"] == str(NUM_STEPS)
  assert float(rows[("plain", 20)]["test_error_std"]) == pytest.approx(2.0)  # 10, 12, 14: ddof=1, not 1.63
  assert rows[("residual", 110)]["test_error_std"] == "" and rows[("residual", 110)]["seeds"] == "1"


def test_csv_columns(report):
  with open(report / "results.csv") as f:
    header = next(csv.reader(f))
  assert header == ["variant", "depth", "extra", "params", "seeds", "steps",
                    "test_error_mean", "test_error_std", "test_error_min", "test_error_max",
                    "train_error_mean", "train_error_std", "train_error_min", "train_error_max",
                    "eval_protocol", "paper_test_error", "paper_protocol"]
  row = _csv(report)[("plain", 56)]
  assert row["eval_protocol"] == "single view" and row["paper_test_error"] == "" and row["paper_protocol"] == ""


def test_markdown_shows_the_spread_and_one_seed_without_plus_minus(report):
  table = (report / "results.md").read_text()
  assert table.splitlines()[0] == ("| variant | depth | params | seeds | steps | test error % | test min–max "
                                   "| train error % | train min–max |")
  assert "| plain | 20 | 20,000 | 3 | 1200 | 12.00 ± 2.00 | 10.00–14.00 | 6.00 ± 2.65 | 4.00–9.00 |" in table
  assert "| plain | 56 | 56,000 | 3 | 1200 | 65.00 ± 13.23 | 55.00–80.00 | 69.33 ± 15.50 | 58.00–87.00 |" in table
  assert "| residual | 110 | 110,000 | 1 | 1200 | 3.25 |  | 0.25 |  |" in table


def test_figures_and_index(report):
  for stem in ("errors", "gradient_norms"):
    for fmt in ("png", "svg"):
      assert (report / f"{stem}.{fmt}").stat().st_size > 10_000
  assert not (report / "layer_responses.png").exists()
  index = (report / "index.md").read_text()
  assert "13 models under" in index and "](errors.png)" in index and "](gradient_norms.png)" in index
  assert "No finished run with a checkpoint yet." in index and "Thin lines: each seed" in index


@pytest.mark.parametrize("eval_crops, header, note", [
    ("center", "| test error % (centre crop) |", "the paper's numbers are 10-crop test errors, these runs' centre crop"),
    ("ten", "| test error % (10-crop) |", None),
])
def test_paper_column_names_both_test_protocols(tmp_path, eval_crops, header, note):
  root = tmp_path / "imagenet"
  write_study_root(root, {("plain", 18): [(30.0, 35.0)], ("residual", 18): [(29.0, 33.0)]}, "configs/imagenet.py",
                   paper={("plain", 18): 27.94, ("residual", 18): 27.88},
                   overrides=(f"--config.data.eval_crops={eval_crops}", "--config.train.num_epochs=0"))
  make_report(str(root))
  table, index = (root / "report" / "results.md").read_text(), (root / "report" / "index.md").read_text()
  assert header in table and "| paper (10-crop) |" in table.splitlines()[0]
  assert "| plain | 18 | 18,000 | 1 | 1200 | 30.00 |  | 35.00 |  | 27.94 |" in table
  if note:
    assert note in table and note in index and "--config.data.eval_crops=ten" in index
  else:
    assert "Not like for like" not in index
