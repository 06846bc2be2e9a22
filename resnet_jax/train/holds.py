"""What every kind of hold on a work directory shares (writer_lock.WriterLock picks the kind): the holder's
record, how a refusal names it, and the interface."""

from __future__ import annotations

import os
import platform
import time

from resnet_jax.errors import ConfigError

LOCK_FILE = "lock"


class WorkdirBusy(ConfigError):
  """Another live process holds the work directory."""


def holder_record() -> dict:
  """This process as a lock names it."""
  env = os.environ
  job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_JOB_ID" in env
         else env.get("SLURM_JOB_ID"))
  return dict(host=platform.node(), pid=os.getpid(), slurm_job=job, since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def describe_holder(record: dict) -> str:
  """'pid 123 on host vm (Slurm job 45_1) since 2026-12-02T10:00:00+0000'."""
  if not record:
    return "another process that is starting (it has not signed the lock file yet)"
  job = f" (Slurm job {record['slurm_job']})" if record.get("slurm_job") else ""
  return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}{job} since {record.get('since', '?')}"


class Hold:
  """The hold on one work directory; `release` (or process exit) ends it. With sign=False a local lock file
  keeps naming the previous holder until `sign` (a run that may still be refused writes nothing). `lost`:
  whether another run took the hold over (a lease that ran out while this process stalled)."""

  lost = False

  def sign(self) -> None:
    raise NotImplementedError

  def release(self) -> None:
    raise NotImplementedError

  def __enter__(self) -> "Hold":
    return self

  def __exit__(self, *exc) -> None:
    self.release()
