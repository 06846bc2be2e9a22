"""The study table: one row per (variant, depth) with the spread over its seeds, beside the paper's
number (markdown and CSV).

Each final error is summarised over the seeds by its mean, sample std (ddof=1; none with one seed),
min and max. The test protocol is named on both sides: the paper's ImageNet numbers are 10-crop,
a run's may be one centre crop, and the two must not be read as like for like.
"""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np

from resnet_jax import storage
from resnet_jax.data.registry import was_streamed
from resnet_jax.report.runs import Run, StudyRuns
from resnet_jax.train.workdir import ENVIRONMENT_FILE, recorded_config

# How the paper tested, by dataset: ImageNet (Tables 2-3) with 10 crops, CIFAR-10 (Table 6) on the
# single 32x32 view.
PAPER_PROTOCOL = {"imagenet2012": "10-crop", "cifar10": "single view"}
RUN_PROTOCOL = {"ten": "10-crop", "center": "centre crop"}  # data.eval_crops of streamed datasets


@dataclasses.dataclass
class Row:
  """Final errors (%) of one (variant, depth, setting) over its seeds; std is NaN with one seed."""
  variant: str
  depth: int
  extra: str
  params: int | None
  seeds: int
  steps: str                # 'N', or 'done/N' while a seed is unfinished
  test_error_mean: float    # the last eval record of each seed
  test_error_std: float
  test_error_min: float
  test_error_max: float
  train_error_mean: float   # the last logged training error (mean over its logging interval)
  train_error_std: float
  train_error_min: float
  train_error_max: float
  eval_protocol: str        # how these runs measured test error
  paper_test_error: float | None
  paper_protocol: str       # how the paper measured it; '' where unknown or no number


def final_errors(run: Run) -> tuple[float, float]:
  """(test, train) error % of a run: its last eval record and its last training record."""
  test = [r["eval_error"] for r in run.records if "eval_error" in r]
  train = [r["train_error"] for r in run.records if "train_error" in r]
  return (100 * test[-1] if test else math.nan), (100 * train[-1] if train else math.nan)


def _run_protocol(run: Run) -> tuple[str, str]:
  """(dataset, test protocol) of a run: streamed datasets follow data.eval_crops; in-memory ones
  evaluate the whole image once."""
  config = recorded_config(run.workdir)
  return config.data.name, RUN_PROTOCOL[config.data.eval_crops] if was_streamed(config) else "single view"


def _spread(values: np.ndarray) -> tuple[float, float, float, float]:
  """(mean, sample std, min, max); the std is NaN for a single value."""
  std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
  return float(np.mean(values)), std, float(np.min(values)), float(np.max(values))


def table_rows(study: StudyRuns) -> list[Row]:
  rows = []
  for (variant, depth, extra), runs in study.groups().items():
    test, train = map(np.array, zip(*(final_errors(r) for r in runs)))
    params = next((r.finished["num_params"] for r in runs if r.finished), None)
    done, total = min(r.last_step for r in runs), max(r.num_steps for r in runs)
    datasets, protocols = zip(*(_run_protocol(r) for r in runs))
    paper = study.paper.get((variant, depth))
    paper_protocols = [PAPER_PROTOCOL.get(d, "") for d in datasets] if paper is not None else []
    rows.append(Row(variant, depth, " ".join(f"{k}={v}" for k, v in extra), params, len(runs),
                    str(total) if done == total else f"{done}/{total}", *_spread(test), *_spread(train),
                    _joined(protocols), paper, _joined(paper_protocols)))
  return rows


def _joined(values) -> str:
  return " / ".join(sorted(set(filter(None, values))))


def _pct(value: float | None) -> str:
  return "" if value is None or math.isnan(value) else f"{value:.2f}"


def _mean_std(mean: float, std: float) -> str:
  return _pct(mean) + ("" if math.isnan(std) else f" ± {std:.2f}")


def _range(low: float, high: float, seeds: int) -> str:
  return f"{_pct(low)}–{_pct(high)}" if seeds > 1 else ""


def _protocol(protocols: set[str]) -> str:
  """' (centre crop)' for a column header when its rows share one known protocol."""
  return f" ({next(iter(protocols))})" if len(protocols) == 1 and "" not in protocols else ""


def to_markdown(rows: list[Row]) -> str:
  """Mean ± std and min–max over seeds; the paper's column, when the study gives numbers, and the
  test column name their protocols."""
  with_extra = any(r.extra for r in rows)
  with_paper = [r for r in rows if r.paper_test_error is not None]
  protocols = {r.eval_protocol for r in rows}
  test_header = "test error %" + (_protocol(protocols) if with_paper else "")
  header = ["variant", "depth", *(["setting"] if with_extra else []), "params", "seeds", "steps", test_header,
            "test min–max", "train error %", "train min–max",
            *([f"paper{_protocol({r.paper_protocol for r in with_paper})}"] if with_paper else [])]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in rows:
    test = _mean_std(r.test_error_mean, r.test_error_std)
    if with_paper and len(protocols) > 1:  # the header cannot name them: each cell does
      test += f" ({r.eval_protocol})"
    cells = [r.variant, str(r.depth), *([r.extra] if with_extra else []), f"{r.params:,}" if r.params else "",
             str(r.seeds), r.steps, test, _range(r.test_error_min, r.test_error_max, r.seeds),
             _mean_std(r.train_error_mean, r.train_error_std), _range(r.train_error_min, r.train_error_max, r.seeds),
             *([_pct(r.paper_test_error)] if with_paper else [])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def protocol_note(rows: list[Row]) -> str:
  """A sentence when the paper tested otherwise than these runs ('' when alike or unknown)."""
  differ = sorted({(r.paper_protocol, r.eval_protocol) for r in rows
                   if r.paper_protocol and r.paper_protocol != r.eval_protocol})
  if not differ:
    return ""
  pairs = "; ".join(f"the paper's numbers are {paper} test errors, these runs' {run}" for paper, run in differ)
  return (f"Not like for like: {pairs}. A sweep into a new root with --config.data.eval_crops=ten tests "
          "as the paper did.")


def origin_note(study: StudyRuns) -> str:
  """Where the runs trained (their environment.json): the CPU and its vector instruction set, the JAX
  backend and version, the commit, so that a table's last digits can be traced to a machine."""
  origins: dict[str, int] = {}
  for run in study.runs:
    env = storage.read_json(storage.join(run.workdir, ENVIRONMENT_FILE))  # its last start's
    if env:
      isa = ", ".join(env.get("cpu_vector_isa", [])) or "vector ISA not recorded"
      origin = (f"{env.get('cpu_model') or 'CPU not recorded'} ({isa}), backend {env.get('backend')}, "
                f"jax {env.get('jax')}, commit {(env.get('git_commit') or 'unknown')[:7]}")
      origins[origin] = origins.get(origin, 0) + 1
  if not origins:
    return ""
  if len(origins) == 1:
    return f"Trained on {next(iter(origins))}."
  return "Trained on " + "; ".join(f"{origin} ({count} models)" for origin, count in origins.items()) + "."


def write_csv(rows: list[Row], path: str) -> None:
  """Every Row field as a column; None and NaN (the std of one seed) as empty cells."""
  fields = [f.name for f in dataclasses.fields(Row)]
  with storage.open_write(path, binary=False) as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                       for k, v in dataclasses.asdict(row).items()})
