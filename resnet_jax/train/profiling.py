"""A profile of a window of training steps: a jax.profiler trace that TensorBoard's profile plugin (xprof)
opens, in <workdir>/profile."""

from __future__ import annotations

import contextlib
import shutil
import tempfile

import jax
import ml_collections

from resnet_jax import storage

PROFILE_DIR = "profile"


class Profile:
  """A jax.profiler trace of the steps [train.profile_start_step, + train.profile_steps) into
  <workdir>/profile (TensorBoard's profile plugin opens it), each step annotated; off (train.profile_steps
  = 0, the default) it costs one comparison a step. jax.profiler writes local files: for a URL work
  directory the trace goes to a temporary folder and is copied there when the window ends."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.first = config.train.get("profile_start_step", 0)
    self.end = self.first + config.train.get("profile_steps", 0)
    self.target, self.folder, self.tracing = storage.join(workdir, PROFILE_DIR), None, False

  def step(self, step: int):
    """Around a train step: starts the trace at the window's first step, annotates the window's steps."""
    if not self.first <= step < self.end:
      return contextlib.nullcontext()
    if not self.tracing:
      self.folder = tempfile.mkdtemp(prefix="resnet-jax-profile-") if storage.is_url(self.target) else self.target
      jax.profiler.start_trace(self.folder)
      self.tracing = True
    return jax.profiler.StepTraceAnnotation("train", step_num=step)

  def end_window(self, step: int, state) -> None:
    """After the window's last step: wait for the devices to finish it, then stop the trace."""
    if self.tracing and step >= self.end:
      jax.block_until_ready(state)
      self.close()

  def close(self) -> None:
    if not self.tracing:
      return
    self.tracing = False
    jax.profiler.stop_trace()
    if self.folder != self.target:
      storage.upload_tree(self.folder, self.target)
      shutil.rmtree(self.folder, ignore_errors=True)
    if jax.process_index() == 0:
      print(f"profile of the steps from {self.first} to {self.end} written to {self.target} "
            f"(tensorboard --logdir {self.target})", flush=True)
