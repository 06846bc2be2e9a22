"""`resnet-jax sweep`: run every unfinished member of a study, one work directory each under a root.

A member is finished when its finished.json (one per seed with train.num_seeds > 1) records the
member's num_steps; any other member runs, and an interrupted one resumes from its latest
checkpoint. The sweep writes <root>/study.json (the study path and its members) for `report`
(`sweep --report` makes it afterwards: resnet_jax.cli calls the report, the studies never import it).
"""

from __future__ import annotations

import json
import os
import time

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.studies import launchers, slurm
from resnet_jax.train.checkpoint import latest_step
from resnet_jax.studies.study import STUDY_FILE, Member, Study, load_study, select_members
from resnet_jax.train import workdir as workdir_lib
from resnet_jax.train import writer_lock
from resnet_jax.train.loop import member_seeds, programs_key
from resnet_jax.config import load_config

LAUNCHERS = ("local", "parallel", "slurm")


def train_arguments(study: Study, member: Member, workdir: str, overrides: list[str]) -> list[str]:
  """The `resnet-jax` arguments that train (or resume) one member."""
  return ["train", "--config", study.spec(member), "--workdir", workdir, *overrides]


def _recorded_differences(workdir: str, config) -> dict[str, tuple] | None:
  """Fields in which `config` differs from the config recorded in `workdir` (None: nothing recorded)."""
  if not storage.exists(storage.join(workdir, workdir_lib.CONFIG_FILE)):
    return None
  recorded = workdir_lib.recorded_config(workdir).to_dict()
  recorded.pop("derived", None)  # the sweep compares the fields as given; `train` compares them resolved too
  return workdir_lib.config_differences(recorded, config.to_dict())


def member_status(workdir: str, config) -> str:
  """'running' (a live process holds the work directory), 'finished' (same config, every model's
  finished.json written), 'conflict' (the work directory records another experiment: `train` would
  refuse it), 'resume@<step>' (has a checkpoint) or 'new'."""
  if writer_lock.holder(workdir) is not None:
    return "running"
  differences = _recorded_differences(workdir, config)
  if differences and set(differences) - set(workdir_lib.SCHEDULE_FIELDS):
    return "conflict"
  finished = [workdir_lib.read_finished(d) for d in workdir_lib.member_workdirs(workdir, member_seeds(config))]
  if differences == {} and all(finished):
    return "finished"
  step = latest_step(workdir)
  return "new" if step is None else f"resume@{step}"


def _load(study: Study, member: Member, overrides: list[str], args: dict | None = None):
  """The config of `member` (with its arguments replaced by `args`) plus every override."""
  spec = study.spec(member) if args is None else f"{study.base_config_path}:{Member(member.name, args).arg_string}"
  try:
    return load_config(spec, overrides)
  except ConfigError as error:
    raise ConfigError(f"study {study.path}: member {member.name}: {error}") from None


def _probe(value):
  """Another value of the same type, to see which config fields a grid argument sets."""
  return not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float)) else f"{value}_probe"


def check_overrides_spare_the_grid(study: Study, overrides: list[str]) -> None:
  """Refuse overrides of fields that a grid argument sets: members are named by their arguments
  (plain-56-seed0), so `--config.seed=1` would train seed 1 into a directory named seed0."""
  overridden = {o[len("--config."):].partition("=")[0]: o for o in overrides}
  member = study.members[0]
  base = workdir_lib.flatten(_load(study, member, []).to_dict())
  varied = {k for k in member.args if len({str(m.args[k]) for m in study.members}) > 1}
  for key in [k for k in member.args if k in ("variant", "depth", "seed") or k in varied]:  # see member_name
    probed = _load(study, member, [], dict(member.args, **{key: _probe(member.args[key])}))
    fields = {k for k, v in workdir_lib.flatten(probed.to_dict()).items() if base.get(k) != v}
    for field in sorted(fields & overridden.keys()):
      values = ", ".join(dict.fromkeys(str(m.args[key]) for m in study.members))
      raise ConfigError(f"{overridden[field]}: {field} is set by the study's grid argument {key} ({values}), which "
                        f"names the members' work directories (e.g. {member.name}): change GRID in {study.path} "
                        f"or pick members with --only {key}=...")


def _length(config) -> str:
  return f"{config.train.num_steps} steps" if config.train.num_steps else f"{config.train.num_epochs:g} epochs"


def _cost(config) -> float:
  """A member's work relative to the others of its study, for the sweep's ETA."""
  length = config.train.num_steps or config.train.num_epochs
  return float(length * config.data.batch_size * config.train.num_seeds * config.model.depth)


def _write_study_file(study: Study, root: str, overrides: list[str]) -> None:
  record = dict(study=study.path, base_config=study.base_config_path, overrides=overrides,
                members=[dict(name=m.name, args=m.args) for m in study.members])
  storage.write_text(storage.join(root, STUDY_FILE), json.dumps(record, indent=2))


def _print_plan(study: Study, members: list[Member], root: str, overrides: list[str], statuses: dict[str, str],
                steps: dict) -> None:
  print(f"study {study.path}: {len(members)} of {len(study.members)} members of {study.base_config}, root {root}")
  if overrides:
    print(f"overrides: {' '.join(overrides)}")
  name_width = max(len(m.name) for m in members)
  arg_width = max(len(m.arg_string) for m in members)
  for m in members:
    detail = steps.get(m.name, "")
    print(f"  {m.name:<{name_width}}  {statuses.get(m.name, '?'):<12}  {m.arg_string:<{arg_width}}  {detail}")


