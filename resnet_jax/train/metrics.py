"""Metrics: one JSON object per line in <workdir>/metrics.jsonl, TensorBoard events, progress lines."""

from __future__ import annotations

import json
import math
import sys
import time

from resnet_jax import storage
from resnet_jax.storage import name_in_errors


def read_metrics(workdir: str) -> list[dict]:
  """All records of a work directory's metrics.jsonl, in order; a last line cut short (a process
  killed mid-write) is left out."""
  path = storage.join(workdir, "metrics.jsonl")
  if not storage.exists(path):
    return []
  lines = storage.read_text(path).split("\n")
  records = [json.loads(line) for line in lines[:-1] if line.strip()]
  if lines[-1].strip():  # no newline yet: complete only if it parses
    try:
      records.append(json.loads(lines[-1]))
    except json.JSONDecodeError:
      pass
  return records


def _written_by_then(record: dict, step: int) -> bool:
  """Whether the record was written before the checkpoint of `step` was saved: records of later
  steps were not, nor the gradient-norm analysis of step `step` itself (taken before that step trains)."""
  analysis = any(key.startswith("grad_norm/") for key in record)
  return record["step"] < step or (record["step"] == step and not analysis)


def truncate_after(workdir: str, step: int | None) -> None:
  """Keep only the records written before the checkpoint of `step` (None: keep nothing), so that a
  resumed run, which writes the rest again, leaves the file an uninterrupted run would."""
  path = storage.join(workdir, "metrics.jsonl")
  kept = [r for r in read_metrics(workdir) if step is not None and _written_by_then(r, step)]
  storage.write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _import_tensorboardx() -> None:
  """Import tensorboardX without PyTorch: its writer imports torch, where installed, only to accept torch
  tensors (never passed here), which took 2 s of every training process and far more on a cold disk."""
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    return
  sys.modules["torch"] = None  # `import torch` raises ImportError while tensorboardX loads
  try:
    import tensorboardX  # noqa: F401
  finally:
    del sys.modules["torch"]


class _EventFiles:
  """tensorboardX's writer factory for a URL scheme: event files through storage.open_append (its own
  gs:// writer fails in its constructor: no attribute 'buffer')."""

  def open(self, path: str) -> storage.ObjectAppender:
    return storage.open_append(path, binary=True)

  def directory_check(self, path: str) -> None:
    del path  # object storage has no folders


def _events_writer(directory: str):
  """A tensorboardX EventsWriter for `directory`, local or a URL."""
  _import_tensorboardx()
  from tensorboardX import record_writer
  from tensorboardX.event_file_writer import EventsWriter
  if storage.is_url(directory):
    record_writer.register_writer_factory(storage.scheme(directory), _EventFiles())
  return EventsWriter(storage.join(directory, "events"))


class MetricsWriter:
  """Writes scalars to metrics.jsonl and TensorBoard (process 0 only makes one). In a URL work directory
  each flush uploads the whole file (object storage cannot append).

  Both files are written and flushed in the calling thread, so a full disk raises here, naming
  the file (tensorboardX's SummaryWriter writes from a thread and retries a failed flush at exit,
  printing tracebacks after the run's last line); a resumed run drops a metrics line cut short.
  """

  def __init__(self, workdir: str):
    self.file = storage.open_append(storage.join(workdir, "metrics.jsonl"))
    self.tensorboard_dir = storage.join(workdir, "tensorboard")
    with name_in_errors(self.tensorboard_dir):
      storage.makedirs(self.tensorboard_dir)
      self.tensorboard = _events_writer(self.tensorboard_dir)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import scalar
    with name_in_errors(self.file.name):
      self.file.write(json.dumps({"step": step, **scalars}) + "\n")
      self.file.flush()
    with name_in_errors(self.tensorboard_dir):
      for name, value in scalars.items():
        self.tensorboard.write_event(Event(wall_time=time.time(), step=step, summary=scalar(name, value)))
      self.tensorboard.flush()

  def close(self) -> None:
    """Close both files; a write error (a full disk) is raised for the first that has one."""
    errors = []
    for path, close in ((self.file.name, self.file.close), (self.tensorboard_dir, self.tensorboard.close)):
      try:
        with name_in_errors(path):
          close()
      except OSError as error:
        errors.append(error)
    if errors:
      raise errors[0]


class Progress:
  """A progress line with throughput and ETA every time metrics are logged."""

  def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
    self.total, self.enabled, self.steps_per_second = total_steps, enabled, 0.0
    self.last_step, self.last_time = start_step, time.perf_counter()

  def throughput(self, step: int, batch_size: int) -> float:
    """Examples per second since the previous call, and restart the clock."""
    now = time.perf_counter()
    rate = (step - self.last_step) * batch_size / max(now - self.last_time, 1e-9)
    self.steps_per_second = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    return rate

  def report(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    eta = (self.total - step) / self.steps_per_second if self.steps_per_second else math.inf
    shown = " | ".join(f"{k} {v:.4g}" for k, v in scalars.items())
    print(f"step {step}/{self.total} | {shown} | ETA {_duration(eta)}", flush=True)


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
