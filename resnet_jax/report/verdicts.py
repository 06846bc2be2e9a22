"""Verdicts: each claim of a study (its CLAIMS) tested over the seeds, so that a report says what
reproduced in a form that means the same on any machine (report/verdicts.json, results.md's table).

Method: the final error % of every finished seed (as in the results table). The difference
d = lhs - rhs is taken seed by seed where both groups have the same seeds (paired), else between the
two means (Welch's unpaired interval), or of lhs's seeds against a number. A two-sided 90 % Student-t
interval of the mean difference decides, i.e. a one-sided t-test at alpha = 0.05 each way: the claim
holds when the interval lies wholly on its side of the threshold (rhs + margin; within: inside
+-margin), fails when it lies wholly on the other side, and is undecided at n seeds when it straddles
the threshold. With fewer than 2 seeds on a side there is no spread to test against: undecided.
No plotting here: the report draws, this module only reads records.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
from scipy import stats

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.report.runs import StudyRuns
from resnet_jax.report.tables import final_errors
from resnet_jax.studies.study import CLAIM_METRICS, Claim, group_name

ALPHA = 0.05  # each one-sided test; the interval is the two-sided 1 - 2 * ALPHA one
VERDICTS_FILE = "verdicts.json"
NOTE = (
    "Each claim tested over the finished seeds' final errors (%): the difference lhs - rhs paired by seed "
    "where both sides have the same seeds, else unpaired (Welch), or against a number (the paper's); "
    f"Δ is its mean in points, with a two-sided {100 * (1 - 2 * ALPHA):.0f} % t-interval (one-sided t-tests "
    f"at α = {ALPHA} each way) and the seeds whose own difference lies on the claim's side. A claim holds "
    "when the interval lies wholly on its side of the threshold, fails when wholly on the other, and is "
    "undecided when it straddles it; with one seed there is no spread to test against. Also as "
    f"[{VERDICTS_FILE}]({VERDICTS_FILE}).")


@dataclasses.dataclass
class Verdict:
  """One claim tested: `holds` True, False, or None (undecided); `statistic` says how."""
  claim: str            # the study's sentence
  test: str             # its formal form, e.g. 'train_error: plain-56 > plain-20'
  holds: bool | None
  verdict: str          # 'holds', 'fails', 'undecided at 3 seeds'
  measured: dict        # lhs and rhs: label, seeds, values and mean (rhs: a number's value only)
  statistic: dict       # method, n, mean difference (points), interval, p, seeds on the claim's side,
                        # standardized effect (the mean difference over the seeds' sd)


def _label(side: tuple | float) -> str:
  return group_name(side) if isinstance(side, tuple) else f"{side:g}"


def _in_group(run, group: tuple) -> bool:
  variant, depth, extra = group
  return (run.variant, run.depth) == (variant, depth) and all(run.args.get(k) == v for k, v in extra)


def _finals(study: StudyRuns, group: tuple, metric: str) -> dict[int, float]:
  """seed -> final `metric` % of the group's finished runs (a finite value only)."""
  column = CLAIM_METRICS.index(metric)
  values = {r.seed: final_errors(r)[column] for r in study.runs if _in_group(r, group) and r.finished is not None}
  return {seed: v for seed, v in sorted(values.items()) if math.isfinite(v)}


def _side(values: dict[int, float]) -> dict:
  return dict(seeds=list(values), values=list(values.values()),
              mean=float(np.mean(list(values.values()))) if values else None)


def _decide(claim: Claim, low: float, high: float) -> bool | None:
  """True when [low, high] lies wholly on the claim's side of its threshold, False wholly on the other."""
  if claim.relation == ">":
    return True if low > claim.margin else False if high < claim.margin else None
  if claim.relation == "<":
    return True if high < claim.margin else False if low > claim.margin else None
  if -claim.margin < low and high < claim.margin:
    return True
  return False if low > claim.margin or high < -claim.margin else None


def _p_value(claim: Claim, mean: float, se: float, df: float) -> float:
  """One-sided p of the claim (within: the larger of its two one-sided tests)."""
  def p(threshold: float, sign: int) -> float:  # of 'sign * (d - threshold) > 0'
    distance = sign * (mean - threshold)
    return float(stats.t.sf(distance / se, df)) if se else float(distance <= 0)
  if claim.relation == ">":
    return p(claim.margin, 1)
  if claim.relation == "<":
    return p(claim.margin, -1)
  return max(p(-claim.margin, 1), p(claim.margin, -1))


