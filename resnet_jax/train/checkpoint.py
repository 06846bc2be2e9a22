"""Checkpoints through orbax-checkpoint: async, atomic, keep-N, restorable on any device count."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from typing import Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp


CHECKPOINT_DIR = "checkpoints"
# Write failures a user fixes by freeing space or making the work directory writable.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint's step in a work directory, or None; creates nothing.

  Orbax names a checkpoint after its step once it is complete (in-progress saves carry a
  temporary suffix), so only finished checkpoints count.
  """
  folder = os.path.join(workdir, CHECKPOINT_DIR)
  steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


def storage_failure(error: OSError, workdir: str | None) -> str:
  """One line for a run stopped by a full or read-only disk: what failed, what is saved, how to resume."""
  fix = "free space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
  what = f"{error.filename}: {error.strerror}" if error.filename else str(error)
  if workdir is None:
    return f"{what}; {fix} and run the same command again"
  step = latest_step(workdir)
  saved = "no checkpoint is saved yet" if step is None else \
      f"{step} steps are saved in {os.path.join(workdir, CHECKPOINT_DIR, str(step))}"
  return f"{what}; {saved}; {fix} and run the same command to resume"


@contextlib.contextmanager
def _as_os_errors(directory: str) -> Iterator[None]:
  """Failed writes as OSErrors naming `directory`: orbax reports tensorstore's as ValueError('...
  [os_error_code=28]') and some of its own without a file name."""
  try:
    yield
  except OSError as error:
    if error.filename is not None:
      raise
    raise OSError(error.errno, error.strerror, directory) from error
  except Exception as error:
    code = re.search(r"os_error_code='?(\d+)", str(error))
    if code is None:
      raise
    raise OSError(int(code[1]), os.strerror(int(code[1])), directory) from error


def _check_free_space(directory: str, step: int, state) -> None:
  """Refuse a save the disk cannot hold before orbax starts it: a save that fails half-way fills its
  log with errors from background threads. Every process must agree (the save is collective)."""
  needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + 2**20  # + metadata
  free = shutil.disk_usage(directory).free
  short = free < needed
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    short = bool(np.any(multihost_utils.process_allgather(np.asarray(short))))
  if short:
    raise OSError(errno.ENOSPC, f"No space left on device: the checkpoint of step {step} needs about "
                  f"{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free", directory)


class Checkpointer:
  """Saves and restores the whole TrainState (model, optimiser, step = data position).

  A save that cannot be written raises OSError (errno ENOSPC, EDQUOT, ...) naming the checkpoint
  directory, at the latest when the next save starts or the checkpointer closes; the checkpoints
  finished before it stay readable. `last_saved`: the step of the last checkpoint saved or restored.
  """

  def __init__(self, workdir: str, keep: int = 3):
    self.last_saved: int | None = None
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state) -> None:
    with _as_os_errors(self.directory):
      self.manager.wait_until_finished()  # the previous save, and its failure, first
      _check_free_space(self.directory, step, state)
      self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.last_saved = step

  def restore(self, like, step: int | None = None):
    """Restore into the shapes, dtypes and shardings of `like` (a state built for this run)."""
    step = self.latest_step() if step is None else step
    if step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step}; available: {self.all_steps()}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    self.last_saved = step
    return restored

  def close(self) -> None:
    with _as_os_errors(self.directory):
      self.manager.wait_until_finished()
      self.manager.close()
