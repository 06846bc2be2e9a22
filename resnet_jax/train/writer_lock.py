"""One writer per work directory: a run holds <workdir>/lock from before it writes anything until it exits.

`WriterLock(workdir)` is a FileLock for a local directory (below) and a lease.Lease on object storage
(gs://), which has no locks.

The hold is an exclusive `flock` on the file, taken by the file system for the holding process, so it
ends with the process however that ends (kill -9 included): a killed holder never blocks a new run.
The file names the holder (host, pid, Slurm job, start time) for the refusal message. Across hosts the
shared file system's lock manager decides: NFS (v4, or v3 with lockd) and Lustre mounted with `flock`
grant it to one client at a time and release a dead client's hold when its lease ends (NFSv4: about
90 s). On a file system without locks the run is refused rather than left unguarded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import time

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.storage import name_in_errors

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


def _read(path: str) -> dict:
  """The holder's record; {} when the file names nobody, or a process of this host that is gone (the
  previous holder's record, not yet signed over by the live one)."""
  try:
    with open(path) as f:
      record = json.loads(f.read() or "{}")
  except (OSError, ValueError):
    return {}
  if record.get("host") == platform.node():
    try:
      os.kill(record["pid"], 0)
    except ProcessLookupError:
      return {}
    except (KeyError, TypeError, PermissionError):
      pass
  return record


class WriterLock:
  """The hold on one work directory; `release` (or process exit) ends it. With sign=False a local lock file
  keeps naming the previous holder until `sign` (a run that may still be refused writes nothing). `lost`:
  whether another run took the hold over (a lease that ran out while this process stalled)."""

  lost = False

  def __new__(cls, workdir: str, sign: bool = True):
    del sign
    if cls is WriterLock:  # the kind of hold follows the path
      from resnet_jax.train.lease import Lease
      cls = Lease if storage.is_url(workdir) else FileLock
    return super().__new__(cls)

  def sign(self) -> None:
    raise NotImplementedError

  def release(self) -> None:
    raise NotImplementedError

  def __enter__(self) -> "WriterLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


class FileLock(WriterLock):
  """An exclusive flock on <workdir>/lock, which names its holder once signed."""

  def __init__(self, workdir: str, sign: bool = True):
    self.path = os.path.join(workdir, LOCK_FILE)
    os.makedirs(workdir, exist_ok=True)
    self._file = open(self.path, "a+b", buffering=0)  # unbuffered: a full disk fails the write, not the close
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      self._file.close()
      if error.errno in (errno.EAGAIN, errno.EACCES):
        raise WorkdirBusy(f"--workdir {workdir} is being written by {describe_holder(_read(self.path))}: "
                          "one run per work directory; wait for it, stop it, or use another --workdir") from None
      raise ConfigError(f"--workdir {workdir}: its file system cannot lock {self.path} ({error.strerror}), so a "
                        "second run could write it at the same time: use a work directory on a file system "
                        "with locks") from None
    if sign:
      self.sign()

  def sign(self) -> None:
    """Name this process as the holder in the file (once the run is going to write: a refused run
    leaves the file as it was)."""
    record = json.dumps(holder_record()).encode()
    with name_in_errors(self.path):
      self._file.seek(0)
      self._file.truncate()
      written = 0
      while written < len(record):  # a short write when the disk fills; the next one raises
        written += self._file.write(record[written:])

  def release(self) -> None:
    if not self._file.closed:
      self._file.close()  # closing the descriptor ends the flock; the file stays, naming the last holder


def holder(workdir: str) -> dict | None:
  """The live holder's record ({} while it has not signed), or None when no process holds `workdir`."""
  if storage.is_url(workdir):
    from resnet_jax.train.lease import current_holder
    return current_holder(workdir)
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return _read(path)
    fcntl.flock(f, fcntl.LOCK_UN)
  return None