@dataclasses.dataclass
class _Estimate:
  """How the mean difference lhs - rhs is estimated, and its standard error."""
  method: str
  sizes: list[int]                    # the seeds behind it: [n] (paired, or against a number), [lhs, rhs] (unpaired)
  differences: np.ndarray | None      # seed by seed (paired, or against a number)
  se: float = math.nan
  df: float = math.nan
  sd: float = math.nan                # the spread the standardized effect is measured in

  @property
  def n(self) -> int:
    return min(self.sizes)

  @property
  def seeds(self) -> str:
    """'3 seeds', '1 seed', '1 and 3 seeds'."""
    return " and ".join(map(str, self.sizes)) + (" seed" if self.sizes == [1] else " seeds")


def _estimate(lhs: dict[int, float], rhs: dict[int, float] | float) -> _Estimate:
  a = np.array(list(lhs.values()))
  if isinstance(rhs, dict) and set(rhs) != set(lhs):
    b = np.array(list(rhs.values()))
    estimate = _Estimate("unpaired (Welch)", [len(a), len(b)], None)
    if estimate.n >= 2:
      va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
      ea, eb = va / len(a), vb / len(b)
      estimate.se, estimate.sd = math.sqrt(ea + eb), math.sqrt((va + vb) / 2)
      estimate.df = ((ea + eb) ** 2 / (ea ** 2 / (len(a) - 1) + eb ** 2 / (len(b) - 1)) if estimate.se
                     else len(a) + len(b) - 2)
    return estimate
  paired = isinstance(rhs, dict)
  differences = a - (np.array([rhs[s] for s in lhs]) if paired else rhs)
  estimate = _Estimate("paired by seed" if paired else "one sample against the number", [len(a)], differences)
  if estimate.n >= 2:
    estimate.sd = float(np.std(differences, ddof=1))
    estimate.se, estimate.df = estimate.sd / math.sqrt(estimate.n), estimate.n - 1
  return estimate


def judge(claim: Claim, lhs: dict[int, float], rhs: dict[int, float] | float) -> Verdict:
  """Test `claim` on the final errors of its sides' seeds (seed -> %; rhs may be a number)."""
  number = isinstance(rhs, float)
  measured = dict(lhs=dict(label=_label(claim.lhs), **_side(lhs)),
                  rhs=dict(label=_label(claim.rhs), **(dict(value=rhs) if number else _side(rhs))))
  estimate = _estimate(lhs, rhs)
  mean = measured["lhs"]["mean"] - (rhs if number else measured["rhs"]["mean"]) if lhs and (number or rhs) else None
  statistic = dict(method=estimate.method, n=estimate.n, alpha=ALPHA, confidence=1 - 2 * ALPHA, mean_difference=mean)
  if len(estimate.sizes) > 1:
    statistic["n_each"] = estimate.sizes
  elif estimate.n:  # a single difference lies on the claim's side when the claim holds for it alone
    statistic["seeds_on_claims_side"] = sum(_decide(claim, d, d) is True for d in estimate.differences)
  if estimate.n < 2:
    statistic["note"] = (f"no finished seed of {_label(claim.rhs if lhs else claim.lhs)}" if estimate.n == 0
                         else "one seed: no spread to test against")
    return Verdict(claim.text, claim.formal, None, f"undecided at {estimate.seeds}", measured, statistic)
  half = float(stats.t.ppf(1 - ALPHA, estimate.df)) * estimate.se
  holds = _decide(claim, mean - half, mean + half)
  statistic.update(interval=[mean - half, mean + half], df=float(estimate.df),
                   p_value=_p_value(claim, mean, estimate.se, estimate.df),
                   standardized_effect=mean / estimate.sd if estimate.sd else None)
  verdict = {True: "holds", False: "fails", None: f"undecided at {estimate.seeds}"}[holds]
  return Verdict(claim.text, claim.formal, holds, verdict, measured, statistic)


def study_verdicts(study: StudyRuns) -> list[Verdict]:
  """Every claim of the study tested on its finished runs."""
  return [judge(c, _finals(study, c.lhs, c.metric),
                c.rhs if isinstance(c.rhs, float) else _finals(study, c.rhs, c.metric)) for c in study.claims]


def write_verdicts(verdicts: list[Verdict], path: str) -> None:
  storage.write_text(path, json.dumps([dataclasses.asdict(v) for v in verdicts], indent=2))


