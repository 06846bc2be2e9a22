"""Figures of the lesion study (Veit et al. 2016; resnet_jax/analysis/lesion.py): test error with blocks deleted,
for one model, beside its record, and for a study, plain and residual side by side."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from resnet_jax.report.analysis_plots import record_title, run_record, variants_and_rows
from resnet_jax.report.plots import depth_colours, save
from resnet_jax.report.runs import StudyRuns
from resnet_jax.studies.study import group_name

LESION_CAPTION = (
    "Test error with blocks deleted at test time (Veit et al. 2016). A deleted residual block keeps only its "
    "shortcut (relu(shortcut(x)); option-A downsampling blocks keep their subsampling and zero channels). Plain "
    "blocks have no shortcut: a deleted plain block passes its input on unchanged, and shape-changing plain "
    "blocks (x) cannot be deleted. Top: each block alone (o: downsampling blocks; dotted: the intact net); "
    "bottom: k blocks drawn at random, mean and std over draws and seeds. Mean over the seeds analysed.")


def _block_errors(ax, record: dict, **style):
  """Test error with each block deleted; downsampling blocks circled, undeletable ones marked x."""
  blocks = record["blocks"]
  index = np.arange(1, len(blocks) + 1)
  errors = np.array([np.nan if b["test_error"] is None else 100 * b["test_error"] for b in blocks])
  ax.plot(index, errors, marker=".", **style)
  down = np.array([b["downsampling"] for b in blocks])
  ax.plot(index[down], errors[down], "o", mfc="none", color=style.get("color"), ms=8)
  fixed = np.array([not b["deletable"] for b in blocks])
  ax.plot(index[fixed], np.full(fixed.sum(), 2.0), "x", color=style.get("color"), ms=8, mew=2)


def _random_errors(ax, k: np.ndarray, mean: np.ndarray, std: np.ndarray, **style):
  ax.plot(k, 100 * mean, marker=".", **style)
  ax.fill_between(k, 100 * (mean - std), 100 * (mean + std), color=style.get("color"), alpha=0.15, lw=0)


def _random_arrays(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  rows = record["random"]
  return tuple(np.array([r[key] for r in rows], float) for key in ("k", "mean", "std"))


def draw_model(record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
  """One model: test error with each block deleted, and with k random blocks deleted (mean +- std)."""
  fig = Figure(figsize=(10, 4), layout="constrained")
  left, right = fig.subplots(1, 2, sharey=True)
  _block_errors(left, record, color="C0")
  _random_errors(right, *_random_arrays(record), color="C0")
  for ax in (left, right):
    ax.axhline(100 * record["test_error"], color="k", ls=":", lw=1)
    ax.grid(alpha=0.3)
  left.set_xlabel("deleted block (input to output; o: downsampling, x: cannot be deleted)")
  right.set_xlabel("number of blocks deleted at random")
  left.set_ylabel("test error (%)")
  left.set_ylim(0, 100)
  fig.suptitle(f"{record_title(record)}: lesion study, test error {100 * record['test_error']:.2f} % intact (dotted)",
               fontsize=11)
  return save(fig, stem, formats)


def plot_lesions(study: StudyRuns, stem: str, formats: tuple[str, ...]) -> list[str]:
  """Columns of variants; top: test error with each block deleted, bottom: with k random blocks deleted
  (Veit et al.'s Fig. 3 and 5). Mean over seeds; bands: the lowest to highest seed (top), +- the std over
  draws and seeds (bottom). Returns [] when no run has a lesion record."""
  colours, groups = depth_colours(study), study.groups()
  found = {g: [r for r in (run_record(run, "lesion") for run in runs) if r] for g, runs in groups.items()}
  found = {g: records for g, records in found.items() if records}
  if not found:
    return []
  variants, _ = variants_and_rows(found)
  fig = Figure(figsize=(5.5 * len(variants), 7.5), layout="constrained")
  axes = fig.subplots(2, len(variants), sharey=True, squeeze=False)
  for group, records in found.items():
    top, bottom = axes[:, variants.index(group[0])]
    style = dict(color=colours[group[1:]], lw=1.5)
    seeds = f" ({len(records)} seeds)" if len(records) > 1 else ""
    intact = 100 * np.mean([r["test_error"] for r in records])
    mean = dict(records[0], blocks=[dict(b, test_error=None if b["test_error"] is None else
                                         float(np.mean([r["blocks"][i]["test_error"] for r in records])))
                                    for i, b in enumerate(records[0]["blocks"])])
    _block_errors(top, mean, label=f"{group_name(group)}{seeds}, intact {intact:.1f} %", **style)
    if len(records) > 1:
      per_seed = np.array([[np.nan if b["test_error"] is None else 100 * b["test_error"] for b in r["blocks"]]
                           for r in records])
      top.fill_between(np.arange(1, per_seed.shape[1] + 1), per_seed.min(0), per_seed.max(0),
                       color=style["color"], alpha=0.15, lw=0)
    draws = np.array([[row["errors"] for row in r["random"]] for r in records])  # [seeds, k, draws]
    k = np.arange(1, draws.shape[1] + 1)
    _random_errors(bottom, k, draws.mean(axis=(0, 2)), draws.std(axis=(0, 2)), **style)
    top.axhline(intact, color=style["color"], ls=":", lw=1)
  for column, variant in enumerate(variants):
    top, bottom = axes[:, column]
    top.set_title(variant, fontsize=12)
    top.legend(fontsize=8, loc="center right")
    top.set_xlabel("deleted block (input to output; o: downsampling, x: cannot be deleted)")
    bottom.set_xlabel("number of blocks deleted at random")
    for ax in (top, bottom):
      ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("test error (%), one block deleted")
  axes[1, 0].set_ylabel("test error (%), k blocks deleted")
  axes[0, 0].set_ylim(0, 100)
  return save(fig, stem, formats)


# The report's sections: (title, figure of a study, file stem, caption).
STUDY_FIGURES = [("Lesion study (Veit et al. 2016)", plot_lesions, "lesions", LESION_CAPTION)]
