"""The paper's Fig. 7 in a report: every finished run's layer responses (computed by
analysis/responses.py, cached per run), in layer order and sorted by magnitude."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from resnet_jax.analysis.responses import checkpoint_responses
from resnet_jax.report.plots import depth_colours, save
from resnet_jax import storage
from resnet_jax.report.runs import Run, StudyRuns
from resnet_jax.studies.study import group_name
from resnet_jax.train.checkpoint import latest_step
from resnet_jax.train.workdir import FINISHED_FILE

CACHE_FILE = "layer_responses.json"  # per run: its stamp and response stds


def _stamp(run: Run) -> list:
  """What identifies a trained model in the cache: its checkpoint step and when it finished."""
  return [latest_step(run.checkpoint_dir), storage.mtime(storage.join(run.workdir, FINISHED_FILE))]


def study_responses(study: StudyRuns, cache_path: str) -> dict[str, np.ndarray]:
  """Responses of every finished run, cached in `cache_path` by run name."""
  cache = storage.read_json(cache_path) or {}
  finished = [r for r in study.runs if r.finished is not None and latest_step(r.checkpoint_dir) is not None]
  for run in finished:
    if cache.get(run.name, {}).get("stamp") == _stamp(run):
      continue
    stds = checkpoint_responses(run.checkpoint_dir)
    for sibling in (r for r in finished if r.checkpoint_dir == run.checkpoint_dir):
      cache[sibling.name] = dict(stamp=_stamp(sibling), std=stds[sibling.index].tolist())
  storage.write_text(cache_path, json.dumps(cache))
  return {r.name: np.array(cache[r.name]["std"]) for r in finished}


def plot_responses(study: StudyRuns, responses: dict[str, np.ndarray], stem: str,
                   formats: tuple[str, ...]) -> list[str]:
  """Top: std per 3x3 layer in network order; bottom: sorted descending. Mean over seeds."""
  fig = Figure(figsize=(9, 6.5), layout="constrained")
  top, bottom = fig.subplots(2, 1)
  colours = depth_colours(study)
  for group, runs in study.groups().items():
    stds = [responses[r.name] for r in runs if r.name in responses]
    if not stds:
      continue
    mean = np.mean(stds, axis=0)
    style = dict(color=colours[group[1:]], ls="--" if group[0] == "plain" else "-", lw=1.5, marker=".", ms=3)
    label = group_name(group) + (f" ({len(stds)} seeds)" if len(stds) > 1 else "")
    layers = np.arange(1, len(mean) + 1)
    top.plot(layers, mean, label=label, **style)
    bottom.plot(layers, np.sort(mean)[::-1], **style)
  top.set_xlabel("layer index (original order)")
  bottom.set_xlabel("layer index (sorted by magnitude)")
  for ax in (top, bottom):
    ax.set_ylabel("std of response")
    ax.grid(alpha=0.3)
  handles, _ = top.get_legend_handles_labels()
  top.legend(handles=handles + [Line2D([], [], color="k", ls="--", label="plain"),
                                Line2D([], [], color="k", ls="-", label="residual")], fontsize=9, ncol=2)
  return save(fig, stem, formats)