def _signed(value: float) -> str:
  return f"{value:+.2f}"


def _statistic(s: dict) -> str:
  """'paired by seed, n = 3: Δ +35.78, 90 % CI [+17.94, +53.62], p = 0.014; 3/3 seeds on its side'."""
  text = f"{s['method']}, n = {' and '.join(map(str, s.get('n_each', [s['n']])))}"
  if s.get("mean_difference") is not None:
    text += f": Δ {_signed(s['mean_difference'])}"
  if "interval" in s:
    low, high = s["interval"]
    text += f", {100 * s['confidence']:.0f} % CI [{_signed(low)}, {_signed(high)}], p = {s['p_value']:.2g}"
  if "seeds_on_claims_side" in s:
    text += f"; {s['seeds_on_claims_side']}/{s['n']} seed{'s' * (s['n'] != 1)} on its side"
  return text + (f"; {s['note']}" if "note" in s else "")


def to_markdown(verdicts: list[Verdict]) -> str:
  """The table of results.md: claim, measured means, statistic, verdict."""
  lines = ["| claim | measured (mean %) | statistic | verdict |", "|---|---|---|---|"]
  for v in verdicts:
    lhs, rhs = v.measured["lhs"], v.measured["rhs"]
    sides = [f"{side['label']} " + (f"{side['mean']:.2f}" if side["mean"] is not None else "–")
             for side in (lhs, rhs) if "mean" in side]
    measured = " vs ".join(sides + ([f"{rhs['value']:g}"] if "value" in rhs else []))
    verdict = v.verdict if v.holds is None else f"**{v.verdict}**"
    lines.append(f"| {v.claim} (`{v.test}`) | {measured} | {_statistic(v.statistic)} | {verdict} |")
  return "\n".join(lines) + "\n"


def read_verdicts(path: str) -> list[dict]:
  """The verdicts of a verdicts.json, a report folder or a sweep root (its report/)."""
  for candidate in (path, storage.join(path, VERDICTS_FILE), storage.join(path, "report", VERDICTS_FILE)):
    if storage.isfile(candidate):
      verdicts = json.loads(storage.read_text(candidate))
      if not isinstance(verdicts, list) or not all(isinstance(v, dict) and "claim" in v and "holds" in v
                                                   for v in verdicts):
        raise ConfigError(f"{candidate} is not a verdicts file: expected a list of {{claim, holds, ...}}")
      return verdicts
  raise FileNotFoundError(f"{path} has no {VERDICTS_FILE}: give a report folder, a sweep root or a {VERDICTS_FILE} "
                          "(`resnet-jax report <root>` writes one for a study with CLAIMS)")


def compare(first: str, second: str) -> tuple[str, bool]:
  """Both reports' verdicts claim by claim (matched by the claim's sentence) and whether every claim
  agrees: the same verdict (holds, fails or undecided) on both sides and no claim on one side only."""
  a, b = ({v["claim"]: v for v in read_verdicts(p)} for p in (first, second))
  for path, found in ((first, a), (second, b)):
    if not found:
      raise ConfigError(f"{path}: its study states no CLAIMS, so there are no verdicts to compare")
  lines = [f"A: {first}", f"B: {second}", "", "| claim | A | B | agree |", "|---|---|---|---|"]
  claims, agreed = list(dict.fromkeys([*a, *b])), 0
  for claim in claims:
    left, right = a.get(claim), b.get(claim)
    cells = [_brief(v) for v in (left, right)]
    if left is None or right is None:
      agree = f"no: only in {'A' if right is None else 'B'}"
    elif left["holds"] == right["holds"]:
      agree, agreed = "yes", agreed + 1
    else:
      agree = "no: opposite" if None not in (left["holds"], right["holds"]) else "no: one undecided"
    lines.append(f"| {claim} | {cells[0]} | {cells[1]} | {agree} |")
  lines += ["", f"{agreed} of {len(claims)} claims agree."]
  return "\n".join(lines), agreed == len(claims)


def _brief(verdict: dict | None) -> str:
  """'holds (Δ +76.02, n = 3)' for a compare table cell."""
  if verdict is None:
    return "–"
  s = verdict.get("statistic", {})
  detail = ", ".join(filter(None, [f"Δ {_signed(s['mean_difference'])}" if s.get("mean_difference") is not None
                                   else "", f"n = {s['n']}" if "n" in s else ""]))
  return verdict.get("verdict", str(verdict["holds"])) + (f" ({detail})" if detail else "")
