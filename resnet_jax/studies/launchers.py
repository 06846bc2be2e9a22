"""How a sweep's members run on this machine: one after another, on a CPU one per core at once, or one
per GPU at once (Slurm job arrays: slurm.py).

Each slot keeps one long-lived worker process (resnet_jax.worker) that trains its members one after
another, each writing to <workdir>/train.log: Python and JAX start once per slot, and a member's
later seeds reuse its compiled programs in memory. A failed member is reported, its worker replaced,
and the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

from resnet_jax import cpu_devices, storage
from resnet_jax.errors import ConfigError

LOG_FILE = "train.log"
PROGRESS_EVERY_S = 30.0
_PROGRESS_LINE = re.compile(r"^step (\d+)/(\d+) ")


@dataclasses.dataclass(frozen=True)
class Job:
  name: str
  argv: list[str]  # the arguments of `resnet-jax` that run the member
  workdir: str
  cost: float = 1.0  # work relative to the other jobs (steps x batch x seeds x depth), for the ETA
  programs: str = ""  # jobs alike here run the same compiled programs (a study's seeds of one member)
  log_name: str = LOG_FILE  # the job's output, in its work directory

  @property
  def log(self) -> str:
    """Where the job's output goes: its work directory, or for a URL work directory a local file (the
    output of a process is a file descriptor) that `keep_log` copies there."""
    if storage.is_url(self.workdir):
      return os.path.join(tempfile.gettempdir(), "resnet-jax-logs", self.workdir.replace("://", "/", 1), self.log_name)
    return os.path.join(self.workdir, self.log_name)

  def keep_log(self) -> None:
    """A URL work directory's copy of the job's log (local logs are there already)."""
    if storage.is_url(self.workdir) and os.path.exists(self.log):
      storage.write_bytes(storage.join(self.workdir, self.log_name), storage.read_bytes(self.log))

  @property
  def command(self) -> list[str]:
    """The member as a process of its own (a Slurm array task)."""
    return [sys.executable, "-m", "resnet_jax.cli", *self.argv]


def duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def local_gpus() -> list[str]:
  """Visible GPU ids: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`; [] without GPUs.

  JAX is not imported here: it would take GPU memory in the launching process.
  """
  if "CUDA_VISIBLE_DEVICES" in os.environ:
    return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
  try:
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line.split(":")[0].split()[1] for line in listing.splitlines() if line.startswith("GPU ")]


@dataclasses.dataclass(frozen=True)
class Slot:
  """Where one member at a time runs: extra environment variables and the CPU cores it may use (None: all)."""
  env: dict[str, str] = dataclasses.field(default_factory=dict)
  cores: tuple[int, ...] | None = None

  def environment(self) -> dict[str, str]:
    """The member's extra environment: the slot's variables, and its cores for cpu_devices.pin_to_cores."""
    cores = {} if self.cores is None else {cpu_devices.CORES_VARIABLE: ",".join(map(str, self.cores))}
    return {**self.env, **cores}

  def describe(self) -> str:
    where = "".join(f" {k}={v}" for k, v in self.env.items())
    return where + (f" on cores {','.join(map(str, self.cores))}" if self.cores is not None else "")


def jobs_at_once(jobs: str, members: int) -> int:
  """Members at once on a CPU: `--jobs` N, or auto: one per core, at most one per member (1 where the OS
  cannot pin processes to cores)."""
  if jobs == "auto":
    cores = cpu_devices.pinnable_cores()
    return 1 if cores is None else max(1, min(len(cores), members))
  if not jobs.isdigit() or int(jobs) < 1:
    raise ConfigError(f"--jobs {jobs!r} is invalid: allowed values are auto or a whole number >= 1")
  return int(jobs)


def cpu_slots(count: int) -> list[Slot]:
  """`count` slots that split this process's cores into disjoint groups (sizes differ by at most one);
  one slot keeps every core. Each member's `--cpu-devices auto` then makes one XLA device per core it has."""
  if count == 1:
    return [Slot()]
  cores = cpu_devices.pinnable_cores()
  if cores is None:
    raise ConfigError(f"--jobs {count} is invalid here: this OS cannot pin a member to its cores; allowed value is 1")
  if count > len(cores):
    raise ConfigError(f"--jobs {count} is invalid: at most {len(cores)} members at once, one per core")
  size, extra = divmod(len(cores), count)
  starts = [i * size + min(i, extra) for i in range(count + 1)]
  return [Slot(cores=tuple(cores[starts[i]:starts[i + 1]])) for i in range(count)]


def last_line(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return "(no log)"
  return lines[-1] if lines else "(empty log)"


def _fraction_done(log_path: str) -> float:
  """How far a running member is, from the last progress line ('step 300/1200 | ...') of its log."""
  try:
    with open(log_path, errors="replace") as f:
      matches = [m for m in map(_PROGRESS_LINE.match, f) if m]
  except OSError:
    return 0.0
  return int(matches[-1][1]) / int(matches[-1][2]) if matches else 0.0


class StudyProgress:
  """One line on the whole sweep: members done, who runs and how far, and the study's ETA, estimated
  from the work done so far (job costs, the running members' progress lines) per second of the sweep."""

  def __init__(self, jobs: list[Job], label: str = "sweep"):
    self.label, self.jobs, self.total = label, len(jobs), sum(job.cost for job in jobs)
    self.done, self.finished, self.start = 0.0, 0, time.monotonic()
    self.last_line = self.start

  def member_finished(self, job: Job) -> None:
    self.done += job.cost
    self.finished += 1

  def line(self, running: list[Job], states: dict[str, str] | None = None) -> str:
    """`states`: a word on each running member (a Slurm task's 'pending', 'running')."""
    self.last_line = time.monotonic()
    fractions = {job.name: _fraction_done(job.log) for job in running}
    done = self.done + sum(job.cost * fractions[job.name] for job in running)
    elapsed = self.last_line - self.start
    eta = f"~{duration(elapsed * (self.total - done) / done)}" if done > 0 else "?"
    now = ", ".join(f"{name} {100 * f:.0f}%" + (f" ({states[name]})" if states and name in states else "")
                    for name, f in fractions.items()) or "none"
    return (f"[{self.label}] {self.finished}/{self.jobs} members done | running: {now} | elapsed {duration(elapsed)} | "
            f"study ETA {eta}")


class _Worker:
  """A resnet_jax.worker process in one slot, running one member at a time."""

  def __init__(self, slot: Slot):
    self.programs: set[str] = set()  # of the jobs it ran: a later one alike reuses them in memory
    self.process = subprocess.Popen([sys.executable, "-m", "resnet_jax.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True,
                                    env=cpu_devices.child_environment(**slot.environment()))

  def send(self, job: Job) -> None:
    self.programs.add(job.programs)
    self.process.stdin.write(json.dumps(dict(argv=job.argv, log=job.log)) + "\n")
    self.process.stdin.flush()

  def reply(self) -> int | None:
    """The member's exit code (None: refused, it needs a fresh worker); waits for the line."""
    line = self.process.stdout.readline()
    if not line:  # the worker died (killed, out of memory): its exit status is the member's
      return self.process.wait() or 1
    return json.loads(line)["exit"]

  def close(self, terminate: bool = False) -> None:
    if terminate:
      self.process.terminate()  # the trainer checkpoints on SIGTERM; re-running the sweep resumes
    elif self.process.stdin:
      self.process.stdin.close()
    self.process.wait()


def _run_pool(jobs: list[Job], slots: list[Slot], label: str = "sweep") -> list[str]:
  """Run `jobs` with at most len(slots) at once, each on a free slot's worker; the failed names. `label`
  starts the progress lines."""
  pending, running, failed = list(enumerate(jobs, 1)), {}, []
  workers: dict[int, _Worker] = {}
  free = list(range(len(slots)))
  progress = StudyProgress(jobs, label)
  stop_on_sigterm = signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the members checkpoint and stop
  try:
    while pending or running:
      while pending and free:
        slot = free.pop(0)
        worker = workers[slot] = workers.get(slot) or _Worker(slots[slot])
        # the first pending job whose programs this worker has compiled, else the first
        index, job = pending.pop(next((i for i, (_, j) in enumerate(pending) if j.programs in worker.programs), 0))
        os.makedirs(os.path.dirname(job.log), exist_ok=True)
        print(f"[{index}/{len(jobs)}] {job.name}: started{slots[slot].describe()} "
              f"(log: {job.log})", flush=True)
        worker.send(job)
        running[slot] = (index, job, time.monotonic())
      ready = select.select([workers[slot].process.stdout for slot in running], [], [], 0.2)[0]
      for slot, (index, job, start) in list(running.items()):
        if workers[slot].process.stdout not in ready:
          continue
        code = workers[slot].reply()
        if code != 0:
          workers.pop(slot).close()
        if code is None:  # another device split than the worker's: again in a fresh one
          workers[slot] = _Worker(slots[slot])
          workers[slot].send(job)
          continue
        del running[slot]
        free.append(slot)
        job.keep_log()
        took = duration(time.monotonic() - start)
        progress.member_finished(job)
        if code == 0:
          print(f"[{index}/{len(jobs)}] {job.name}: finished in {took}", flush=True)
        else:
          failed.append(job.name)
          print(f"[{index}/{len(jobs)}] {job.name}: failed (exit {code}) after {took}: "
                f"{last_line(job.log)}", flush=True)
        if pending:
          print(progress.line([entry[1] for entry in running.values()]), flush=True)
      if running and time.monotonic() - progress.last_line >= PROGRESS_EVERY_S:
        print(progress.line([entry[1] for entry in running.values()]), flush=True)
  except KeyboardInterrupt:
    for slot in list(workers):
      workers.pop(slot).close(terminate=slot in running)
    print("sweep interrupted: run the same command again to resume", flush=True)
    raise
  finally:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    for worker in workers.values():
      worker.close()
  return failed


def _interrupt(signum, frame):
  raise KeyboardInterrupt


def _run_on_cpu(jobs: list[Job], at_once: str, label: str = "sweep") -> list[str]:
  """`at_once` members at once (auto: one per core), each on its own cores; the failed names."""
  count = jobs_at_once(at_once, len(jobs))
  if count > 1:
    print(f"local launcher: {count} members at once on the CPU, each on its own cores", flush=True)
  return _run_pool(jobs, cpu_slots(count), label)


def run_local(jobs: list[Job], at_once: str = "auto", label: str = "sweep") -> list[str]:
  """On this machine: with GPUs, one member after another on all of them; without, as _run_on_cpu.
  Returns the names of the members that failed; `label` starts the progress lines."""
  return _run_pool(jobs, [Slot()], label) if local_gpus() else _run_on_cpu(jobs, at_once, label)


def run_parallel(jobs: list[Job], at_once: str = "auto") -> list[str]:
  """One member per local GPU at once (CUDA_VISIBLE_DEVICES set per member); without GPUs, as
  _run_on_cpu. Returns the names of the members that failed."""
  gpus = local_gpus()
  if not gpus:
    return _run_on_cpu(jobs, at_once)
  print(f"parallel launcher: {len(gpus)} at once on GPUs {gpus}", flush=True)
  return _run_pool(jobs, [Slot(env={"CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpus])
