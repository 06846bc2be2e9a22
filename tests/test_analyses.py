"""The analyses' one registry (resnet_jax/analysis/analyses.py): an analysis added there, with its own compute and
figure modules, is a `resnet-jax analyze` subcommand with its options, a study's ANALYSES key, and the report's
figures; nothing else is edited."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

from resnet_jax import cli
from resnet_jax.analysis import analyses
from resnet_jax.analysis.trained import check_options, option
from resnet_jax.errors import ConfigError
from resnet_jax.report import analyze

FIGURES = '''
import json


def draw_model(record, stem, formats):
  paths = [f"{stem}.{fmt}" for fmt in formats]
  for path in paths:
    open(path, "w").write(json.dumps(record))
  return paths


def plot_counts(study, stem, formats):
  return [f"{stem}.{fmt}" for fmt in formats]


STUDY_FIGURES = [("Counts", plot_counts, "counts", "How many there are.")]
'''


@dataclasses.dataclass(frozen=True)
class CountOptions:
  scale: int = option(2, "what each count is multiplied by")
  num_things: int = option(1, "things counted", flag="--things")

  def __post_init__(self):
    check_options(self, "count", ("scale", "num_things"), lambda v: isinstance(v, int) and v >= 1,
                  "whole numbers >= 1")


def run_count(workdir, options, *, all_seeds=False, written=None):
  del all_seeds
  stem = os.path.join(workdir, "count")
  record = dict(count=options.scale * options.num_things)
  with open(stem + ".json", "w") as f:
    json.dump(record, f)
  written(record, stem)
  return [stem + ".json"]


@pytest.fixture
def count(tmp_path, monkeypatch):
  (tmp_path / "count_plots.py").write_text(FIGURES)
  monkeypatch.syspath_prepend(str(tmp_path))
  entry = analyses.Analysis("count", "how many there are", CountOptions, run_count,
                            lambda path: f"{path}: {json.load(open(path))['count']}", "count_plots")
  monkeypatch.setitem(analyses.ANALYSES, "count", entry)
  yield entry
  sys.modules.pop("count_plots", None)


def test_a_registered_analysis_is_a_command_with_its_options(count, tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  assert cli.main(["analyze", "count", "--workdir", str(workdir), "--scale", "3", "--things", "4",
                   "--formats", "png,svg"]) == 0
  assert capsys.readouterr().out.strip() == f"{workdir}/count.json: 12"
  assert json.loads((workdir / "count.png").read_text()) == {"count": 12}  # drawn by its figures module
  assert (workdir / "count.svg").exists()
  assert cli.main(["analyze", "count", "--workdir", str(workdir), "--things", "0"]) == cli.EXIT_BAD_INPUT
  assert capsys.readouterr().err.strip() == ("resnet-jax analyze: error: count --things=0 is invalid: allowed values "
                                             "are whole numbers >= 1")


def test_a_registered_analysis_is_a_study_key_and_the_reports_figures(count):
  assert analyses.make_options("count", {"scale": 5}, "study x") == CountOptions(scale=5)
  with pytest.raises(ConfigError, match=r"study x: ANALYSES\['count'\] has unknown options \['size'\]"):
    analyses.make_options("count", {"size": 5}, "study x")
  (title, plot, stem, caption), = analyze.figures("count").STUDY_FIGURES
  assert (title, stem) == ("Counts", "counts") and plot(None, "/r/counts", ("png",)) == ["/r/counts.png"]


def test_every_registered_analysis_has_its_figures():
  for name, entry in analyses.ANALYSES.items():
    figures = analyze.figures(name)
    assert callable(figures.draw_model) and figures.STUDY_FIGURES, name
    assert all(field.metadata["help"] for field in dataclasses.fields(entry.options)), name
