"""What a work directory records besides checkpoints and metrics: the config and the environment."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time

import jax
import ml_collections

CONFIG_FILE = "config.json"
FINISHED_FILE = "finished.json"


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run in `workdir` was started with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"--workdir {workdir!r} has no {CONFIG_FILE}: it was not made by `resnet-jax train`")
  with open(path) as f:
    raw = json.load(f)
  _lists_to_tuples(raw)
  return ml_collections.ConfigDict(raw)


def _lists_to_tuples(tree: dict) -> None:
  for key, value in tree.items():
    if isinstance(value, dict):
      _lists_to_tuples(value)
    elif isinstance(value, list):
      tree[key] = tuple(value)


def _git_commit() -> str | None:
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(__file__), capture_output=True,
                          text=True, timeout=5, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def save_environment(workdir: str) -> None:
  """Versions, devices, processes and git commit, for the record."""
  import flax
  import optax
  import orbax.checkpoint
  info = dict(
      time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      host=platform.node(),
      python=platform.python_version(),
      jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
      orbax_checkpoint=orbax.checkpoint.__version__,
      backend=jax.default_backend(),
      devices=[str(d) for d in jax.devices()],
      process_count=jax.process_count(),
      git_commit=_git_commit(),
  )
  with open(os.path.join(workdir, "environment.json"), "w") as f:
    json.dump(info, f, indent=2)


def mark_finished(workdir: str, summary: dict) -> None:
  with open(os.path.join(workdir, FINISHED_FILE), "w") as f:
    json.dump(summary, f, indent=2)


def is_finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, FINISHED_FILE))
