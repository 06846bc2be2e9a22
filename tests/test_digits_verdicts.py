"""The digits study's verdicts from a real run: experiments/digits.py swept through the command line,
cut from 300 to 60 iterations (about 30 s on 2 cores), its claims tested on the records it wrote. At 60
iterations only the degradation is clear-cut (plain-56 near chance, plain-20 well below); the other
claims are checked for their form, not their outcome."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO
from resnet_jax.report.runs import load_runs
from resnet_jax.report.tables import origin_note
from resnet_jax.report.verdicts import study_verdicts, write_verdicts
from resnet_jax.studies.study import load_study

SHORT = ["--config.train.num_steps=60", "--config.optimizer.warmup_steps=10", "--config.train.log_every_steps=10",
         "--config.train.eval_every_steps=20", "--config.train.analysis_every_steps=0"]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
  root = tmp_path_factory.mktemp("digits") / "runs"
  sweep = subprocess.run([sys.executable, "-m", "resnet_jax.cli", "sweep", str(REPO / "experiments" / "digits.py"),
                          "--root", str(root), *SHORT], capture_output=True, text=True,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  assert sweep.returncode == 0, sweep.stdout + sweep.stderr
  study = load_runs(str(root))
  write_verdicts(study_verdicts(study), str(root / "verdicts.json"))
  return study, json.loads((root / "verdicts.json").read_text())


def test_every_claim_of_the_study_gets_a_verdict_over_its_three_seeds(verdicts):
  study, found = verdicts
  claims = load_study(str(REPO / "experiments" / "digits.py")).claims
  assert [v["claim"] for v in found] == [c.text for c in claims]
  for verdict, claim in zip(found, claims):
    assert set(verdict) == {"claim", "test", "holds", "verdict", "measured", "statistic"}
    assert verdict["test"] == claim.formal and verdict["holds"] in (True, False, None)
    assert verdict["verdict"] == {True: "holds", False: "fails", None: "undecided at 3 seeds"}[verdict["holds"]]
    statistic = verdict["statistic"]
    assert statistic["method"] == "paired by seed" and statistic["n"] == 3 and statistic["confidence"] == 0.9
    low, high = statistic["interval"]
    assert low <= statistic["mean_difference"] <= high and 0 <= statistic["p_value"] <= 1
    assert verdict["measured"]["lhs"]["seeds"] == verdict["measured"]["rhs"]["seeds"] == [0, 1, 2]
  assert all(r.last_step == 60 and r.finished for r in study.runs) and len(study.runs) == 12


def test_the_degradation_holds_in_every_seed(verdicts):
  _, found = verdicts
  degradation = [v for v in found if v["test"].endswith(": plain-56 > plain-20")]
  assert [v["test"] for v in degradation] == ["train_error: plain-56 > plain-20", "test_error: plain-56 > plain-20"]
  for verdict in degradation:
    assert verdict["holds"] is True and verdict["statistic"]["seeds_on_claims_side"] == 3, verdict


def test_the_runs_record_the_cpu_they_trained_on(verdicts):
  study, _ = verdicts
  environment = json.loads(pathlib.Path(study.runs[0].workdir, "environment.json").read_text())
  assert environment["cpu_model"] and isinstance(environment["cpu_vector_isa"], list)
  if os.path.exists("/proc/cpuinfo"):
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    assert ("avx2" in environment["cpu_vector_isa"]) == ("avx2" in flags)
  assert origin_note(study).startswith(f"Trained on {environment['cpu_model']} (")
