"""Checkpoints through orbax-checkpoint: async, atomic, keep-N, restorable on any device count, in a local
or URL (gs://) work directory. A damaged checkpoint (a partial copy, a disk error) is moved aside and the
newest one that restores is used."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from typing import Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from resnet_jax import storage
from resnet_jax.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"  # beside checkpoints/, where orbax never looks: damaged ones moved aside
ITEM = "default"  # the one item of a StandardSave checkpoint
# TensorStore's status codes for data that is not what its metadata says (a file cut short, changed or
# missing); others (UNAVAILABLE, PERMISSION_DENIED, ...) are the storage's, not the checkpoint's, and raise.
DAMAGE_CODES = ("OUT_OF_RANGE", "DATA_LOSS", "FAILED_PRECONDITION", "NOT_FOUND")


class CheckpointsDamaged(ConfigError):
  """No checkpoint of a work directory restores."""
# Write failures a user fixes by freeing space or making the work directory writable.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint's step in a work directory, or None; creates nothing.

  Orbax names a checkpoint after its step once it is complete (in-progress saves carry a
  temporary suffix), so only finished checkpoints count.
  """
  folder = storage.join(workdir, CHECKPOINT_DIR)
  if not storage.isdir(folder):
    return None
  return max(ocp.utils.checkpoint_steps(storage.epath(folder) if storage.is_url(folder) else folder), default=None)


def storage_failure(error: OSError, workdir: str | None) -> str:
  """One line for a run stopped by a full or read-only disk: what failed, what is saved, how to resume."""
  fix = "free space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
  what = f"{error.filename}: {error.strerror}" if error.filename else str(error)
  if workdir is None:
    return f"{what}; {fix} and run the same command again"
  step = latest_step(workdir)
  saved = "no checkpoint is saved yet" if step is None else \
      f"{step} steps are saved in {storage.join(workdir, CHECKPOINT_DIR, str(step))}"
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
  log with errors from background threads. Every process must agree (the save is collective). Object
  storage has no free space to ask for."""
  if storage.is_url(directory):
    return
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
    self.workdir = workdir
    self.directory = storage.shown(storage.join(workdir, CHECKPOINT_DIR))
    storage.configure(self.directory)
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

  def restore_newest(self, like) -> tuple[object, int, list[tuple[int, str, str]]]:
    """(state, step, damaged) from the newest checkpoint that restores. Each newer one that does not is
    moved aside to <workdir>/damaged_checkpoints/<step>-<time> (never deleted): `damaged` lists (step, what
    failed, where it went). Where none restores, nothing is moved and CheckpointsDamaged names them all."""
    failed = []
    for step in sorted(self.all_steps(), reverse=True):
      reason = self._restore_failure(like, step)
      if isinstance(reason, str):
        failed.append((step, reason))
        continue
      damaged = [(s, why, self._move_aside(s)) for s, why in failed]
      if damaged:
        self.manager.reload()
      return reason[0], step, damaged
    raise CheckpointsDamaged(f"--workdir {self.workdir}: no checkpoint restores: "
                             + "; ".join(f"{storage.join(self.directory, str(s))} ({why})" for s, why in failed)
                             + ": restore one from a copy, or use another --workdir; nothing was moved")

  def _restore_failure(self, like, step: int) -> tuple[object] | str:
    """(state,) restored from `step`, or what is damaged in it; any other error raises. Every process
    agrees (a multi-process job restores collectively)."""
    try:
      if not storage.isdir(storage.join(self.directory, str(step), ITEM)):
        raise FileNotFoundError(errno.ENOENT, f"its {ITEM}/ folder is missing")
      result = (self.restore(like, step),)
    except Exception as error:  # noqa: BLE001 - what is not damage is raised again by _damage
      result = _damage(error)
    failed = isinstance(result, str)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      if bool(np.any(multihost_utils.process_allgather(np.asarray(failed)))) and not failed:
        result = "it failed to restore in another process"
    return result

  def _move_aside(self, step: int) -> str:
    """Move a damaged step's folder under damaged_checkpoints/ (process 0; the others wait for it)."""
    target = storage.join(self.workdir, DAMAGED_DIR, f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
    if jax.process_index() == 0:
      storage.move(storage.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
    return target

  def close(self) -> None:
    with _as_os_errors(self.directory):
      self.manager.wait_until_finished()
      self.manager.close()


def _damage(error: BaseException) -> str:
  """What a failed restore says is damaged in the checkpoint: a TensorStore read of data that is not
  what its metadata promises, metadata that does not parse, a file that is missing. Anything else (a
  bug, the storage unreachable) is raised again."""
  seen = error
  while seen is not None:
    text = str(seen).strip().splitlines()[0] if str(seen).strip() else ""
    code = text.split(":", 1)[0]
    if isinstance(seen, (ValueError, OSError)) and code in DAMAGE_CODES:
      key = re.search(r'reading "([^"]+)"', text)
      return f"{code} reading {key[1].split('/')[0]}" if key else text[:120]
    if isinstance(seen, json.JSONDecodeError):
      return f"unreadable metadata ({seen.msg})"
    if isinstance(seen, FileNotFoundError):
      return seen.strerror or str(seen)
    seen = seen.__cause__ or seen.__context__
  raise error
