"""Figures from a study's metrics: error curves in the paper's style (Fig. 1, Fig. 6) and per-layer
gradient norms. Built on matplotlib's Figure directly (Agg), so no display or pyplot state is needed."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.report.runs import Run, StudyRuns, variant_rank
from resnet_jax.studies.study import group_name
from resnet_jax.train.workdir import recorded_config

FORMATS = ("png", "svg", "pdf")  # the figure formats every report command accepts
GRAD_PREFIX = "grad_norm/"
ANALYSIS_POINTS = 4  # training steps shown in the gradient-norm figure
SEED_ALPHA = 0.35  # each seed's curve, under the bold mean


def check_formats(formats: tuple[str, ...]) -> None:
  if not formats or any(f not in FORMATS for f in formats):
    raise ConfigError(f"--formats {','.join(formats)!r} is invalid: allowed values are {', '.join(FORMATS)}")


def save(fig: Figure, stem: str, formats: tuple[str, ...]) -> list[str]:
  paths = [f"{stem}.{fmt}" for fmt in formats]
  for path, fmt in zip(paths, formats):
    with storage.open_write(path) as f:  # a local file or an object
      fig.savefig(f, format=fmt, dpi=150)
  return paths


def depth_colours(study: StudyRuns) -> dict[tuple, str]:
  """One colour per (depth, other settings), the same in every figure and panel."""
  keys = sorted({(g[1], g[2]) for g in study.groups()}, key=lambda k: (k[0], str(k[1])))
  return {key: f"C{i % 10}" for i, key in enumerate(keys)}


def _mean_over_seeds(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, mean) of `key` over the seeds that logged each step."""
  by_step: dict[int, list[float]] = {}
  for run in runs:
    for step, value in zip(*run.series(key)):
      by_step.setdefault(int(step), []).append(value)
  steps = np.array(sorted(by_step), dtype=int)
  return steps, np.array([np.mean(by_step[s]) for s in steps])


def _error_ceiling(study: StudyRuns) -> float:
  """Top of the error axis: the highest error after the first 10% of training, with headroom."""
  peak = 0.0
  for run in study.runs:
    for key in ("train_error", "eval_error"):
      steps, values = run.series(key)
      late = values[steps >= 0.1 * run.num_steps]
      peak = max(peak, float(late.max()) if late.size else 0.0)
  return min(100.0, max(5.0, 120 * peak))


def _x_axis(study: StudyRuns) -> tuple[str, dict[str, int]]:
  """'iterations', or 'epochs' where runs take different numbers of steps per epoch (their batches
  differ), with each run's steps per unit of the axis."""
  per_epoch = {run.name: recorded_config(run.workdir).derived.steps_per_epoch for run in study.runs}
  if len(set(per_epoch.values())) > 1:
    return "epochs", per_epoch
  return "iterations", dict.fromkeys(per_epoch, 1)


def error_curves(study: StudyRuns, stem: str, formats: tuple[str, ...]) -> list[str]:
  """Training error dashed, test error solid, against iterations (epochs where the batch differs
  between runs); one panel per variant, one colour per depth. Every seed is a thin line, the mean
  over seeds a bold one."""
  groups, colours = study.groups(), depth_colours(study)
  x_label, per_unit = _x_axis(study)
  variants = sorted({g[0] for g in groups}, key=variant_rank)
  several = any(len(runs) > 1 for runs in groups.values())
  fig = Figure(figsize=(5.5 * len(variants), 4.5), layout="constrained")
  axes = fig.subplots(1, len(variants), sharey=True, squeeze=False)[0]
  for ax, variant in zip(axes, variants):
    handles = []
    for group, runs in groups.items():
      if group[0] != variant:
        continue
      colour = colours[group[1:]]
      for key, style, width in (("train_error", "--", 1.5), ("eval_error", "-", 2.0)):
        if len(runs) > 1:
          for run in runs:
            steps, values = run.series(key)
            ax.plot(steps / per_unit[run.name], 100 * values, style, color=colour, lw=0.7, alpha=SEED_ALPHA)
        steps, mean = _mean_over_seeds(runs, key)
        ax.plot(steps / per_unit[runs[0].name], 100 * mean, style, color=colour, lw=width)
      seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
      handles.append(Line2D([], [], color=colour, lw=2, label=group_name(group) + seeds))
    handles += [Line2D([], [], color="k", ls="--", lw=1.5, label="training error"),
                Line2D([], [], color="k", ls="-", lw=2, label="test error")]
    labels = [h.get_label() for h in handles]
    if several:  # a thin and a bold line side by side
      handles.append((Line2D([], [], color="k", lw=0.7, alpha=SEED_ALPHA), Line2D([], [], color="k", lw=2)))
      labels.append("each seed, mean")
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None, pad=0.3)}, fontsize=8, ncol=2)
    ax.set_title(variant, fontsize=12)
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("error (%)")
  axes[0].set_ylim(0, _error_ceiling(study))
  return save(fig, stem, formats)


