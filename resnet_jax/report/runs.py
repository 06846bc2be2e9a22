"""A study's work directories read back: one `Run` per trained model, grouped over seeds.

A member's work directory holds one model, or with train.num_seeds = K > 1 one folder per seed
(seed<s>/) beside the shared checkpoints of the K models trained together.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from resnet_jax import storage
from resnet_jax.studies.study import STUDY_FILE, Claim, load_study
from resnet_jax.train.metrics import read_metrics
from resnet_jax.train.workdir import CONFIG_FILE, FINISHED_FILE

VARIANT_ORDER = ("plain", "residual", "preact")


@dataclasses.dataclass
class Run:
  """One trained model: its metrics folder, where its checkpoint lives, and what it is."""
  name: str
  workdir: str          # config.json, metrics.jsonl, finished.json
  checkpoint_dir: str   # the member's work directory
  index: int            # position among the models of that checkpoint (0 unless num_seeds > 1)
  variant: str
  depth: int
  seed: int
  extra: tuple[tuple[str, Any], ...]   # the other study arguments that vary between members
  num_steps: int
  records: list[dict]
  finished: dict | None
  args: dict[str, Any] = dataclasses.field(default_factory=dict)  # the member's study arguments (study.json)

  @property
  def group(self) -> tuple:
    return (self.variant, self.depth, self.extra)

  @property
  def last_step(self) -> int:
    return max((r["step"] for r in self.records if "train_error" in r), default=0)

  def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of every record that has `key`."""
    rows = [(r["step"], r[key]) for r in self.records if key in r]
    return np.array([s for s, _ in rows], dtype=int), np.array([v for _, v in rows], dtype=float)


@dataclasses.dataclass
class StudyRuns:
  root: str
  name: str
  doc: str
  paper: dict[tuple[str, int], float]
  runs: list[Run]
  missing: list[str]   # members with no metrics yet
  analyses: dict[str, Any] = dataclasses.field(default_factory=dict)  # the study's ANALYSES: name -> options
  claims: list[Claim] = dataclasses.field(default_factory=list)  # the study's CLAIMS (report/verdicts.py)

  def groups(self) -> dict[tuple, list[Run]]:
    """Runs that differ only by seed, in (variant, depth, extra) order."""
    grouped: dict[tuple, list[Run]] = {}
    for run in sorted(self.runs, key=lambda r: (variant_rank(r.variant), r.depth, str(r.extra), r.seed)):
      grouped.setdefault(run.group, []).append(run)
    return grouped


def variant_rank(variant: str) -> tuple[int, str]:
  return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def _model_dirs(member_dir: str) -> list[str]:
  """The member's work directory, or its seed<s>/ folders when it trained several seeds together
  (whose parent holds the shared config and checkpoints but no metrics)."""
  if storage.isfile(storage.join(member_dir, "metrics.jsonl")):
    return [member_dir]
  seeds = [d for d in storage.listdir(member_dir) if d.startswith("seed") and d[4:].isdigit()
           and storage.isfile(storage.join(member_dir, d, CONFIG_FILE))]
  return [storage.join(member_dir, d) for d in sorted(seeds, key=lambda d: int(d[4:]))]


def _read_member(root: str, member: str, args: dict, extra: tuple) -> list[Run]:
  member_dir = storage.join(root, member)
  runs = []
  for index, workdir in enumerate(_model_dirs(member_dir)):
    records = read_metrics(workdir)
    if not records:
      continue
    config = storage.read_json(storage.join(workdir, CONFIG_FILE))
    name = member if workdir == member_dir else f"{member}/{storage.basename(workdir)}"
    runs.append(Run(name, workdir, member_dir, index, config["model"]["variant"], int(config["model"]["depth"]),
                    int(config["seed"]), extra, int(config["derived"]["num_steps"]), records,
                    storage.read_json(storage.join(workdir, FINISHED_FILE)), args))
  return runs


def load_runs(root: str) -> StudyRuns:
  """Members listed in <root>/study.json (written by `sweep`), else every sub-directory with a config."""
  if not storage.isdir(root):
    raise FileNotFoundError(f"{root} does not exist: run `resnet-jax sweep <study> --root {root}` first")
  record = storage.read_json(storage.join(root, STUDY_FILE))
  name, doc, paper, analyses, claims = storage.basename(root), "", {}, {}, []
  if record:
    members = {m["name"]: m["args"] for m in record["members"]}
    if os.path.exists(record["study"]):
      study = load_study(record["study"])
      name, doc, paper, analyses, claims = study.name, study.doc, study.paper, study.analyses, study.claims
  else:
    members = {d: {} for d in sorted(storage.listdir(root)) if _model_dirs(storage.join(root, d))}
  varied = {k for args in members.values() for k in args
            if k not in ("variant", "depth", "seed") and len({str(a.get(k)) for a in members.values()}) > 1}
  runs, missing = [], []
  for member, args in members.items():
    found = _read_member(root, member, args, tuple((k, v) for k, v in args.items() if k in varied))
    runs += found
    if not found:
      missing.append(member)
  if not runs:
    raise FileNotFoundError(f"{root} has no work directories with metrics: run `resnet-jax sweep` first")
  return StudyRuns(root, name, doc, paper, runs, missing, analyses, claims)
