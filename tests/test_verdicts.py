"""Verdicts on synthetic records (no training): a claim that holds, one that fails, undecided ones, the
statistics checked against scipy's own tests, the report's verdicts.json and table, bad claims refused in
one line, and `resnet-jax compare` of two reports."""

import json

import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from resnet_jax import cli
from resnet_jax.errors import ConfigError
from resnet_jax.report.index import make_report
from resnet_jax.report.runs import Run, StudyRuns
from resnet_jax.report.verdicts import compare, judge, study_verdicts
from resnet_jax.studies.study import Claim, load_study
from test_report import FINALS, write_study_root

# On test_report's FINALS (test, train error % of seeds 0-2; residual-110 seed 0 only).
CLAIMS = '''
from resnet_jax.studies.study import Claim
CLAIMS = [
    Claim("plain-56 trains worse than plain-20", "train_error", ("plain", 56), ">", ("plain", 20)),
    Claim("residual-20 tests worse than plain-20", "test_error", ("residual", 20), ">", ("plain", 20)),
    Claim("residual-56 trains better than residual-20", "train_error", ("residual", 56), "<", ("residual", 20)),
    Claim("residual-110 tests better than residual-56", "test_error", ("residual", 110), "<", ("residual", 56)),
    Claim("residual-20 reaches 6 % test error", "test_error", ("residual", 20), "within", 6.0, margin=2.0),
    Claim("residual-20 reaches the paper's 8.75 %", "test_error", ("residual", 20), "within", 8.75, margin=0.5),
]
'''
T_95_2 = stats.t.ppf(0.95, 2)  # the 90 % interval's t of 3 seeds


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  root = tmp_path_factory.mktemp("verdicts") / "study"
  write_study_root(root)
  study_file = root / "study_file.py"
  study_file.write_text(study_file.read_text().replace('GRID = {"depth": [20]}', 'GRID = {"depth": [20, 56, 110], '
                                                      '"variant": ["plain", "residual"]}') + CLAIMS)
  make_report(str(root))
  return root / "report"


def _verdicts(report) -> dict[str, dict]:
  return {v["claim"]: v for v in json.loads((report / "verdicts.json").read_text())}


def test_a_claim_that_holds_paired_by_seed(report):
  verdict = _verdicts(report)["plain-56 trains worse than plain-20"]
  differences = np.array([87.0, 63.0, 58.0]) - np.array([4.0, 5.0, 9.0])
  half = T_95_2 * np.std(differences, ddof=1) / np.sqrt(3)
  s = verdict["statistic"]
  assert verdict["holds"] is True and verdict["verdict"] == "holds"
  assert s["method"] == "paired by seed" and s["n"] == 3 and s["seeds_on_claims_side"] == 3
  assert s["mean_difference"] == pytest.approx(differences.mean())
  assert s["interval"] == pytest.approx([differences.mean() - half, differences.mean() + half])
  assert s["p_value"] == pytest.approx(stats.ttest_rel([87, 63, 58], [4, 5, 9], alternative="greater").pvalue)
  assert s["standardized_effect"] == pytest.approx(differences.mean() / np.std(differences, ddof=1))
  assert verdict["measured"]["lhs"] == dict(label="plain-56", seeds=[0, 1, 2], values=pytest.approx([87, 63, 58]),
                                            mean=pytest.approx(208 / 3))


def test_a_claim_that_fails(report):
  verdict = _verdicts(report)["residual-20 tests worse than plain-20"]
  assert verdict["holds"] is False and verdict["verdict"] == "fails"
  assert verdict["statistic"]["interval"][1] < 0 and verdict["statistic"]["seeds_on_claims_side"] == 0