def _layer_order(path: str) -> tuple:
  parts = path.split("/")
  rank = {"stem_conv": 0, "stages": 1}.get(parts[0], 2)
  return (rank, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts[1:]])


def weight_layers(record: dict) -> list[str]:
  """Kernel paths of a gradient-norm record in network order (stem, blocks, head; no shortcuts)."""
  paths = [k[len(GRAD_PREFIX):] for k in record if k.startswith(GRAD_PREFIX)]
  return sorted((p for p in paths if p.endswith("kernel") and "shortcut" not in p), key=_layer_order)


def _analysis_records(run: Run) -> dict[int, dict]:
  return {r["step"]: r for r in run.records if any(k.startswith(GRAD_PREFIX) for k in r)}


def gradient_norms(study: StudyRuns, stem: str, formats: tuple[str, ...]) -> list[str]:
  """Per-layer gradient norms at a few training steps: rows of depths, columns of variants; the
  geometric mean over seeds (the axis is logarithmic) within a band from the lowest to the highest seed.

  Returns [] when no run recorded them (train.analysis_every_steps = 0)."""
  groups = study.groups()
  analysed = {g: [_analysis_records(r) for r in runs] for g, runs in groups.items()}
  all_steps = sorted({s for records in analysed.values() for per_run in records for s in per_run})
  if not all_steps:
    return []
  picks = sorted({all_steps[i] for i in np.linspace(0, len(all_steps) - 1, ANALYSIS_POINTS).round().astype(int)})
  variants = sorted({g[0] for g in groups}, key=variant_rank)
  rows = sorted({g[1:] for g in groups}, key=lambda k: (k[0], str(k[1])))
  fig = Figure(figsize=(5 * len(variants), 2.8 * len(rows) + 0.6), layout="constrained")
  axes = fig.subplots(len(rows), len(variants), sharey=True, squeeze=False)
  shade = matplotlib.colormaps["viridis"]
  colours = {step: shade(0.9 * i / max(len(picks) - 1, 1)) for i, step in enumerate(picks)}
  for (variant, *row), per_run in analysed.items():
    ax = axes[rows.index(tuple(row)), variants.index(variant)]
    for step in picks:
      records = [records[step] for records in per_run if step in records]
      if not records:
        continue
      layers = weight_layers(records[0])
      norms = np.array([[r[GRAD_PREFIX + layer] for layer in layers] for r in records])
      x = np.arange(1, len(layers) + 1)
      ax.plot(x, np.exp(np.log(norms).mean(axis=0)), ".-", color=colours[step], ms=3, label=f"iteration {step}")
      if len(records) > 1:
        ax.fill_between(x, norms.min(axis=0), norms.max(axis=0), color=colours[step], alpha=0.15, lw=0)
    ax.set_yscale("log")
    seeds = f" ({len(per_run)} seeds)" if len(per_run) > 1 else ""
    ax.set_title(group_name((variant, *row)) + seeds, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  for i, row in enumerate(rows):  # a net the study lacks (e.g. plain-110): its row keeps the shared y axis
    for j, variant in enumerate(variants):
      if (variant, *row) not in groups:
        axes[i, j].set_xticks([])
        axes[i, j].text(0.5, 0.5, f"no {group_name((variant, *row))}", ha="center", color="0.5",
                        transform=axes[i, j].transAxes)
  for ax in axes[-1]:
    ax.set_xlabel("layer (input to output)")
  for ax in axes[:, 0]:
    ax.set_ylabel("gradient norm")
  return save(fig, stem, formats)
