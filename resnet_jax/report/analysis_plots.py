"""What the figures of the post-training analyses share: a run's record, a record's title, the panels' layout.
Each analysis draws its own figures (report/landscape_plots.py, report/lesion_plots.py), reading only its records."""

from __future__ import annotations

from resnet_jax import storage

from resnet_jax.analysis.trained import ANALYSIS_DIR, read_record
from resnet_jax.report.runs import Run, variant_rank


def run_record(run: Run, name: str) -> dict | None:
  """A run's analysis record (`landscape` or `lesion`), or None when it was not computed."""
  return read_record(storage.join(run.workdir, ANALYSIS_DIR, f"{name}.json"))


def record_title(record: dict) -> str:
  return f"{record['variant']}-{record['depth']}, seed {record['seed']}"


def variants_and_rows(groups) -> tuple[list[str], list[tuple]]:
  variants = sorted({g[0] for g in groups}, key=variant_rank)
  rows = sorted({g[1:] for g in groups}, key=lambda k: (k[0], str(k[1])))
  return variants, rows
