"""One writer per work directory: a run holds <workdir>/lock from before it writes anything until it exits.

`WriterLock(workdir)` is a FileLock for a local directory (below) and a lease.Lease on object storage
(gs://), which has no locks; both are holds.Hold.

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

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.storage import name_in_errors
from resnet_jax.train.holds import LOCK_FILE, Hold, WorkdirBusy, describe_holder, holder_record  # noqa: F401
from resnet_jax.train.lease import Lease, current_holder


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


class FileLock(Hold):
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


def WriterLock(workdir: str, sign: bool = True) -> Hold:  # noqa: N802 - used as the class of the hold
  """The hold on `workdir` for this run: a FileLock locally, a Lease on object storage. With sign=False a
  local lock file keeps naming the previous holder until `sign` (a run that may still be refused writes
  nothing); raises WorkdirBusy naming the live holder."""
  return Lease(workdir) if storage.is_url(workdir) else FileLock(workdir, sign)


def holder(workdir: str) -> dict | None:
  """The live holder's record ({} while it has not signed), or None when no process holds `workdir`."""
  if storage.is_url(workdir):
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
