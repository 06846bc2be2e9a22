"""Sweeps on Slurm: one job-array task per member, submitted with sbatch and followed to the end.

Each task runs its member's train command under a small bash wrapper. Tasks are requeueable and ask
for SIGUSR1 `WARNING_S` seconds before their time limit: the wrapper passes it on as SIGTERM, the
trainer finishes its logging interval, saves a checkpoint and exits 143, and the wrapper requeues
the task, which resumes from that checkpoint. A pre-emption or `scontrol requeue` sends SIGTERM to
the trainer directly (it saves the same way) and Slurm requeues the task; after `scancel` (SIGTERM
too) the task stays cancelled. <root>/slurm.json records every array submitted, so that a sweep run
again follows the tasks still queued instead of submitting their members twice.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from typing import Callable

from resnet_jax.errors import ConfigError
from resnet_jax.studies import launchers
from resnet_jax.studies.launchers import LOG_FILE, Job

SCRIPT_FILE = "sweep.slurm"
SUBMISSIONS_FILE = "slurm.json"
WARNING_S = 120  # the warning this long before the time limit: time to finish an interval and save
POLL_S = 5.0

_WRAPPER = """\
mkdir -p "$workdir"
log="$workdir/{log}"
echo "[slurm] job $SLURM_JOB_ID (task ${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID) on $(hostname), \\
restart ${{SLURM_RESTART_COUNT:-0}}" >> "$log"
"${{command[@]}}" >> "$log" 2>&1 &
trainer=$!
# USR1, the time-limit warning (--signal=B:USR1@...), reaches this shell only: stop the trainer, then requeue.
# TERM (scancel, pre-emption, scontrol requeue) reaches the trainer too; Slurm itself decides what follows.
trap 'requeue=1; kill -TERM "$trainer" 2>/dev/null' USR1
trap 'kill -TERM "$trainer" 2>/dev/null' TERM
wait "$trainer"; status=$?
while kill -0 "$trainer" 2>/dev/null; do wait "$trainer"; status=$?; done
if [ "$status" -eq 143 ] && [ -n "${{requeue:-}}" ]; then
  echo "[slurm] stopped with a checkpoint before the time limit: requeueing task $SLURM_JOB_ID" >> "$log"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
"""


def write_script(jobs: list[Job], path: str, job_name: str) -> str:
  """A job-array script, one task per job; resources come from sbatch's command line (`sbatch_args`)."""
  cases = "\n".join(f"  {i}) workdir={shlex.quote(job.workdir)}; command=({shlex.join(job.command)}) ;;"
                    for i, job in enumerate(jobs))
  logs = os.path.join(os.path.dirname(os.path.abspath(path)), "slurm", "%A_%a.out")
  script = f"""#!/bin/bash
# {len(jobs)} members of a resnet-jax sweep, one array task each (written by `resnet-jax sweep --launcher slurm`).
# Resources: sbatch options on the command line (--slurm-arg, or the study's SLURM list) win over these lines.
#SBATCH --job-name={job_name}
#SBATCH --array=0-{len(jobs) - 1}
#SBATCH --output={logs}
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@{WARNING_S}
set -uo pipefail
cd {shlex.quote(os.getcwd())}
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "no member for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;
esac
{_WRAPPER.format(log=LOG_FILE)}"""
  os.makedirs(os.path.dirname(logs), exist_ok=True)
  with open(path, "w") as f:
    f.write(script)
  return path


def _run(command: list[str]) -> str:
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
  except FileNotFoundError:
    raise ConfigError(f"--launcher slurm needs Slurm's {command[0]} on PATH: run the sweep on a Slurm login node, "
                      "or start a local cluster with `bash tools/local_slurm.sh start`") from None
  if result.returncode:
    message = " ".join((result.stderr or result.stdout).split())
    raise ConfigError(f"{shlex.join(command)} failed: {message}")
  return result.stdout


def submit(script: str, sbatch_args: list[str]) -> str:
  """sbatch the array; its job id."""
  return _run(["sbatch", "--parsable", *sbatch_args, script]).strip().split(";")[0]


