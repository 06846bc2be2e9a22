"""`resnet-jax sweep`: run every unfinished member of a study, one work directory each under a root.

A member is finished when its finished.json (one per seed with train.num_seeds > 1) records the
member's num_steps; any other member runs, and an interrupted one resumes from its latest
checkpoint. The sweep writes <root>/study.json (the study path and its members) for `report`.
"""

from __future__ import annotations

import json
import os
import sys
import time

from resnet_jax.errors import ConfigError
from resnet_jax.experiments import launchers
from resnet_jax.experiments.runs import latest_checkpoint
from resnet_jax.experiments.study import STUDY_FILE, Member, Study, load_study, select_members
from resnet_jax.train.workdir import FINISHED_FILE

LAUNCHERS = ("local", "parallel", "slurm")


def train_command(study: Study, member: Member, workdir: str, overrides: list[str]) -> list[str]:
  """The subprocess that trains (or resumes) one member."""
  return [sys.executable, "-m", "resnet_jax.cli", "train", "--config", study.spec(member),
          "--workdir", workdir, *overrides]


def member_status(workdir: str, config) -> str:
  """'finished' (every model's finished.json records num_steps), 'resume@<step>' (has a checkpoint) or 'new'."""
  from resnet_jax.train.loop import member_seeds, member_workdirs
  finished = [os.path.join(d, FINISHED_FILE) for d in member_workdirs(workdir, member_seeds(config))]
  steps = []
  for path in finished:
    if os.path.exists(path):
      with open(path) as f:
        steps.append(json.load(f).get("step"))
  if steps == [config.train.num_steps] * len(finished):
    return "finished"
  step = latest_checkpoint(workdir)
  return "new" if step is None else f"resume@{step}"


def _resolve(study: Study, member: Member, overrides: list[str]):
  """The member's full config: its base config arguments plus every override."""
  from resnet_jax.config import load_config
  try:
    return load_config(study.spec(member), overrides)
  except ConfigError as error:
    raise ConfigError(f"study {study.path}: member {member.name}: {error}") from None


def _write_study_file(study: Study, root: str, overrides: list[str]) -> None:
  record = dict(study=study.path, base_config=study.base_config_path, overrides=overrides,
                members=[dict(name=m.name, args=m.args) for m in study.members])
  path = os.path.join(root, STUDY_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=2)
  os.replace(path + ".tmp", path)


def _print_plan(study: Study, members: list[Member], root: str, overrides: list[str], statuses: dict[str, str],
                steps: dict) -> None:
  print(f"study {study.path}: {len(members)} of {len(study.members)} members of {study.base_config}, root {root}")
  if overrides:
    print(f"overrides: {' '.join(overrides)}")
  name_width = max(len(m.name) for m in members)
  arg_width = max(len(m.arg_string) for m in members)
  for m in members:
    detail = f"{steps[m.name]} steps" if m.name in steps else ""
    print(f"  {m.name:<{name_width}}  {statuses.get(m.name, '?'):<12}  {m.arg_string:<{arg_width}}  {detail}")


def run_sweep(study_path: str, root: str, launcher: str = "local", dry_run: bool = False,
              overrides: list[str] | tuple[str, ...] = (), report: bool = False, only: str | None = None
              ) -> list[str]:
  """Run (or with dry_run only list) the unfinished members of a study; returns the failed names.

  `only` ('depth=20,variant=plain') restricts the sweep to the members whose arguments match.
  """
  if launcher not in LAUNCHERS:
    raise ConfigError(f"--launcher {launcher!r} is invalid: allowed values are {', '.join(LAUNCHERS)}")
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    raise ConfigError(f"unrecognised arguments {unknown}: fields are overridden as --config.<section>.<field>=<value>")
  study = load_study(study_path)
  members = select_members(study, only)
  overrides = [*study.overrides, *overrides]
  workdir = lambda m: os.path.join(root, m.name)
  if not os.path.exists(study.base_config_path):
    if not dry_run:
      raise ConfigError(f"study {study_path}: base config {study.base_config} does not exist "
                        f"(looked for {study.base_config_path})")
    _print_plan(study, members, root, overrides, {}, {})
    print(f"note: base config {study.base_config} does not exist yet: members listed without loading it")
    return []
  configs = {m.name: _resolve(study, m, overrides) for m in members}
  steps = {name: config.train.num_steps for name, config in configs.items()}
  statuses = {m.name: member_status(workdir(m), configs[m.name]) for m in members}
  if dry_run:
    _print_plan(study, members, root, overrides, statuses, steps)
    example = members[0]
    print(f"each member runs: {' '.join(train_command(study, example, workdir(example), overrides))}")
    return []
  os.makedirs(root, exist_ok=True)
  _write_study_file(study, root, overrides)
  jobs = []
  for m in members:
    if statuses[m.name] == "finished":
      print(f"{m.name}: skipped (finished at step {steps[m.name]})", flush=True)
    else:
      jobs.append(launchers.Job(m.name, train_command(study, m, workdir(m), overrides), workdir(m)))
  if launcher == "slurm":
    if jobs:
      path = launchers.write_slurm(jobs, os.path.join(root, "sweep.slurm"), f"resnet-jax-{study.name}")
      print(f"wrote {path} ({len(jobs)} array tasks); submit with: sbatch {path}\n"
            f"then, when they are done: resnet-jax report {root}")
    else:
      print("every member is finished: nothing to submit")
    return []
  start = time.monotonic()
  failed = (launchers.run_parallel if launcher == "parallel" else launchers.run_local)(jobs)
  print(f"sweep: {len(jobs) - len(failed)} ran, {len(members) - len(jobs)} skipped, {len(failed)} failed "
        f"in {launchers.duration(time.monotonic() - start)}", flush=True)
  if report:
    if failed:
      print(f"report skipped: {len(failed)} members failed ({', '.join(failed)})")
    else:
      from resnet_jax.experiments.report import make_report
      print(f"report: {make_report(root)}", flush=True)
  return failed
