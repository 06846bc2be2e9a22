"""`resnet-jax sweep`: run every unfinished member of a study, one work directory each under a root.

A member is finished when <workdir>/finished.json records the member's num_steps; any other
member runs (an interrupted one resumes from its latest checkpoint). The sweep writes
<root>/study.json (the study path and its members), which `resnet-jax report` reads.
"""

from __future__ import annotations

import json
import os
import sys
import time

from resnet_jax.config import ConfigError
from resnet_jax.experiments import launchers
from resnet_jax.experiments.study import Member, Study, load_study
from resnet_jax.train.workdir import FINISHED_FILE

STUDY_FILE = "study.json"
LAUNCHERS = ("local", "parallel", "slurm")


def train_command(study: Study, member: Member, workdir: str, overrides: list[str]) -> list[str]:
  """The subprocess that trains (or resumes) one member."""
  return [sys.executable, "-m", "resnet_jax.cli", "train", "--config", study.spec(member),
          "--workdir", workdir, *overrides]


def member_status(workdir: str, num_steps: int) -> str:
  """'finished', 'resume@<step>' (has a checkpoint) or 'new'."""
  finished = os.path.join(workdir, FINISHED_FILE)
  if os.path.exists(finished):
    with open(finished) as f:
      if json.load(f).get("step") == num_steps:
        return "finished"
  checkpoints = os.path.join(workdir, "checkpoints")
  steps = [int(d) for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(checkpoints) else []
  return f"resume@{max(steps)}" if steps else "new"


def _num_steps(study: Study, member: Member, overrides: list[str]) -> int:
  from resnet_jax.cli import load_config
  try:
    return int(load_config(study.spec(member), overrides).train.num_steps)
  except ConfigError as error:
    raise ConfigError(f"study {study.path}: member {member.name}: {error}") from None


def _write_study_file(study: Study, root: str, overrides: list[str]) -> None:
  record = dict(study=study.path, base_config=study.base_config_path, overrides=overrides,
                members=[dict(name=m.name, args=m.args) for m in study.members])
  path = os.path.join(root, STUDY_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=2)
  os.replace(path + ".tmp", path)


def _print_plan(study: Study, root: str, overrides: list[str], statuses: dict[str, str], steps: dict) -> None:
  print(f"study {study.path}: {len(study.members)} members of {study.base_config}, root {root}")
  if overrides:
    print(f"overrides: {' '.join(overrides)}")
  width = max(len(m.name) for m in study.members)
  for m in study.members:
    detail = f"{steps[m.name]} steps" if m.name in steps else ""
    print(f"  {m.name:<{width}}  {statuses.get(m.name, '?'):<12}  {m.arg_string}  {detail}")


def run_sweep(study_path: str, root: str, launcher: str = "local", dry_run: bool = False,
              overrides: list[str] | tuple[str, ...] = (), report: bool = False) -> list[str]:
  """Run (or with dry_run only list) the unfinished members of a study; returns the failed names."""
  if launcher not in LAUNCHERS:
    raise ConfigError(f"--launcher {launcher!r} is invalid: allowed values are {', '.join(LAUNCHERS)}")
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    raise ConfigError(f"unrecognised arguments {unknown}: fields are overridden as --config.<section>.<field>=<value>")
  study = load_study(study_path)
  overrides = [*study.overrides, *overrides]
  workdir = lambda m: os.path.join(root, m.name)
  if not os.path.exists(study.base_config_path):
    if not dry_run:
      raise ConfigError(f"study {study_path}: base config {study.base_config} does not exist "
                        f"(looked for {study.base_config_path})")
    _print_plan(study, root, overrides, {}, {})
    print(f"note: base config {study.base_config} does not exist yet: members listed without loading it")
    return []
  steps = {m.name: _num_steps(study, m, overrides) for m in study.members}
  statuses = {m.name: member_status(workdir(m), steps[m.name]) for m in study.members}
  if dry_run:
    _print_plan(study, root, overrides, statuses, steps)
    example = study.members[0]
    print(f"each member runs: {' '.join(train_command(study, example, workdir(example), overrides))}")
    return []
  os.makedirs(root, exist_ok=True)
  _write_study_file(study, root, overrides)
  jobs = []
  for m in study.members:
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
  print(f"sweep: {len(jobs) - len(failed)} ran, {len(study.members) - len(jobs)} skipped, {len(failed)} failed "
        f"in {launchers.duration(time.monotonic() - start)}", flush=True)
  if report:
    if failed:
      print(f"report skipped: {len(failed)} members failed ({', '.join(failed)})")
    else:
      from resnet_jax.experiments.report import make_report
      print(f"report: {make_report(root)}", flush=True)
  return failed