def test_undecided_when_the_interval_straddles_and_with_one_seed(report):
  found = _verdicts(report)
  straddles = found["residual-56 trains better than residual-20"]  # differences -0.5, -0.5, +1
  assert straddles["holds"] is None and straddles["verdict"] == "undecided at 3 seeds"
  low, high = straddles["statistic"]["interval"]
  assert low < 0 < high and straddles["statistic"]["seeds_on_claims_side"] == 2
  one_seed = found["residual-110 tests better than residual-56"]
  assert one_seed["holds"] is None and one_seed["verdict"] == "undecided at 1 and 3 seeds"
  assert one_seed["statistic"]["method"] == "unpaired (Welch)" and "interval" not in one_seed["statistic"]
  assert one_seed["statistic"]["n"] == 1 and one_seed["statistic"]["n_each"] == [1, 3]
  assert one_seed["statistic"]["mean_difference"] == pytest.approx(3.25 - 5.0)


def test_against_a_number_within_a_margin(report):
  found = _verdicts(report)
  near, paper = found["residual-20 reaches 6 % test error"], found["residual-20 reaches the paper's 8.75 %"]
  assert near["holds"] is True and near["statistic"]["method"] == "one sample against the number"
  assert near["statistic"]["interval"] == pytest.approx([-T_95_2 / np.sqrt(3), T_95_2 / np.sqrt(3)])  # of 6 - 6
  assert paper["holds"] is False and paper["statistic"]["mean_difference"] == pytest.approx(6 - 8.75)
  assert near["measured"]["rhs"] == dict(label="6", value=6.0)


def test_results_md_and_the_index_show_the_verdicts(report):
  results = (report / "results.md").read_text()
  assert results.splitlines()[0].startswith("| variant | depth |")  # the results table first, as before
  verdicts = results[results.index("## Verdicts"):]
  assert verdicts.splitlines()[2] == "| claim | measured (mean %) | statistic | verdict |"
  assert ("| plain-56 trains worse than plain-20 (`train_error: plain-56 > plain-20`) | plain-56 69.33 vs plain-20 "
          "6.00 | paired by seed, n = 3: Δ +63.33, 90 % CI [+33.63, +93.03], p = 0.012; 3/3 seeds on its side "
          "| **holds** |") in verdicts
  assert "| residual-20 6.00 vs 8.75 |" in verdicts
  assert "n = 1 and 3: Δ -1.75; one seed: no spread to test against | undecided at 1 and 3 seeds |" in verdicts
  assert "[verdicts.json](verdicts.json)" in verdicts
  index = (report / "index.md").read_text()
  assert "## Verdicts" in index and "[verdicts.json](verdicts.json)" in index
  assert index.index("## Results") < index.index("## Verdicts") < index.index("## Error curves")


def test_a_study_without_claims_writes_an_empty_list_and_no_section(tmp_path):
  root = tmp_path / "study"
  write_study_root(root, finals={k: v for k, v in FINALS.items() if k[0] == "plain"})
  make_report(str(root))
  assert json.loads((root / "report" / "verdicts.json").read_text()) == []
  assert "Verdicts" not in (root / "report" / "results.md").read_text()
  assert "Verdicts" not in (root / "report" / "index.md").read_text()


def test_welch_interval_when_the_seeds_differ():
  claim = Claim("a above b", "test_error", ("plain", 56), ">", ("plain", 20))
  a, b = {0: 80.0, 1: 70.0, 2: 75.0}, {3: 10.0, 4: 14.0}
  verdict = judge(claim, a, b)
  expected = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False, alternative="greater")
  assert verdict.holds is True and verdict.statistic["method"] == "unpaired (Welch)"
  assert verdict.statistic["p_value"] == pytest.approx(expected.pvalue)
  assert verdict.statistic["df"] == pytest.approx(expected.df)


def test_no_finished_seed_is_undecided_and_named():
  verdict = judge(Claim("a below b", "train_error", ("plain", 56), "<", ("plain", 20)), {}, {0: 3.0})
  assert verdict.holds is None and verdict.statistic["note"] == "no finished seed of plain-56"