def _start_order(members: list[Member], configs: dict) -> list[Member]:
  """The first seed of every member before the second, and so on (later seeds reuse the first's compiled
  programs from the compilation cache, and a partial study already has every curve); the longest first
  within a seed, so members running at once finish close together."""
  return sorted(members, key=lambda m: (m.args.get("seed", 0), -_cost(configs[m.name])))


def run_sweep(study_path: str, root: str, launcher: str = "local", dry_run: bool = False,
              overrides: list[str] | tuple[str, ...] = (), only: str | None = None,
              at_once: str = "auto", slurm_args: list[str] | tuple[str, ...] = ()) -> list[str]:
  """Run (or with dry_run only list) the unfinished members of a study; returns the failed names.

  `only` ('depth=20,variant=plain') restricts the sweep to the members whose arguments match; `at_once`
  (--jobs) is how many members run at once on a machine without GPUs (auto: one per core); `slurm_args`
  go to sbatch after the study's SLURM options (launcher slurm; with dry_run the script is only written).
  """
  if launcher not in LAUNCHERS:
    raise ConfigError(f"--launcher {launcher!r} is invalid: allowed values are {', '.join(LAUNCHERS)}")
  launchers.jobs_at_once(at_once, 1)  # validates --jobs before anything runs
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    raise ConfigError(f"unrecognised arguments {unknown}: fields are overridden as --config.<section>.<field>=<value>")
  study = load_study(study_path)
  members = select_members(study, only)
  overrides = [*study.overrides, *overrides]
  sbatch_args = [*study.slurm, *slurm_args]
  if launcher == "slurm" and storage.is_url(root):
    raise ConfigError(f"--root {root}: --launcher slurm needs a root on a file system every node sees, not "
                      "object storage: use --launcher local or parallel (or a shared folder)")
  workdir = lambda m: storage.join(root, m.name)
  if not os.path.exists(study.base_config_path):
    if not dry_run:
      raise ConfigError(f"study {study_path}: base config {study.base_config} does not exist "
                        f"(looked for {study.base_config_path})")
    _print_plan(study, members, root, overrides, {}, {})
    print(f"note: base config {study.base_config} does not exist yet: members listed without loading it")
    return []
  check_overrides_spare_the_grid(study, overrides)
  configs = {m.name: _load(study, m, overrides) for m in members}
  steps = {name: _length(config) for name, config in configs.items()}
  statuses = {m.name: member_status(workdir(m), configs[m.name]) for m in members}
  queued = slurm.attached_tasks(root, set(statuses)) if launcher == "slurm" else {}
  if dry_run:
    _print_plan(study, members, root, overrides, statuses, steps)
    example = members[0]
    job = _job(study, example, workdir(example), overrides, configs[example.name])
    print(f"each member runs: {' '.join(job.command)}")
    if launcher == "slurm":
      unfinished = [m for m in members if statuses[m.name] not in ("finished", "conflict")]
      _write_slurm_script(study, root, [_job(study, m, workdir(m), overrides, configs[m.name]) for m in unfinished],
                          sbatch_args)
    return []
  storage.makedirs(root)
  _write_study_file(study, root, overrides)
  to_run, refused = [], []
  for m in members:
    if statuses[m.name] == "finished":
      print(f"{m.name}: skipped (finished, {steps[m.name]})", flush=True)
    elif statuses[m.name] == "conflict":
      changes = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new)
                          in _recorded_differences(workdir(m), configs[m.name]).items())
      print(f"{m.name}: refused: {workdir(m)} holds another experiment ({changes})", flush=True)
      refused.append(m.name)
    elif statuses[m.name] == "running" and m.name not in queued:
      holder = writer_lock.holder(workdir(m))
      print(f"{m.name}: skipped (running elsewhere: {writer_lock.describe_holder(holder)})", flush=True)
    else:
      to_run.append(m)
  jobs = [_job(study, m, workdir(m), overrides, configs[m.name]) for m in _start_order(to_run, configs)]
  start = time.monotonic()
  if launcher == "slurm":
    done = lambda job: member_status(job.workdir, configs[job.name]) == "finished"
    ran = slurm.run_slurm(jobs, root, f"resnet-jax-{study.name}", sbatch_args, done) if jobs else []
  else:
    ran = (launchers.run_parallel if launcher == "parallel" else launchers.run_local)(jobs, at_once)
  failed = refused + ran
  skipped = len(members) - len(jobs) - len(refused)
  print(f"sweep: {len(jobs) + len(refused) - len(failed)} ran, {skipped} skipped, {len(failed)} failed "
        f"in {launchers.duration(time.monotonic() - start)}", flush=True)
  return failed


def _job(study: Study, member: Member, workdir: str, overrides: list[str], config) -> launchers.Job:
  return launchers.Job(member.name, train_arguments(study, member, workdir, overrides), workdir, cost=_cost(config),
                       programs=programs_key(config))


def _write_slurm_script(study: Study, root: str, jobs: list[launchers.Job], sbatch_args: list[str]) -> None:
  """--dry-run with --launcher slurm: the array script of the unfinished members, not submitted."""
  if not jobs:
    print("every member is finished: no Slurm script to write")
    return
  os.makedirs(root, exist_ok=True)
  path = slurm.write_script(jobs, os.path.join(root, slurm.SCRIPT_FILE), f"resnet-jax-{study.name}")
  print(f"wrote {path} ({len(jobs)} array tasks), not submitted; submit it with: "
        f"sbatch {' '.join([*sbatch_args, path])}")
