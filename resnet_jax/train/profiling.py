"""A profile of a window of training steps: a jax.profiler trace that TensorBoard's profile plugin (xprof)
opens, in <workdir>/profile."""

from __future__ import annotations

import contextlib

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
    self.first = config.train.profile_start_step
    self.end = self.first + config.train.profile_steps
    self.target, self.tracing = storage.join(workdir, PROFILE_DIR), False
    self._folder = contextlib.ExitStack()  # the local folder the trace goes to (storage.local_folder)

  def step(self, step: int):
    """Around a train step: starts the trace at the window's first step, annotates the window's steps."""
    if not self.first <= step < self.end:
      return contextlib.nullcontext()
    if not self.tracing:
      jax.profiler.start_trace(self._folder.enter_context(storage.local_folder(self.target)))
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
    self._folder.close()  # a URL's temporary folder copied there
    if jax.process_index() == 0:
      print(f"profile of the steps from {self.first} to {self.end} written to {self.target} "
            f"(tensorboard --logdir {self.target})", flush=True)
