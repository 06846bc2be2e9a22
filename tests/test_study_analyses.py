"""A study file's ANALYSES: the report runs them on the first finished seed of every group, once,
and places their figures; bad names and options are refused in one line."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from _analysis_workdirs import trained_root
from resnet_jax.errors import ConfigError
from resnet_jax.report.index import make_report
from resnet_jax.studies.study import load_study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = f'''BASE_CONFIG = "{REPO}/configs/digits.py"
GRID = {{"depth": [8], "variant": ["plain", "residual"]}}
ANALYSES = {{"landscape": {{"grid": 3, "line": 5, "num_examples": 50}}, "lesion": {{"draws": 1}}}}
'''


@pytest.fixture
def study_root(tmp_path_factory, tmp_path):
  """A copy of the trained work directories without analyses, listed by a study that asks for both."""
  root = tmp_path / "runs"
  shutil.copytree(trained_root(tmp_path_factory), root,
                  ignore=lambda folder, names: [n for n in names if n == "analysis"])
  study = tmp_path / "tiny.py"
  study.write_text(STUDY)
  members = [dict(name=f"{v}-8", args=dict(depth=8, variant=v)) for v in ("plain", "residual")]
  # A second seed as a member of its own (a GRID over seeds): the same weights, recorded as seed 1.
  shutil.copytree(root / "plain-8", root / "plain-8-seed1")
  config = json.loads((root / "plain-8-seed1" / "config.json").read_text())
  (root / "plain-8-seed1" / "config.json").write_text(json.dumps(dict(config, seed=1)))
  members.append(dict(name="plain-8-seed1", args=dict(depth=8, variant="plain", seed=1)))
  (root / "study.json").write_text(json.dumps(dict(study=str(study), members=members)))
  return root


def test_report_runs_the_studys_analyses_once_and_shows_them(study_root, capsys):
  index = make_report(str(study_root))
  out = capsys.readouterr().out
  text = open(index).read()
  for title in ("## Loss landscapes (Li et al. 2018)", "## Loss landscapes: 1-D slices", "## Lesion study"):
    assert title in text
  for stem in ("landscapes", "landscape_slices", "lesions"):
    assert (study_root / "report" / f"{stem}.png").stat().st_size > 0
  first = {"plain-8": study_root / "plain-8", "residual-8": study_root / "residual-8" / "seed0"}
  for member, folder in first.items():
    for name, options in (("landscape", dict(grid=3, line=5, num_examples=50, span=1.0, seed=0)),
                          ("lesion", dict(draws=1, seed=0))):
      record = json.loads((folder / "analysis" / f"{name}.json").read_text())
      assert record["key"]["options"] == options
      assert f"{name}: {study_root / member} (" in out
  for later_seed in (study_root / "residual-8" / "seed1", study_root / "plain-8-seed1"):
    assert not (later_seed / "analysis").exists()  # the first seed only
  written = {p: p.stat().st_mtime_ns for p in study_root.rglob("analysis/*.json")}
  make_report(str(study_root))
  assert {p: p.stat().st_mtime_ns for p in study_root.rglob("analysis/*.json")} == written


@pytest.mark.parametrize("analyses, message", [
    ('["landscape"]', "ANALYSES must be a dict"),
    ('{"hessian": {}}', "ANALYSES key 'hessian' is invalid: allowed values are landscape, lesion"),
    ('{"landscape": {"grids": 3}}', r"ANALYSES\['landscape'\] has unknown options \['grids'\]: allowed are grid,"),
    ('{"landscape": {"grid": 0}}', r"ANALYSES\['landscape'\]: landscape --grid=0 is invalid"),
    ('{"lesion": 3}', r"ANALYSES\['lesion'\] must be a dict"),
])
def test_bad_analyses_are_refused_in_one_line(tmp_path, analyses, message):
  study = tmp_path / "x.py"
  study.write_text(f'BASE_CONFIG = "configs/digits.py"\nGRID = {{"depth": [8]}}\nANALYSES = {analyses}\n')
  with pytest.raises(ConfigError, match=f"study .*x.py: {message}"):
    load_study(str(study))


def test_members_analysed_at_once_get_the_records_of_one_process(study_root, tmp_path):
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("needs 2 cores (CI has them)")
  from resnet_jax.report.index import ANALYSES_LOG, run_member_analyses
  alone = tmp_path / "alone"
  shutil.copytree(study_root, alone)
  make_report(str(study_root))  # two members lack records: one process per core
  first = {"plain-8": "", "residual-8": "seed0"}
  for member, folder in first.items():
    assert "landscape" in (study_root / member / ANALYSES_LOG).read_text()
    run_member_analyses(str(alone), str(alone / member), ("png",))  # in this process, one after another
    for name in ("landscape", "lesion"):
      records = [json.loads((root / member / folder / "analysis" / f"{name}.json").read_text())
                 for root in (study_root, alone)]
      assert [{k: v for k, v in r.items() if k not in ("seconds", "workdir")} for r in records] == \
          [{k: v for k, v in records[1].items() if k not in ("seconds", "workdir")}] * 2
