"""One writer per work directory on object storage (gs://), which has no locks: a lease.

<workdir>/lock is an object naming the holder (host, pid, Slurm job, start) and the lease's length. It is
created only if absent (a generation precondition, `if_generation_match=0`): of two runs starting at once,
one creates it and the other is refused. The holder rewrites it every `lease_s / 4` seconds from a
background thread, each time on condition that it is still the generation it wrote last, so the longest
gap between renewals is a quarter of the lease plus one request. The lease runs until `lease_s` after the
object's last update (the storage server's clock, read against this host's: NTP keeps cloud VMs within
milliseconds). A holder that dies (kill -9, a lost VM) stops renewing; once its lease has run out, a new
run takes it over by rewriting the object on condition that it is still the expired generation (of two
takers one wins). A holder whose renewal finds another generation has lost the lease (it stalled past the
expiry and was taken over): `lost` says so and the trainer stops without saving. Release deletes the object.

The lease's length is $RESNET_JAX_LEASE_S (default 60 s): how long a dead holder blocks the next run.
"""

from __future__ import annotations

import datetime
import json
import os
import threading

from resnet_jax import storage
from resnet_jax.errors import ConfigError
from resnet_jax.train.holds import LOCK_FILE, Hold, WorkdirBusy, describe_holder, holder_record

LEASE_ENV = "RESNET_JAX_LEASE_S"
DEFAULT_LEASE_S = 60.0


def lease_seconds() -> float:
  value = os.environ.get(LEASE_ENV, str(DEFAULT_LEASE_S))
  try:
    seconds = float(value)
  except ValueError:
    seconds = 0.0
  if not seconds > 0:
    raise ConfigError(f"{LEASE_ENV}={value!r} is invalid: give the lease's length in seconds, > 0")
  return seconds


def _blob(workdir: str):
  """The lease object of `workdir` through google-cloud-storage (which honours STORAGE_EMULATOR_HOST)."""
  storage.configure(workdir)
  from google.cloud import storage as gcs
  bucket, _, prefix = workdir.split("://", 1)[1].partition("/")
  name = "/".join(p for p in (prefix.strip("/"), LOCK_FILE) if p)
  return _client(gcs).bucket(bucket).blob(name)


_CLIENT = None


def _client(gcs):
  global _CLIENT
  if _CLIENT is None:
    _CLIENT = gcs.Client()
  return _CLIENT


def _remaining(blob, record: dict) -> float:
  """Seconds the lease in `blob` (its metadata loaded) still runs."""
  expires = blob.updated + datetime.timedelta(seconds=float(record.get("lease_s", DEFAULT_LEASE_S)))
  return (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def _read(blob) -> tuple[dict, float] | None:
  """(record, seconds left) of the lease object, loading its generation; None when there is none."""
  from google.api_core import exceptions
  try:
    blob.reload()
    text = blob.download_as_bytes(if_generation_match=blob.generation)
  except (exceptions.NotFound, exceptions.PreconditionFailed):  # none, or it changed meanwhile: read again
    return None if not blob.exists() else _read(blob)
  try:
    record = json.loads(text or b"{}")
  except ValueError:
    record = {}
  return record, _remaining(blob, record)


def current_holder(workdir: str) -> dict | None:
  """The record of a lease that still runs on `workdir`, or None."""
  found = _read(_blob(workdir))
  return found[0] if found and found[1] > 0 else None


class Lease(Hold):
  """The lease on one URL work directory, renewed from a thread until `release` (or process exit)."""

  def __init__(self, workdir: str):
    from google.api_core import exceptions
    self.workdir, self.path, self.lost = workdir, storage.join(workdir, LOCK_FILE), False
    self.lease_s = lease_seconds()
    self._blob = _blob(workdir)
    self._record = json.dumps(dict(holder_record(), lease_s=self.lease_s))
    try:
      self._blob.upload_from_string(self._record, content_type="application/json", if_generation_match=0)
    except exceptions.PreconditionFailed:
      self._take_over_expired(exceptions)
    self._stop, self._released = threading.Event(), False
    self._thread = threading.Thread(target=self._renew, name="workdir-lease", daemon=True)
    self._thread.start()

  def _take_over_expired(self, exceptions) -> None:
    """Rewrite a lease that ran out (its holder died); refuse, naming the holder, one that runs."""
    found = _read(self._blob)
    try:
      if found is None:  # released meanwhile
        self._blob.upload_from_string(self._record, content_type="application/json", if_generation_match=0)
        return
      record, left = found
      if left <= 0:
        self._blob.upload_from_string(self._record, content_type="application/json",
                                      if_generation_match=self._blob.generation)
        return
    except exceptions.PreconditionFailed:  # another run took it first
      found = _read(self._blob)
      record, left = found if found else ({}, 0.0)
    raise WorkdirBusy(f"--workdir {self.workdir} is being written by {describe_holder(record)}, whose lease on "
                      f"{self.path} runs for another {max(left, 0):.0f} s (renewed while it lives): one run per work "
                      "directory; wait for it, stop it, or use another --workdir") from None

  def _renew(self) -> None:
    while not self._stop.wait(self.lease_s / 4) and not self.lost:
      self._renew_once()

  def _renew_once(self) -> None:
    """Rewrite the lease if it is still ours; else mark it lost."""
    from google.api_core import exceptions
    try:
      self._blob.upload_from_string(self._record, content_type="application/json",
                                    if_generation_match=self._blob.generation)
    except exceptions.PreconditionFailed:
      self.lost = True
    except Exception:  # noqa: BLE001 - a failed request (the network): the next renewal tries again
      pass

  def sign(self) -> None:
    """Nothing: the lease object names its holder from the start."""

  def release(self) -> None:
    if self._released:
      return
    self._released = True
    self._stop.set()
    self._thread.join()
    if not self.lost:
      from google.api_core import exceptions
      try:
        self._blob.delete(if_generation_match=self._blob.generation)
      except (exceptions.NotFound, exceptions.PreconditionFailed):
        pass

  def lost_to(self) -> str:
    """Who holds the lease this run lost."""
    found = _read(_blob(self.workdir))
    return describe_holder(found[0]) if found else "nobody (it was deleted)"

