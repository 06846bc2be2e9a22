"""Figures of the post-training analyses: loss-landscape contours and slices (Li et al. 2018) and lesion
curves (Veit et al. 2016), for one model (beside its analysis/*.json) and for a study, plain and residual
side by side. They read only the JSON records."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from resnet_jax.report.plots import depth_colours, save
from resnet_jax.report.runs import Run, StudyRuns, group_label, variant_rank
from resnet_jax.analysis.trained import ANALYSIS_DIR, read_record

LOSS_LEVELS = np.logspace(-3, 5, 33)  # contour levels, 4 per decade, the same in every panel

# Captions for the report, beside the study figures below.
LANDSCAPE_CAPTION = (
    "Training loss around the trained weights w, at w + a dx + b dy (Li et al. 2018): dx and dy are random "
    "Gaussian directions scaled filter by filter to the norms of the trained filters; biases and BatchNorm "
    "parameters are not moved and BatchNorm uses its trained running statistics. Cross-entropy on a fixed, "
    "seeded subset of un-augmented training images; contours 4 per decade; + marks the trained point. "
    "One model per panel (the first seed analysed).")
SLICES_CAPTION = (
    "The same loss (left, log scale) and training error (right) along dx alone, at a finer spacing: plain "
    "dashed, residual solid, one line per analysed model.")
LESION_CAPTION = (
    "Test error with blocks deleted at test time (Veit et al. 2016). A deleted residual block keeps only its "
    "shortcut (relu(shortcut(x)); option-A downsampling blocks keep their subsampling and zero channels). Plain "
    "blocks have no shortcut: a deleted plain block passes its input on unchanged, and shape-changing plain "
    "blocks (x) cannot be deleted. Top: each block alone (o: downsampling blocks; dotted: the intact net); "
    "bottom: k blocks drawn at random, mean and std over draws and seeds. Mean over the seeds analysed.")


def run_record(run: Run, name: str) -> dict | None:
  """A run's analysis record (`landscape` or `lesion`), or None when it was not computed."""
  return read_record(os.path.join(run.workdir, ANALYSIS_DIR, f"{name}.json"))


def _title(record: dict) -> str:
  return f"{record['variant']}-{record['depth']}, seed {record['seed']}"


def _contour(ax, record: dict):
  """Loss contours of the 2-D slice on a log scale; the trained point marked."""
  surface = record["surface"]
  grid = np.asarray(surface["coefficients"])
  loss = np.clip(np.asarray(surface["loss"]), LOSS_LEVELS[0], LOSS_LEVELS[-1])
  lines = ax.contour(grid, grid, loss, levels=LOSS_LEVELS, norm=LogNorm(LOSS_LEVELS[0], LOSS_LEVELS[-1]),
                     cmap="viridis", linewidths=0.9)
  ax.plot(0, 0, "k+", ms=8)
  ax.set_aspect("equal")
  ax.set_xlabel("dx coefficient")
  ax.set_ylabel("dy coefficient")
  return lines


def _slice(ax, record: dict, **style):
  line = record["line"]
  ax.semilogy(line["coefficients"], np.maximum(line["loss"], 1e-6), **style)


def plot_model_landscape(record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
  """One model: 2-D loss contours and the 1-D slice's loss and error."""
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  left, right = fig.subplots(1, 2, width_ratios=(1.15, 1))
  fig.colorbar(_contour(left, record), ax=left, label="training loss", pad=0.02)
  _slice(right, record, color="C0", label="loss")
  right.set_xlabel("dx coefficient")
  right.set_ylabel("training loss", color="C0")
  error = right.twinx()
  error.plot(record["line"]["coefficients"], 100 * np.asarray(record["line"]["error"]), color="C3", ls="--")
  error.set_ylabel("training error (%)", color="C3")
  error.set_ylim(0, 100)
  right.grid(alpha=0.3)
  fig.suptitle(f"{_title(record)}: loss landscape on {record['num_examples']} training examples "
               f"(step {record['key']['step']})", fontsize=11)
  return save(fig, stem, formats)


def _variants_and_rows(groups) -> tuple[list[str], list[tuple]]:
  variants = sorted({g[0] for g in groups}, key=variant_rank)
  rows = sorted({g[1:] for g in groups}, key=lambda k: (k[0], str(k[1])))
  return variants, rows


def plot_landscapes(study: StudyRuns, stem: str, formats: tuple[str, ...]) -> list[str]:
  """Loss contours around each group's first analysed model: rows of depths, columns of variants (Li et
  al.'s Fig. 5, ResNet-56 with and without shortcuts). Returns [] when no run has a landscape."""
  found = {}
  for group, runs in study.groups().items():
    record = next((r for r in map(lambda run: run_record(run, "landscape"), runs) if r), None)
    if record:
      found[group] = record
  if not found:
    return []
  variants, rows = _variants_and_rows(found)
  fig = Figure(figsize=(4.4 * len(variants) + 1, 3.9 * len(rows)), layout="constrained")
  axes = fig.subplots(len(rows), len(variants), squeeze=False)
  lines = None
  for (variant, *row), record in found.items():
    ax = axes[rows.index(tuple(row)), variants.index(variant)]
    lines = _contour(ax, record)
    trained = record["trained"]
    ax.set_title(f"{group_label((variant, *row))} (seed {record['seed']})\ntrained point: loss "
                 f"{trained['loss']:.3g}, error {100 * trained['error']:.1f} %", fontsize=10)
  for ax in axes.ravel():
    if not ax.has_data():
      ax.set_axis_off()
  fig.colorbar(lines, ax=axes, label="training loss", shrink=0.8)
  return save(fig, stem, formats)


def plot_landscape_slices(study: StudyRuns, stem: str, formats: tuple[str, ...]) -> list[str]:
  """1-D slices of every analysed model: loss (log) and error against the dx coefficient; plain dashed,
  residual solid, one colour per depth. Returns [] when no run has a landscape."""
  colours, groups = depth_colours(study), study.groups()
  fig = Figure(figsize=(10, 4.2), layout="constrained")
  loss_ax, error_ax = fig.subplots(1, 2)
  handles = []
  for group, runs in groups.items():
    records = [r for r in (run_record(run, "landscape") for run in runs) if r]
    style = dict(color=colours[group[1:]], ls="--" if group[0] == "plain" else "-", lw=1.3)
    for record in records:
      _slice(loss_ax, record, **style)
      error_ax.plot(record["line"]["coefficients"], 100 * np.asarray(record["line"]["error"]), **style)
    if records:
      seeds = ", ".join(str(r["seed"]) for r in records)
      handles.append(Line2D([], [], label=f"{group_label(group)} (seed {seeds})", **style))
  if not handles:
    return []
  loss_ax.set_ylabel("training loss")
  error_ax.set_ylabel("training error (%)")
  error_ax.set_ylim(0, 100)
  for ax in (loss_ax, error_ax):
    ax.set_xlabel("dx coefficient (filter-normalised direction)")
    ax.grid(alpha=0.3)
  loss_ax.legend(handles=handles, fontsize=8)
  return save(fig, stem, formats)


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


def plot_model_lesion(record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
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
  fig.suptitle(f"{_title(record)}: lesion study, test error {100 * record['test_error']:.2f} % intact (dotted)",
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
  variants, _ = _variants_and_rows(found)
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
    _block_errors(top, mean, label=f"{group_label(group)}{seeds}, intact {intact:.1f} %", **style)
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
