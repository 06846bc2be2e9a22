"""Figures of the loss-landscape analysis (Li et al. 2018; resnet_jax/analysis/landscape.py): contours and a
1-D slice for one model, beside its record, and for a study, plain and residual side by side."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from resnet_jax.report.analysis_plots import record_title, run_record, variants_and_rows
from resnet_jax.report.plots import depth_colours, save
from resnet_jax.report.runs import StudyRuns
from resnet_jax.studies.study import group_name

LOSS_LEVELS = np.logspace(-3, 5, 33)  # contour levels, 4 per decade, the same in every panel

LANDSCAPE_CAPTION = (
    "Training loss around the trained weights w, at w + a dx + b dy (Li et al. 2018): dx and dy are random "
    "Gaussian directions scaled filter by filter to the norms of the trained filters; biases and BatchNorm "
    "parameters are not moved and BatchNorm uses its trained running statistics. Cross-entropy on a fixed, "
    "seeded subset of un-augmented training images; contours 4 per decade; + marks the trained point. "
    "One model per panel (the first seed analysed).")
SLICES_CAPTION = (
    "The same loss (left, log scale) and training error (right) along dx alone, at a finer spacing: plain "
    "dashed, residual solid, one line per analysed model.")


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


def draw_model(record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
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
  fig.suptitle(f"{record_title(record)}: loss landscape on {record['num_examples']} training examples "
               f"(step {record['key']['step']})", fontsize=11)
  return save(fig, stem, formats)


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
  variants, rows = variants_and_rows(found)
  fig = Figure(figsize=(4.4 * len(variants) + 1, 3.9 * len(rows)), layout="constrained")
  axes = fig.subplots(len(rows), len(variants), squeeze=False)
  lines = None
  for (variant, *row), record in found.items():
    ax = axes[rows.index(tuple(row)), variants.index(variant)]
    lines = _contour(ax, record)
    trained = record["trained"]
    ax.set_title(f"{group_name((variant, *row))} (seed {record['seed']})\ntrained point: loss "
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
      handles.append(Line2D([], [], label=f"{group_name(group)} (seed {seeds})", **style))
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


# The report's sections: (title, figure of a study, file stem, caption).
STUDY_FIGURES = [("Loss landscapes (Li et al. 2018)", plot_landscapes, "landscapes", LANDSCAPE_CAPTION),
                 ("Loss landscapes: 1-D slices", plot_landscape_slices, "landscape_slices", SLICES_CAPTION)]
