"""The study table: one row per (variant, depth) over seeds, beside the paper's number (markdown and CSV)."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np

from resnet_jax.experiments.runs import Run, StudyRuns


@dataclasses.dataclass
class Row:
  variant: str
  depth: int
  extra: str
  params: int | None
  seeds: int
  steps: str                # 'N', or 'done/N' while a member is unfinished
  test_error_mean: float    # %, last eval record of each seed
  test_error_std: float     # %, sample std over seeds (0 with one seed)
  test_error_best: float
  train_error_mean: float   # %, last logged training error (mean over its logging interval)
  paper_test_error: float | None


def final_errors(run: Run) -> tuple[float, float]:
  """(test, train) error % of a run: its last eval record and its last training record."""
  test = [r["eval_error"] for r in run.records if "eval_error" in r]
  train = [r["train_error"] for r in run.records if "train_error" in r]
  return (100 * test[-1] if test else math.nan), (100 * train[-1] if train else math.nan)


def table_rows(study: StudyRuns) -> list[Row]:
  rows = []
  for (variant, depth, extra), runs in study.groups().items():
    test, train = map(np.array, zip(*(final_errors(r) for r in runs)))
    params = next((r.finished["num_params"] for r in runs if r.finished), None)
    done, total = min(r.last_step for r in runs), max(r.num_steps for r in runs)
    rows.append(Row(variant, depth, " ".join(f"{k}={v}" for k, v in extra), params, len(runs),
                    str(total) if done == total else f"{done}/{total}",
                    float(np.mean(test)), float(np.std(test, ddof=1)) if len(runs) > 1 else 0.0,
                    float(np.min(test)), float(np.mean(train)), study.paper.get((variant, depth))))
  return rows


def _pct(value: float | None) -> str:
  return "" if value is None or math.isnan(value) else f"{value:.2f}"


def to_markdown(rows: list[Row]) -> str:
  with_extra = any(r.extra for r in rows)
  header = ["variant", "depth", *(["setting"] if with_extra else []), "params", "seeds", "steps",
            "test error %", "best", "train error %", "paper"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in rows:
    test = _pct(r.test_error_mean) + (f" ± {r.test_error_std:.2f}" if r.seeds > 1 else "")
    cells = [r.variant, str(r.depth), *([r.extra] if with_extra else []),
             f"{r.params:,}" if r.params else "", str(r.seeds), r.steps, test,
             _pct(r.test_error_best), _pct(r.train_error_mean), _pct(r.paper_test_error)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_csv(rows: list[Row], path: str) -> None:
  fields = [f.name for f in dataclasses.fields(Row)]
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: ("" if v is None else v) for k, v in dataclasses.asdict(row).items()})