@pytest.mark.parametrize("claims, message", [
    ('[Claim("x", "error", ("plain", 20), ">", ("plain", 20))]',
     r"CLAIMS\[0\].metric 'error' is invalid: allowed values are test_error, train_error"),
    ('[Claim("x", "test_error", ("plain", 20), ">=", ("plain", 20))]',
     r"CLAIMS\[0\].relation '>=' is invalid: allowed values are >, <, within"),
    ('[Claim("x", "test_error", ("plain", 32), ">", ("plain", 20))]',
     r"CLAIMS\[0\].lhs \('plain', 32\) is not a \(variant, depth\) group of the study: allowed values are "
     r"\('plain', 20\), \('residual', 20\)$"),
    ('[Claim("x", "test_error", ("plain", 20), ">", "paper")]',
     r"CLAIMS\[0\].rhs 'paper' is not a \(variant, depth\) group .* \('residual', 20\), or a number$"),
    ('[Claim("x", "test_error", ("plain", 20), "within", 8.75)]', r"CLAIMS\[0\].margin 0.0 must be a number of points "
     r"above 0"),
    ('[Claim("", "test_error", ("plain", 20), ">", 8.75)]', r"CLAIMS\[0\].text must be a sentence"),
    ('[("plain", 20)]', r"CLAIMS\[0\] must be Claim\(text, metric, lhs, relation, rhs, margin=0.0\)"),
    ('Claim("x", "test_error", ("plain", 20), ">", 8.75)', "CLAIMS must be a list of Claim"),
])
def test_bad_claims_fail_in_one_line_naming_the_file_field_and_allowed_values(tmp_path, claims, message):
  study = tmp_path / "x.py"
  study.write_text(f'from resnet_jax.studies.study import Claim\nBASE_CONFIG = "configs/digits.py"\n'
                   f'GRID = {{"depth": [20], "variant": ["plain", "residual"], "seed": [0, 1]}}\nCLAIMS = {claims}\n')
  with pytest.raises(ConfigError, match=f"^study .*x.py: {message}") as error:
    load_study(str(study))
  assert "\n" not in str(error.value)


def _grid_study(tmp_path, claims: str):
  study = tmp_path / "x.py"
  study.write_text('from resnet_jax.studies.study import Claim\nBASE_CONFIG = "configs/digits.py"\n'
                   'GRID = {"depth": [20], "variant": ["residual"], "batch": [128, 1024], "lr_scaling": ["linear", "none"]}\n'
                   'EXCLUDE = [{"batch": 128, "lr_scaling": "none"}]\n'
                   f'CLAIMS = {claims}\n')
  return load_study(str(study))


def test_where_the_grid_varies_other_keys_a_group_names_their_values(tmp_path):
  claim = ('[Claim("the rule helps", "test_error", ("residual", 20, {"lr_scaling": "linear", "batch": 1024}), "<", '
           '("residual", 20, {"batch": 1024, "lr_scaling": "none"}))]')
  (checked,) = _grid_study(tmp_path, claim).claims
  assert checked.lhs == ("residual", 20, (("batch", 1024), ("lr_scaling", "linear")))  # GRID's order of the keys
  assert checked.formal == "test_error: residual-20-batch1024-lr_scalinglinear < residual-20-batch1024-lr_scalingnone"
  allowed = ("allowed values are ('residual', 20, {'batch': 128, 'lr_scaling': 'linear'}), ('residual', 20, "
             "{'batch': 1024, 'lr_scaling': 'linear'}), ('residual', 20, {'batch': 1024, 'lr_scaling': 'none'})")
  for group in ('("residual", 20)', '("residual", 20, {"batch": 1024})', '("residual", 20, {"batch": 128, "lr_scaling": "none"})'):
    with pytest.raises(ConfigError) as error:  # the excluded member's group is not one of the study's
      _grid_study(tmp_path, f'[Claim("x", "test_error", {group}, ">", 8.75)]')
    message = str(error.value)
    assert "CLAIMS[0].lhs" in message and "is not a (variant, depth, {'batch': ..., 'lr_scaling': ...}) group" in message
    assert allowed in message and "\n" not in message


