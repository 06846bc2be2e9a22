"""The analyses of trained models, in one registry: `resnet-jax analyze`, a study file's ANALYSES (each named
analysis with its options, run by the report on the first model of every finished member), the report's
figures and its index all read `ANALYSES`.

Adding an analysis: its module here (a frozen dataclass of options, whose fields' metadata give the command's
flags and help; `run(workdir, options, all_seeds=..., written=...)`; `summary(path)`), its figures in
resnet_jax/report/ (`draw_model(record, stem, formats)` and `STUDY_FIGURES`), and its entry below. The
figures' module is named, not imported: computing never imports drawing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from resnet_jax.analysis import landscape, lesion
from resnet_jax.analysis.trained import is_current, read_checkpoint
from resnet_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Analysis:
  name: str
  help: str  # one line, for the command
  options: type  # a frozen dataclass: the command's options and a study's ANALYSES keys
  run: Callable[..., list[str]]  # run(workdir, options, *, all_seeds, written) -> the records' paths
  summary: Callable[[str], str]  # one line about a record
  figures: str  # the report's module that draws its records


ANALYSES = {analysis.name: analysis for analysis in (
    Analysis(landscape.NAME, "training loss around the trained weights (Li et al. 2018)", landscape.LandscapeOptions,
             landscape.run_landscape, landscape.summary, "resnet_jax.report.landscape_plots"),
    Analysis(lesion.NAME, "test error with residual blocks deleted (Veit et al. 2016)", lesion.LesionOptions,
             lesion.run_lesion, lesion.summary, "resnet_jax.report.lesion_plots"),
)}


def make_options(name: str, given: dict[str, Any], where: str) -> Any:
  """The options object of analysis `name`; one line naming `where` (the study file) when a name or
  an option is unknown or a value is invalid."""
  if name not in ANALYSES:
    raise ConfigError(f"{where}: ANALYSES key {name!r} is invalid: allowed values are {', '.join(ANALYSES)}")
  options_type = ANALYSES[name].options
  if not isinstance(given, dict):
    raise ConfigError(f"{where}: ANALYSES[{name!r}] must be a dict of option -> value")
  fields = list(options_type.__dataclass_fields__)
  unknown = sorted(set(given) - set(fields))
  if unknown:
    raise ConfigError(f"{where}: ANALYSES[{name!r}] has unknown options {unknown}: allowed are {', '.join(fields)}")
  try:
    return options_type(**given)
  except ConfigError as error:
    raise ConfigError(f"{where}: ANALYSES[{name!r}]: {error}") from None


def run_analyses(member_dirs: list[str], analyses: dict[str, Any],
                 drawn: Callable[[str, dict, str], None] | None = None) -> None:
  """Each analysis of `analyses` (name -> options) on the first model of each member directory; records
  already computed for the member's checkpoint with these options are kept. `drawn(name, record, stem)`
  follows each record written (the report draws there). One line per run."""
  for name, options in analyses.items():
    run = ANALYSES[name].run
    written = None if drawn is None else (lambda record, stem, name=name: drawn(name, record, stem))
    for member_dir in member_dirs:
      start = time.monotonic()
      run(member_dir, options, written=written)
      print(f"{name}: {member_dir} ({time.monotonic() - start:.0f} s)", flush=True)


def lacking_records(member_dirs: list[str], analyses: dict[str, Any]) -> list[str]:
  """The member directories whose first model lacks a current record of one of `analyses`."""
  def complete(member_dir: str) -> bool:
    checkpoint = read_checkpoint(member_dir)
    return all(is_current(checkpoint.analysis_path(0, name), dict(step=checkpoint.step, options=o.key_options()))
               for name, o in analyses.items())
  return [d for d in member_dirs if not complete(d)]
