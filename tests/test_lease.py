"""One writer per work directory on object storage: a lease object on the test GCS server (tools/fake_gcs.py).

A live holder refuses a second one naming it and how long its lease runs; a holder killed with -9 stops
renewing, and its lease is taken over once it has run out; a holder that stalls past its lease loses it.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from resnet_jax import storage
from resnet_jax.train import lease, writer_lock

HOLD = ("import sys; from resnet_jax.train.writer_lock import WriterLock; held = WriterLock(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read()")


def wait_until_free(workdir: str, timeout: float) -> None:
  """Wait for the lease on `workdir` to run out (polling the server; fails after `timeout` s)."""
  deadline = time.monotonic() + timeout
  while writer_lock.holder(workdir) is not None:
    assert time.monotonic() < deadline, f"the lease on {workdir} still runs after {timeout} s"
    time.sleep(0.1)


def test_a_held_lease_refuses_a_second_holder_and_is_released(gcs_dir):
  with writer_lock.WriterLock(gcs_dir) as held:
    assert isinstance(held, lease.Lease)
    assert writer_lock.holder(gcs_dir)["pid"] == os.getpid()
    with pytest.raises(writer_lock.WorkdirBusy, match=rf"is being written by pid {os.getpid()} on host \S+ since "
                       r".*, whose lease on gs://\S+/lock runs for another \d+ s"):
      writer_lock.WriterLock(gcs_dir)
  assert writer_lock.holder(gcs_dir) is None and not storage.exists(storage.join(gcs_dir, "lock"))
  writer_lock.WriterLock(gcs_dir).release()  # released: free again
  assert not storage.exists(gcs_dir)  # nothing else was written


def test_the_lease_is_renewed_while_the_holder_lives(gcs_dir, monkeypatch):
  # A lease of 3 s renewed every 0.75 s: a renewal may come 2 s late on a busy machine and still keep it.
  monkeypatch.setenv(lease.LEASE_ENV, "3")
  with writer_lock.WriterLock(gcs_dir) as held:
    generation = held._blob.generation
    deadline = time.monotonic() + 30
    while held._blob.generation == generation:
      assert time.monotonic() < deadline
      time.sleep(0.05)
    time.sleep(3.5)  # longer than the lease: only renewals keep it
    assert writer_lock.holder(gcs_dir)["pid"] == os.getpid() and not held.lost


def test_a_killed_holders_lease_is_taken_over_once_it_runs_out(gcs_dir, monkeypatch):
  monkeypatch.setenv(lease.LEASE_ENV, "6")  # the second holder below asks within it, even on a busy machine
  holder = subprocess.Popen([sys.executable, "-c", HOLD, gcs_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
  try:
    assert holder.stdout.readline() == "held\n"
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with pytest.raises(writer_lock.WorkdirBusy, match=rf"pid {holder.pid} on host .* runs for another [0-6] s"):
    writer_lock.WriterLock(gcs_dir)
  wait_until_free(gcs_dir, 30)
  with writer_lock.WriterLock(gcs_dir):
    assert writer_lock.holder(gcs_dir)["pid"] == os.getpid()


def test_a_holder_that_stalls_past_its_lease_loses_it(gcs_dir, monkeypatch):
  monkeypatch.setenv(lease.LEASE_ENV, "2")
  first = writer_lock.WriterLock(gcs_dir)
  first._stop.set()  # stalls: no renewal
  first._thread.join()
  wait_until_free(gcs_dir, 30)
  second = writer_lock.WriterLock(gcs_dir)
  first._stop.clear()
  first._renew_once()
  assert first.lost and "pid" in first.lost_to()
  first.release()  # a lost lease is left to its new holder
  assert writer_lock.holder(gcs_dir)["pid"] == os.getpid() and not second.lost
  second.release()
