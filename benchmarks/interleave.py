"""Run competing training setups side by side: one worker process each, timed windows in turn.

Each worker (benchmarks/worker.py) builds its model, compiles, warms up and then waits; the
coordinator asks the workers in turn for one window of N steps, so every setup sees the same
background load, and only one runs at a time. Separate processes keep thread pools and
XLA_FLAGS apart.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Setup:
  """A named worker command line (arguments of worker.py) and extra environment."""
  name: str
  args: list[str]
  env: dict[str, str] = dataclasses.field(default_factory=dict)

  def command(self) -> str:
    env = " ".join(f"{k}='{v}'" for k, v in self.env.items())
    return f"{env + ' ' if env else ''}python benchmarks/worker.py {' '.join(self.args)}"


class Worker:
  """A worker process speaking worker.py's line protocol."""

  def __init__(self, setup: Setup):
    self.setup = setup
    env = dict(os.environ, **setup.env)
    self.process = subprocess.Popen([sys.executable, str(WORKER), *setup.args], env=env, text=True, cwd=REPO,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    self.info = self._reply()

  def _reply(self) -> dict[str, str]:
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.setup.name!r} exited ({self.setup.command()})")
    return dict(item.split("=", 1) for item in line.split() if "=" in item)

  def window(self, steps: int) -> tuple[float, float]:
    """(seconds, cores kept busy) for `steps` training steps, synchronised at both ends."""
    self.process.stdin.write(f"{steps}\n")
    self.process.stdin.flush()
    reply = self._reply()
    return float(reply["seconds"]), float(reply["cpu"])

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait(timeout=60)


@dataclasses.dataclass
class Result:
  """Examples/s of each window of one setup, and the cores its process kept busy."""
  setup: Setup
  info: dict[str, str]
  rates: list[float]
  cores: list[float]

  @property
  def median(self) -> float:
    return statistics.median(self.rates)


def run_interleaved(setups: list[Setup], steps: int, windows: int, batch: int) -> tuple[list[Result], list[float]]:
  """Each setup's rates over `windows` rounds, and the 1-minute load average before each round.

  Workers are started (and compile) one at a time; in each round every worker runs one window,
  in alternating order so that no setup always goes first.
  """
  workers, results = [], []
  try:
    for setup in setups:
      workers.append(Worker(setup))
      results.append(Result(setup, workers[-1].info, [], []))
      print(f"# ready: {setup.name}: {workers[-1].info}", file=sys.stderr, flush=True)
    loads = []
    for round_index in range(windows):
      loads.append(os.getloadavg()[0])
      pairs = list(zip(workers, results))
      for worker, result in pairs if round_index % 2 == 0 else pairs[::-1]:
        seconds, cores = worker.window(steps)
        result.rates.append(steps * batch / seconds)
        result.cores.append(cores)
  finally:
    for worker in workers:
      worker.close()
  return results, loads
