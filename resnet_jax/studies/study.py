"""A study file (experiments/*.py): a base config, a grid of its arguments, overrides, the paper's numbers.

  BASE_CONFIG = "configs/digits.py"   # relative: to the current directory, else to the resnet-jax checkout
  GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0]}  # get_config arguments
  EXCLUDE = [{"variant": "plain", "depth": 110}]   # optional: drop members matching every key given
  OVERRIDES = {"train.analysis_every_steps": 200}  # optional: config fields set for every member
  PAPER = {("residual", 20): 8.75}                 # optional: (variant, depth) -> test error % in the paper
  ANALYSES = {"landscape": {"grid": 11}, "lesion": {}}  # optional: analyses the report runs on each member
  SLURM = ["--time=02:00:00", "--cpus-per-task=8"]  # optional: sbatch options of `sweep --launcher slurm`

Members are the grid's product in GRID order, named variant-depth[-key<value>...]-seed<n>: keys
other than variant, depth and seed appear in the name only when GRID gives them several values.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import pathlib
import re
from typing import Any

from resnet_jax.errors import ConfigError
from resnet_jax.analysis.analyses import make_options

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STUDY_FILE = "study.json"  # written under a sweep's root: the study path and its members


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a study: its work directory name and the base config's arguments."""
  name: str
  args: dict[str, Any]

  @property
  def arg_string(self) -> str:
    return ",".join(f"{key}={value}" for key, value in self.args.items())


@dataclasses.dataclass(frozen=True)
class Study:
  path: str
  base_config: str        # as written in the study file
  base_config_path: str   # resolved, absolute; may not exist yet
  members: list[Member]
  overrides: list[str]    # --config.<section>.<field>=<value>, for every member
  paper: dict[tuple[str, int], float]
  doc: str
  analyses: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> options (see analyses.py)
  slurm: list[str] = dataclasses.field(default_factory=list)  # sbatch options for --launcher slurm

  @property
  def name(self) -> str:
    return pathlib.Path(self.path).stem

  def spec(self, member: Member) -> str:
    """The `--config` argument that trains `member`."""
    return f"{self.base_config_path}:{member.arg_string}"


def resolve_base_config(base: str) -> pathlib.Path:
  """A relative BASE_CONFIG is taken from the current directory, else from the resnet-jax checkout."""
  path = pathlib.Path(base).expanduser()
  if not path.is_absolute() and not path.exists():
    path = REPO_ROOT / path
  return path.resolve()


def member_name(args: dict[str, Any], grid: dict[str, list]) -> str:
  """'plain-56-seed0': variant, depth, the other keys GRID varies, seed (every key if that is none)."""
  parts = [str(args[key]) for key in ("variant", "depth") if key in args]
  varied = [key for key in grid if key not in ("variant", "depth", "seed") and len(grid[key]) > 1]
  parts += [f"{key}{args[key]}" for key in varied] + ([f"seed{args['seed']}"] if "seed" in args else [])
  return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts or [f"{k}{v}" for k, v in args.items()]))


def select_members(study: Study, only: str | None) -> list[Member]:
  """The members whose arguments match every `key=value` of `only` (comma-separated); all if None."""
  if not only:
    return study.members
  grid_keys, wanted = sorted(study.members[0].args), {}
  for item in only.split(","):
    key, sep, value = item.partition("=")
    if not sep or key not in grid_keys:
      raise ConfigError(f"--only {item!r}: expected key=value with key one of {', '.join(grid_keys)}")
    wanted[key] = value
  selected = [m for m in study.members if all(str(m.args[k]) == v for k, v in wanted.items())]
  if not selected:
    choices = "; ".join(f"{k} is one of {', '.join(dict.fromkeys(str(m.args[k]) for m in study.members))}"
                        for k in wanted)
    raise ConfigError(f"--only {only!r} matches no member of {study.name}: {choices}")
  return selected


def load_study(path: str) -> Study:
  """Read and check a study file; raises ConfigError naming the file and the problem."""
  file = pathlib.Path(path)
  if not file.is_file():
    raise ConfigError(f"study {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"resnet_jax_study_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  fail = lambda message: ConfigError(f"study {path}: {message}")
  for name in ("BASE_CONFIG", "GRID"):
    if not hasattr(module, name):
      raise fail(f"{name} is missing")
  grid, exclude = module.GRID, getattr(module, "EXCLUDE", [])
  if not isinstance(module.BASE_CONFIG, str):
    raise fail("BASE_CONFIG must be a path to a config file, e.g. 'configs/digits.py'")
  if not isinstance(grid, dict) or not grid:
    raise fail("GRID must be a non-empty dict of get_config argument -> list of values")
  for key, values in grid.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise fail(f"GRID[{key!r}] must be a non-empty list of values")
  for entry in exclude:
    if not isinstance(entry, dict) or not set(entry) <= set(grid):
      raise fail(f"EXCLUDE entry {entry!r} must be a dict whose keys are GRID keys {sorted(grid)}")
  members = []
  for values in itertools.product(*grid.values()):
    args = dict(zip(grid, values))
    if not any(all(args[k] == v for k, v in entry.items()) for entry in exclude):
      members.append(Member(member_name(args, grid), args))
  if not members:
    raise fail("EXCLUDE removes every member of GRID")
  names = [m.name for m in members]
  if len(set(names)) != len(names):
    raise fail(f"members have the same name: {sorted({n for n in names if names.count(n) > 1})}")
  overrides = getattr(module, "OVERRIDES", {})
  if not isinstance(overrides, dict):
    raise fail("OVERRIDES must be a dict of 'section.field' -> value")
  paper = getattr(module, "PAPER", {})
  if not isinstance(paper, dict) or not all(isinstance(k, tuple) and len(k) == 2 for k in paper):
    raise fail("PAPER must be a dict of (variant, depth) -> test error %")
  analyses = getattr(module, "ANALYSES", {})
  if not isinstance(analyses, dict):
    raise fail('ANALYSES must be a dict of analysis name -> options, e.g. {"landscape": {"grid": 11}, "lesion": {}}')
  sbatch = getattr(module, "SLURM", [])
  if not isinstance(sbatch, (list, tuple)) or not all(isinstance(a, str) and a.startswith("-") for a in sbatch):
    raise fail('SLURM must be a list of sbatch options, e.g. ["--time=02:00:00", "--gres=gpu:1"]')
  return Study(
      path=str(file.resolve()), base_config=module.BASE_CONFIG,
      base_config_path=str(resolve_base_config(module.BASE_CONFIG)), members=members,
      overrides=[f"--config.{field}={value}" for field, value in overrides.items()],
      paper={(str(k[0]), int(k[1])): float(v) for k, v in paper.items()}, doc=module.__doc__ or "",
      analyses={name: make_options(name, given, f"study {path}") for name, given in analyses.items()},
      slurm=list(sbatch))
