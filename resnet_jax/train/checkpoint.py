"""Checkpoints through orbax-checkpoint: async, atomic, keep-N, restorable on any device count."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


CHECKPOINT_DIR = "checkpoints"


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint's step in a work directory, or None; creates nothing.

  Orbax names a checkpoint after its step once it is complete (in-progress saves carry a
  temporary suffix), so only finished checkpoints count.
  """
  folder = os.path.join(workdir, CHECKPOINT_DIR)
  steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


class Checkpointer:
  """Saves and restores the whole TrainState (model, optimiser, step = data position)."""

  def __init__(self, workdir: str, keep: int = 3):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, like, step: int | None = None):
    """Restore into the shapes, dtypes and shardings of `like` (a state built for this run)."""
    step = self.latest_step() if step is None else step
    if step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step}; available: {self.all_steps()}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
