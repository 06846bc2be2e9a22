"""`resnet-jax analyze`: compute an analysis of a work directory (resnet_jax.analysis), then draw the
figure of each record written beside it, <model folder>/analysis/<name>.<fmt>."""

from __future__ import annotations

from resnet_jax.analysis import landscape, lesion
from resnet_jax.report.analysis_plots import plot_model_landscape, plot_model_lesion
from resnet_jax.report.plots import check_formats

MODEL_FIGURES = {landscape.NAME: plot_model_landscape, lesion.NAME: plot_model_lesion}


def draw_record(name: str, record: dict, stem: str, formats: tuple[str, ...]) -> list[str]:
  """The figure of one model's record of analysis `name`, as <stem>.<fmt>."""
  return MODEL_FIGURES[name](record, stem, formats)


def _drawing(name: str, formats: tuple[str, ...]):
  return lambda record, stem: draw_record(name, record, stem, formats)


def run_landscape(workdir: str, options: landscape.LandscapeOptions | None = None, *, all_seeds: bool = False,
                  formats: tuple[str, ...] = ("png",)) -> list[str]:
  """landscape.run_landscape, each record written drawn in `formats`. Returns the JSON paths."""
  check_formats(formats)
  return landscape.run_landscape(workdir, options, all_seeds=all_seeds, written=_drawing(landscape.NAME, formats))


def run_lesion(workdir: str, options: lesion.LesionOptions | None = None, *, all_seeds: bool = False,
               formats: tuple[str, ...] = ("png",)) -> list[str]:
  """lesion.run_lesion, each record written drawn in `formats`. Returns the JSON paths."""
  check_formats(formats)
  return lesion.run_lesion(workdir, options, all_seeds=all_seeds, written=_drawing(lesion.NAME, formats))
