"""`resnet-jax analyze`: compute an analysis of a work directory (resnet_jax.analysis), then draw the figure of
each record written beside it, <model folder>/analysis/<name>.<fmt>."""

from __future__ import annotations

import importlib
from types import ModuleType

from resnet_jax.analysis.analyses import ANALYSES
from resnet_jax.report.plots import check_formats


def figures(name: str) -> ModuleType:
  """The module that draws analysis `name`'s records: `draw_model` and `STUDY_FIGURES`."""
  return importlib.import_module(ANALYSES[name].figures)


def draw_record(name: str, record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
  """The figure of one model's record of analysis `name`, as <stem>.<fmt>."""
  return figures(name).draw_model(record, stem, formats)


def run(name: str, workdir: str, options=None, *, all_seeds: bool = False,
        formats: tuple[str, ...] = ("png",)) -> list[str]:
  """Analysis `name` of a work directory, each record written drawn in `formats`. Returns the JSON paths."""
  check_formats(formats)
  return ANALYSES[name].run(workdir, options, all_seeds=all_seeds,
                            written=lambda record, stem: draw_record(name, record, stem, formats))