def queued(job_ids: list[str]) -> dict[str, str] | None:
  """{'<array job>_<task>': state} of every task of these arrays still in the queue (pending, running,
  requeued, completing); None when squeue could not be asked (slurmctld busy: ask again later)."""
  if not job_ids:
    return {}
  try:
    out = _run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i %T"])
  except ConfigError as error:
    if "Invalid job id" in str(error):  # every array left the queue long ago
      return {}
    return None
  return dict(line.split() for line in out.splitlines() if line.strip())


def _submissions(root: str) -> list[dict]:
  path = os.path.join(root, SUBMISSIONS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)["arrays"]


def _record(root: str, arrays: list[dict]) -> None:
  path = os.path.join(root, SUBMISSIONS_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump({"arrays": arrays}, f, indent=2)
  os.replace(path + ".tmp", path)


def attached_tasks(root: str, names: set[str]) -> dict[str, str]:
  """{member name: task id} for the members among `names` whose task of an earlier submission is still queued."""
  arrays = _submissions(root)
  states = queued([a["job_id"] for a in arrays]) or {}
  tasks = {}
  for array in arrays:
    for index, name in array["tasks"].items():
      task = f"{array['job_id']}_{index}"
      if name in names and task in states:
        tasks[name] = task
  return tasks


def run_slurm(jobs: list[Job], root: str, job_name: str, sbatch_args: list[str],
              finished: Callable[[Job], bool]) -> list[str]:
  """Submit the members not already queued as one array, follow every task until it leaves the queue,
  and return the names of the members that did not finish."""
  attached = attached_tasks(root, {job.name for job in jobs})
  for name, task in attached.items():
    print(f"{name}: already queued as Slurm task {task}: following it", flush=True)
  to_submit = [job for job in jobs if job.name not in attached]
  tasks = dict(attached)
  if to_submit:
    script = write_script(to_submit, os.path.join(root, SCRIPT_FILE), job_name)
    job_id = submit(script, sbatch_args)
    _record(root, [*_submissions(root), dict(job_id=job_id, tasks={str(i): j.name for i, j in enumerate(to_submit)},
                                             sbatch_args=sbatch_args, submitted=time.strftime("%Y-%m-%dT%H:%M:%S"))])
    tasks.update({job.name: f"{job_id}_{i}" for i, job in enumerate(to_submit)})
    print(f"submitted {script} as Slurm job {job_id} ({len(to_submit)} array tasks"
          f"{', sbatch ' + shlex.join(sbatch_args) if sbatch_args else ''})", flush=True)
  return follow(jobs, tasks, finished)


def follow(jobs: list[Job], tasks: dict[str, str], finished: Callable[[Job], bool]) -> list[str]:
  """Poll squeue until every task has left the queue, with the sweep's progress line; the failed names."""
  by_name = {job.name: job for job in jobs}
  progress, failed, states = launchers.StudyProgress(jobs), [], {}
  array_ids = sorted({task.split("_")[0] for task in tasks.values()})
  waiting = dict(tasks)
  while waiting:
    time.sleep(POLL_S)
    now = queued(array_ids)
    if now is None:
      continue
    for name, task in list(waiting.items()):
      if task in now:
        if states.get(name) != now[task]:
          states[name] = now[task]
          print(f"{name}: Slurm task {task} {now[task].lower()}", flush=True)
        continue
      del waiting[name]
      job = by_name[name]
      progress.member_finished(job)
      log = os.path.join(job.workdir, LOG_FILE)
      if finished(job):
        print(f"{name}: finished (Slurm task {task})", flush=True)
      else:
        failed.append(name)
        print(f"{name}: failed (Slurm task {task} left the queue unfinished; log {log}): "
              f"{launchers.last_line(log)}", flush=True)
    if waiting and time.monotonic() - progress.last_line >= launchers.PROGRESS_EVERY_S:
      running = [by_name[name] for name in waiting]
      print(progress.line(running, {name: states.get(name, "?").lower() for name in waiting}), flush=True)
  print(f"Slurm tasks done in {launchers.duration(time.monotonic() - progress.start)}", flush=True)
  return failed
