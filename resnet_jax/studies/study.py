"""A study file (experiments/*.py): a base config, a grid of its arguments, overrides, the paper's numbers.

  BASE_CONFIG = "configs/digits.py"   # relative: to the current directory, else to the resnet-jax checkout
  GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0]}  # get_config arguments
  EXCLUDE = [{"variant": "plain", "depth": 110}]   # optional: drop members matching every key given
  OVERRIDES = {"train.analysis_every_steps": 200}  # optional: config fields set for every member
  PAPER = {("residual", 20): 8.75}                 # optional: (variant, depth) -> test error % in the paper
  ANALYSES = {"landscape": {"grid": 11}, "lesion": {}}  # optional: analyses the report runs on each member
  SLURM = ["--time=02:00:00", "--cpus-per-task=8"]  # optional: sbatch options of `sweep --launcher slurm`
  from resnet_jax.studies.study import Claim, degradation_claims  # optional: what the study is meant to show,
  CLAIMS = [*degradation_claims(shallow=20, deep=56, no_worse_by=1.0),  # tested over the seeds by the report
            Claim("ResNet-20 reaches the paper's 8.75 %", "test_error", ("residual", 20), "within", 8.75, margin=0.5)]

Members are the grid's product in GRID order, named variant-depth[-key<value>...]-seed<n>: keys
other than variant, depth and seed appear in the name only when GRID gives them several values.
A claim says `lhs <relation> rhs + margin` of a final error % (test_error: the last evaluation,
train_error: the last logged training error): lhs is a group, (variant, depth) or, where GRID varies other
keys too, (variant, depth, {key: value, ...}); rhs another group or a number (the paper's); relation ">" or
"<", or "within" (|lhs - rhs| < margin); the report tests it over the seeds (resnet_jax/report/verdicts.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import pathlib
import re
from typing import Any, Callable

from resnet_jax.errors import ConfigError
from resnet_jax.analysis.analyses import make_options

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STUDY_FILE = "study.json"  # written under a sweep's root: the study path and its members
CLAIM_METRICS = ("test_error", "train_error")  # final errors %, as in the report's table
CLAIM_RELATIONS = (">", "<", "within")


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a study: its work directory name and the base config's arguments."""
  name: str
  args: dict[str, Any]

  @property
  def arg_string(self) -> str:
    return ",".join(f"{key}={value}" for key, value in self.args.items())


def group_name(group: tuple) -> str:
  """'plain-56', 'residual-20-batch1024-lr_scalinglinear': the members' names without the seed. A group's third
  item, where there is one, holds the other keys' values, as a dict or as (key, value) pairs."""
  variant, depth, *extra = group
  items = (extra[0].items() if isinstance(extra[0], dict) else extra[0]) if extra else ()
  return "-".join([variant, str(depth), *(f"{key}{value}" for key, value in items)])


@dataclasses.dataclass(frozen=True)
class Claim:
  """What a study is meant to show, as a test its report runs over the seeds: the final `metric` of
  the `lhs` group is above (">") or below ("<") `rhs` + `margin`, or "within" `margin` points of `rhs`;
  `rhs` is another group or a number (the paper's, in %). A group is the members that differ only by seed:
  (variant, depth), and where GRID varies other keys too, (variant, depth, {key: value} for each of them),
  e.g. ("residual", 20, {"batch": 1024, "lr_scaling": "linear"})."""
  text: str
  metric: str
  lhs: tuple
  relation: str
  rhs: tuple | float
  margin: float = 0.0

  @property
  def formal(self) -> str:
    """'train_error: plain-56 > plain-20', 'test_error: residual-20 within 0.5 of 8.75'."""
    lhs, rhs = (group_name(s) if isinstance(s, tuple) else f"{s:g}" for s in (self.lhs, self.rhs))
    if self.relation == "within":
      return f"{self.metric}: {lhs} within {self.margin:g} of {rhs}"
    shift = f" {'+' if self.margin > 0 else '-'} {abs(self.margin):g}" if self.margin else ""
    return f"{self.metric}: {lhs} {self.relation} {rhs}{shift}"