def test_verdicts_compare_the_groups_the_other_keys_name():
  """Seeds 0-1 of three groups that differ in batch and the rule: each claim reads its own group's runs."""
  finals = {(128, "linear"): [8.4, 8.2], (1024, "linear"): [10.2, 10.5], (1024, "none"): [11.4, 10.9]}
  runs = [Run(f"b{batch}-{rule}-s{seed}", "", "", 0, "residual", 20, seed, (("batch", batch), ("lr_scaling", rule)),
              100, [dict(step=100, train_error=0.0, eval_error=error / 100)], {}, dict(batch=batch, lr_scaling=rule,
                                                                                      seed=seed))
          for (batch, rule), errors in finals.items() for seed, error in enumerate(errors)]
  group = lambda batch, rule: ("residual", 20, (("batch", batch), ("lr_scaling", rule)))
  claims = [Claim("the rule helps", "test_error", group(1024, "linear"), "<", group(1024, "none")),
            Claim("batch 1024 with the rule is within 1 point of 128", "test_error", group(1024, "linear"), "within",
                  group(128, "linear"), margin=1.0)]
  helps, near = study_verdicts(StudyRuns("", "x", "", {}, runs, [], {}, claims))
  assert helps.measured["lhs"]["values"] == pytest.approx([10.2, 10.5]) and helps.measured["rhs"]["values"] == \
      pytest.approx([11.4, 10.9])
  assert helps.statistic["method"] == "paired by seed" and helps.statistic["seeds_on_claims_side"] == 2
  assert near.statistic["mean_difference"] == pytest.approx((10.2 + 10.5 - 8.4 - 8.2) / 2)
  assert near.measured["lhs"]["label"] == "residual-20-batch1024-lr_scalinglinear"


@pytest.mark.parametrize("study", ["digits", "fashion_mnist_cpu", "fashion_mnist", "cifar10", "imagenet", "large_batch"])
def test_shipped_studies_state_claims(study):
  claims = load_study(str(REPO / "experiments" / f"{study}.py")).claims
  assert claims and len({c.text for c in claims}) == len(claims)  # compare matches claims by their sentence


def _verdicts_file(path, holds: dict[str, bool | None]):
  path.write_text(json.dumps([dict(claim=claim, holds=h, verdict={True: "holds", False: "fails"}.get(h, "undecided"),
                                   statistic=dict(n=3, mean_difference=1.0)) for claim, h in holds.items()]))
  return str(path)


def test_compare_says_which_claims_agree(tmp_path, capsys):
  (tmp_path / "b" / "report").mkdir(parents=True)
  a = _verdicts_file(tmp_path / "a.json", {"deep plain worse": True, "deep residual better": None})
  b = _verdicts_file(tmp_path / "b" / "report" / "verdicts.json", {"deep plain worse": True,
                                                                    "deep residual better": False})
  table, agree = compare(a, str(tmp_path / "b"))  # a file, and a sweep root
  assert not agree and "1 of 2 claims agree." in table
  assert "| deep plain worse | holds (Δ +1.00, n = 3) | holds (Δ +1.00, n = 3) | yes |" in table
  assert "| deep residual better | undecided (Δ +1.00, n = 3) | fails (Δ +1.00, n = 3) | no: one undecided |" in table
  assert cli.main(["compare", a, a]) == 0 and "2 of 2 claims agree." in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_status:
    cli.main(["compare", a, str(tmp_path / "b" / "report")])
  assert exit_status.value.code == 1
  c = _verdicts_file(tmp_path / "c.json", {"deep plain worse": False})
  table, _ = compare(b, c)
  assert "| deep plain worse | holds (Δ +1.00, n = 3) | fails (Δ +1.00, n = 3) | no: opposite |" in table
  assert "| deep residual better | fails (Δ +1.00, n = 3) | – | no: only in A |" in table


def test_compare_refuses_folders_without_verdicts_in_one_line(tmp_path, capsys):
  assert cli.main(["compare", str(tmp_path), str(tmp_path)]) == 2
  assert "has no verdicts.json" in capsys.readouterr().err
  (tmp_path / "verdicts.json").write_text("[]")
  assert cli.main(["compare", str(tmp_path), str(tmp_path)]) == 2
  assert "states no CLAIMS" in capsys.readouterr().err
