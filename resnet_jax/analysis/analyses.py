"""The analyses a study file asks its report for (ANALYSES = {"landscape": {...}, "lesion": {...}}):
each named analysis with its options, run on the first model of every finished member."""

from __future__ import annotations

import time
from typing import Any, Callable

from resnet_jax.analysis import landscape, lesion
from resnet_jax.analysis.trained import is_current, read_checkpoint
from resnet_jax.errors import ConfigError


def _registry() -> dict[str, tuple[type, Callable]]:
  return {landscape.NAME: (landscape.LandscapeOptions, landscape.run_landscape),
          lesion.NAME: (lesion.LesionOptions, lesion.run_lesion)}


def make_options(name: str, given: dict[str, Any], where: str) -> Any:
  """The options object of analysis `name`; one line naming `where` (the study file) when a name or
  an option is unknown or a value is invalid."""
  registry = _registry()
  if name not in registry:
    raise ConfigError(f"{where}: ANALYSES key {name!r} is invalid: allowed values are {', '.join(registry)}")
  options_type = registry[name][0]
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
  registry = _registry()
  for name, options in analyses.items():
    run = registry[name][1]
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