def degradation_claims(shallow: int, deep: int, no_worse_by: float) -> list[Claim]:
  """The paper's plain-vs-residual claims for two depths, in training and in test error: the deep plain
  net is worse than the shallow one (the degradation problem), the deep residual net better than the
  deep plain one and worse than the shallow residual one by less than `no_worse_by` points; and the
  paper's "deeper residual nets are better" in test error."""
  claims, points = [], f"{no_worse_by:g} point" + ("" if no_worse_by == 1 else "s")
  for metric, kind, why in (("train_error", "training", " (the degradation problem)"), ("test_error", "test", "")):
    claims += [
        Claim(f"plain-{deep} has higher {kind} error than plain-{shallow}{why}", metric, ("plain", deep), ">",
              ("plain", shallow)),
        Claim(f"residual-{deep} has lower {kind} error than plain-{deep}", metric, ("residual", deep), "<",
              ("plain", deep)),
        Claim(f"residual-{deep}'s {kind} error is no worse than residual-{shallow}'s (by less than {points})", metric,
              ("residual", deep), "<", ("residual", shallow), margin=no_worse_by)]
  return claims + [Claim(f"deeper residual nets are better (the paper): residual-{deep} has lower test error "
                         f"than residual-{shallow}", "test_error", ("residual", deep), "<", ("residual", shallow))]


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
  claims: list[Claim] = dataclasses.field(default_factory=list)  # what the report tests over seeds

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


def _number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def check_claims(claims: Any, grid: dict[str, list], members: list[Member],
                 fail: Callable[[str], ConfigError]) -> list[Claim]:
  """The study's CLAIMS with groups as (variant, depth, ((key, value), ...)) and numbers as floats;
  `fail(message)` makes the ConfigError of a bad one (naming the study file, the field and the allowed values)."""
  if not isinstance(claims, (list, tuple)):
    raise fail("CLAIMS must be a list of Claim(text, metric, lhs, relation, rhs, margin=0.0) "
               "(from resnet_jax.studies.study import Claim)")
  varied = [k for k in grid if k not in ("variant", "depth", "seed") and len(grid[k]) > 1]
  groups = list(dict.fromkeys((str(m.args.get("variant", "?")), m.args.get("depth", "?"),
                               tuple((k, m.args[k]) for k in varied)) for m in members))

  def group(index: int, field: str, value: Any) -> tuple:
    """The group as (variant, depth, ((key, value), ...)), the keys in GRID's order."""
    if (isinstance(value, tuple) and len(value) == 2 + bool(varied) and isinstance(value[0], str)
        and isinstance(value[1], int) and (not varied or isinstance(value[2], dict) and set(value[2]) == set(varied))):
      wanted = (value[0], value[1], tuple((k, value[2][k]) for k in varied) if varied else ())
      for variant, depth, extra in groups:  # variant and depth match anything where GRID does not set them
        if ("variant" not in grid or variant == wanted[0]) and ("depth" not in grid or depth == wanted[1]) \
            and extra == wanted[2]:
          return wanted
    allowed = ", ".join(repr((v, d, dict(e)) if varied else (v, d)) for v, d, e in groups)
    shape = "(variant, depth, {" + ", ".join(f"{k!r}: ..." for k in varied) + "})" if varied else "(variant, depth)"
    raise fail(f"CLAIMS[{index}].{field} {value!r} is not a {shape} group of the study: "
               f"allowed values are {allowed}" + (", or a number" if field == "rhs" else ""))

  checked = []
  for index, claim in enumerate(claims):
    if not isinstance(claim, Claim):
      raise fail(f"CLAIMS[{index}] must be Claim(text, metric, lhs, relation, rhs, margin=0.0), got {claim!r}")
    if not isinstance(claim.text, str) or not claim.text.strip():
      raise fail(f"CLAIMS[{index}].text must be a sentence saying what the claim means")
    for field, allowed in (("metric", CLAIM_METRICS), ("relation", CLAIM_RELATIONS)):
      if getattr(claim, field) not in allowed:
        raise fail(f"CLAIMS[{index}].{field} {getattr(claim, field)!r} is invalid: allowed values are "
                   f"{', '.join(allowed)}")
    if not _number(claim.margin) or (claim.relation == "within" and claim.margin <= 0):
      raise fail(f"CLAIMS[{index}].margin {claim.margin!r} must be a number of points"
                 + (" above 0 (within: |lhs - rhs| < margin)" if claim.relation == "within" else ""))
    rhs = float(claim.rhs) if _number(claim.rhs) else group(index, "rhs", claim.rhs)
    checked.append(dataclasses.replace(claim, lhs=group(index, "lhs", claim.lhs), rhs=rhs,
                                       margin=float(claim.margin)))
  return checked


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
      slurm=list(sbatch), claims=check_claims(getattr(module, "CLAIMS", []), grid, members, fail))
