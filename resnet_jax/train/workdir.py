"""What a work directory records besides checkpoints and metrics: the config and the environment,
and whether a new run may continue it (a work directory holds one experiment)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time

import ml_collections
import numpy as np

from resnet_jax import cpu_devices, storage
from resnet_jax.config import upgrade_recorded
from resnet_jax.errors import ConfigError
from resnet_jax.train.optimizer import learning_rate_schedule

CONFIG_FILE = "config.json"
FINISHED_FILE = "finished.json"
ENVIRONMENT_FILE = "environment.json"
# Fields a continued run may change: how often it logs, evaluates and saves, where it reads data
# from (own data: its path; derived.data_fingerprint is compared), how it is spread over processes, in how
# many micro-batches a step computes its batch and which steps it profiles. Everything else defines the
# experiment.
SAFE_FIELDS = ("train.log_every_steps", "train.eval_every_steps", "train.eval_every_epochs", "derived.eval_every_steps",
               "train.checkpoint_every_steps", "train.keep_checkpoints", "train.analysis_every_steps",
               "train.seeds_together", "train.microbatch_size", "derived.microbatches", "data.eval_batch_size",
               "data.data_dir", "data.prefetch", "data.num_workers", "data.ram_budget_gb", "derived.data_source",
               "distributed.", "train.profile_")
# The run's length and schedule may change as long as every step already trained keeps its learning rate.
SCHEDULE_FIELDS = ("train.num_steps", "train.num_epochs", "optimizer.decay_fractions", "derived.num_steps",
                   "derived.lr_boundaries", "derived.warmup_steps")


def check_workdir(workdir: str) -> None:
  """Refuse, before anything runs or is written, a --workdir that is not a directory or cannot be
  created or written; one line naming the path."""
  if storage.is_url(workdir):
    _check_url_workdir(workdir)
    return
  path = os.path.abspath(workdir)
  if os.path.lexists(path) and not os.path.isdir(path):
    raise ConfigError(f"--workdir {workdir} exists and is not a directory: give a directory (created if missing)")
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f"--workdir {workdir} cannot be created: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    reason = "read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
    raise ConfigError(f"--workdir {workdir}: {existing} is not writable ({reason}): use another --workdir "
                      "or make it writable")


def _check_url_workdir(workdir: str) -> None:
  """A URL work directory: its client library installed, its bucket there, and not an object itself."""
  storage.configure(workdir)
  bucket = "/".join(workdir.split("/")[:3])
  if not storage.exists(bucket):
    raise ConfigError(f"--workdir {workdir}: bucket {bucket} does not exist (or these credentials cannot see it): "
                      "create it, or use another --workdir")
  if storage.isfile(workdir):
    raise ConfigError(f"--workdir {workdir} exists and is not a directory: give a directory (created if missing)")


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  storage.write_text(storage.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2, sort_keys=True))


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run in `workdir` was started with."""
  path = storage.join(workdir, CONFIG_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(f"--workdir {workdir!r} has no {CONFIG_FILE}: it was not made by `resnet-jax train`")
  raw = json.loads(storage.read_text(path))
  _lists_to_tuples(raw)
  return ml_collections.ConfigDict(upgrade_recorded(raw))


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


def save_environment(workdir: str, start_step: int) -> None:
  """Versions, devices, processes and git commit of this start, for the record. A resumed run keeps,
  under `earlier`, the records of the starts that trained the steps before `start_step`."""
  import flax
  import jax
  import optax
  import orbax.checkpoint
  cpu = {}  # the first processor's /proc/cpuinfo fields (Linux); elsewhere what `platform` knows
  with contextlib.suppress(OSError):
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        cpu.setdefault(key.strip(), value.strip())
  family = f" (family {cpu['cpu family']}, model {cpu['model']})" if "cpu family" in cpu and "model" in cpu else ""
  flags = set(cpu.get("flags", cpu.get("Features", "")).split())
  # The vector extensions XLA:CPU's generated code and kernels choose between (x86, then Arm): a table's
  # last digits depend on them.
  vector_flags = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                  "asimd", "sve", "sve2")
  info = dict(
      start_step=start_step,
      time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      host=platform.node(),
      python=platform.python_version(),
      jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
      orbax_checkpoint=orbax.checkpoint.__version__,
      backend=jax.default_backend(),
      devices=[str(d) for d in jax.devices()],
      device_count=jax.device_count(),
      process_count=jax.process_count(),
      cpu_cores=cpu_devices.pinnable_cores(),  # the cores this process may run on (a sweep member: its own)
      cpu_model=(cpu.get("model name") or platform.processor() or platform.machine()) + family,
      cpu_vector_isa=[flag for flag in vector_flags if flag in flags],
      xla_flags=os.environ.get("XLA_FLAGS", ""),  # --xla_force_host_platform_device_count: the CPU's split
      git_commit=_git_commit(),
  )
  path = storage.join(workdir, ENVIRONMENT_FILE)
  if start_step and storage.exists(path):
    previous = json.loads(storage.read_text(path))
    # A start that began at or after start_step trained nothing this run keeps.
    earlier = [r for r in [*previous.pop("earlier", []), previous] if r.get("start_step", 0) < start_step]
    if earlier:
      info["earlier"] = earlier
  storage.write_text(path, json.dumps(info, indent=2))


def member_workdirs(workdir: str, seeds: list[int]) -> list[str]:
  """Where each model's metrics go: the workdir itself, or workdir/seed<s> for several seeds."""
  return [workdir] if len(seeds) == 1 else [storage.join(workdir, f"seed{s}") for s in seeds]


def mark_finished(workdir: str, summary: dict) -> None:
  storage.write_text(storage.join(workdir, FINISHED_FILE), json.dumps(summary, indent=2))


def read_finished(workdir: str) -> dict | None:
  """The final metrics a finished run recorded, or None."""
  return storage.read_json(storage.join(workdir, FINISHED_FILE))


def flatten(tree: dict, prefix: str = "") -> dict:
  """{'a.b': value} for a nested dict."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_differences(recorded: dict, new: dict) -> dict[str, tuple]:
  """{field: (recorded, new)} for every field outside SAFE_FIELDS that differs (JSON-like dicts; a recorded
  config as `recorded_config` reads it, with the fields it predates at their defaults)."""
  old_flat, new_flat = (flatten(json.loads(json.dumps(tree))) for tree in (recorded, new))  # tuples as lists
  missing = "(absent)"
  return {k: (old_flat.get(k, missing), new_flat.get(k, missing)) for k in sorted(old_flat.keys() | new_flat.keys())
          if old_flat.get(k, missing) != new_flat.get(k, missing) and not k.startswith(SAFE_FIELDS)}


def _same_learning_rates(recorded: ml_collections.ConfigDict, config: ml_collections.ConfigDict, steps: int) -> bool:
  trained = np.arange(steps)
  return bool(np.array_equal(np.asarray(learning_rate_schedule(recorded)(trained)),
                             np.asarray(learning_rate_schedule(config)(trained))))


def check_continues(workdir: str, config: ml_collections.ConfigDict, resume_step: int | None) -> None:
  """Refuse, with one line naming every differing field, to continue a work directory that records
  another experiment. A longer or shorter run is allowed when every step already trained had the
  same learning rate under both configs (so the continued run equals a fresh run of `config`)."""
  if not storage.exists(storage.join(workdir, CONFIG_FILE)):
    return
  recorded = recorded_config(workdir)
  differences = config_differences(recorded.to_dict(), config.to_dict())
  conflicts = {k: v for k, v in differences.items() if k not in SCHEDULE_FIELDS}
  reason = "holds another experiment"
  if not conflicts and differences and resume_step and "derived" in recorded:
    if not _same_learning_rates(recorded, config, resume_step):
      conflicts = differences
      reason = f"was trained {resume_step} steps with other learning rates"
  if conflicts:
    changes = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in conflicts.items())
    raise ConfigError(f"--workdir {workdir} {reason} ({changes}): use another --workdir, or the recorded "
                      f"config ({storage.join(workdir, CONFIG_FILE)}); nothing was changed")
