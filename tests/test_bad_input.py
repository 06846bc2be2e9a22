"""Bad config files and work directories end with one line on stderr and exit 2, leaving the work
directory as it was; a disk that fills up mid-run stops the run with one line saying what is saved,
and the same command resumes it once there is space, as if nothing had happened.

Full and read-only disks are real: small tmpfs mounts (root only, as in CI; skipped elsewhere).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time

import pytest

from resnet_jax import cli
from resnet_jax.train import metrics as metrics_lib
from resnet_jax.train.checkpoint import latest_step
from resnet_jax.train.writer_lock import LOCK_FILE

from conftest import checkpoint_steps, records, spec
from test_config import _one_line_error, no_model  # noqa: F401 (a fixture)
from test_workdir import snapshot

pytestmark = pytest.mark.usefixtures("compile_cache")
CONFIG = spec("configs/digits.py") + ":depth=8,steps=20"
INTERVALS = ["--config.train.log_every_steps=10", "--config.train.eval_every_steps=10",
             "--config.train.checkpoint_every_steps=10"]


def train(workdir, config: str = CONFIG) -> int:
  return cli.main(["train", "--config", config, "--workdir", str(workdir), *INTERVALS])


@pytest.fixture
def kept_workdir(tmp_path):
  """A work directory that already holds something of the user's."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("mine\n")
  return workdir


# ----------------------------------------------------------------------------- config files

# A bad argument after ':' is in tests/test_config.py.
CONFIG_FILES = {  # name: (file text, None for no file; what the line says after the file's path)
    "missing file": (None, ": no such file"),
    "syntax error": ("def get_config(:\n  pass\n", ":1: SyntaxError: invalid syntax"),
    "fails on import": ("import no_such_module_here\n", ":1: ModuleNotFoundError: No module named"),
    "no get_config": ("X = 1\n", " defines no get_config(arg)"),
    "get_config raises": ("def get_config(arg=None):\n  raise ValueError('no\\nway')\n",
                          ":2: get_config raised ValueError: no way"),
    "get_config returns no ConfigDict": ("def get_config(arg=None):\n  return 3\n",
                                         ": get_config returned int, expected an ml_collections.ConfigDict"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_a_bad_config_file_is_one_line(case, tmp_path, kept_workdir, capsys, no_model):
  text, said = CONFIG_FILES[case]
  path = tmp_path / "my_config.py"
  if text is not None:
    path.write_text(text)
  before = snapshot(kept_workdir)
  _one_line_error(capsys, train(kept_workdir, f"{path}:depth=8"), [f"--config {path}{said}"])
  assert snapshot(kept_workdir) == before


# ----------------------------------------------------------------------------- work directories

@pytest.fixture
def tmpfs(tmp_path):
  """mount(name, size, read_only): a fresh tmpfs under tmp_path, unmounted after the test."""
  mounted = []

  def mount(name: str, size: str = "2m", read_only: bool = False):
    path = tmp_path / name
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
      pytest.skip("mounting a tmpfs needs root")
    mounted.append(path)
    return path

  yield mount
  for path in mounted:
    subprocess.run(["umount", "--lazy", str(path)], check=True)


def resize(path, size: str) -> None:
  subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_a_workdir_that_is_a_file_is_one_line(kept_workdir, capsys, no_model):
  notes = kept_workdir / "notes.txt"
  _one_line_error(capsys, train(notes), [f"--workdir {notes} exists and is not a directory"])
  _one_line_error(capsys, train(notes / "run"), [f"--workdir {notes / 'run'} cannot be created",
                                                 f"{notes} is a file"])
  assert notes.read_text() == "mine\n"


def test_a_read_only_workdir_is_one_line(tmpfs, capsys, no_model):
  disk = tmpfs("read-only", read_only=True)
  for workdir in (disk, disk / "run"):
    _one_line_error(capsys, train(workdir), [f"--workdir {workdir}", f"{disk} is not writable (read-only file system)"])


# ----------------------------------------------------------------------------- a disk that fills up

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict]:
  workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
  assert train(workdir) == 0
  return records(workdir)


def _stopped(capsys, code, workdir, saved_step: int, *named) -> str:
  """The run exited 2 with a last stderr line saying what is saved and how to resume."""
  err = capsys.readouterr().err
  line = err.strip().splitlines()[-1]
  assert code == cli.EXIT_BAD_INPUT, err
  assert line.startswith("resnet-jax train: error: ") and "Traceback" not in line
  assert f"{saved_step} steps are saved in {workdir}/checkpoints/{saved_step}; free space and run the same " \
         "command to resume" in line, line
  for word in named:
    assert word in line, line
  return err


def test_a_full_disk_at_a_checkpoint_stops_and_resumes(tmpfs, uninterrupted, capsys):
  # A checkpoint of digits ResNet-8 takes ~0.65 MiB: step 10's fits in 2 MiB, step 20's not beside it.
  disk = tmpfs("disk", size="2m")
  workdir = disk / "run"
  err = _stopped(capsys, train(workdir), workdir, 10, f"{workdir}/checkpoints: No space left on device",
                 "the checkpoint of step 20 needs about")
  assert len(err.strip().splitlines()) == 1, err  # refused before orbax starts: nothing else on stderr
  assert checkpoint_steps(workdir) == [10]
  resize(disk, "20m")
  assert train(workdir) == 0
  assert records(workdir) == uninterrupted
  assert checkpoint_steps(workdir) == [10, 20]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's threads
def test_a_disk_that_fills_inside_orbax_stops_and_resumes(tmpfs, uninterrupted, capsys, monkeypatch):
  # Without the free-space check, orbax's own write fails (its threads log errors); the last line says what is saved.
  monkeypatch.setattr("resnet_jax.train.checkpoint._check_free_space", lambda *args: None)
  disk = tmpfs("disk", size="1000k")
  workdir = disk / "run"
  _stopped(capsys, train(workdir), workdir, 10, f"{workdir}/checkpoints: No space left on device")
  assert checkpoint_steps(workdir) == [10]
  resize(disk, "20m")
  assert train(workdir) == 0
  assert records(workdir) == uninterrupted


def _fill(disk) -> None:
  """Write a file until the disk has no space left. Unbuffered: a buffered file keeps the bytes a
  partial write left over and raises ENOSPC again when it closes, depending on the free space."""
  with open(disk / "filler", "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 2**16)
    except OSError as error:
      assert error.errno == errno.ENOSPC
  assert shutil.disk_usage(disk).free == 0


def test_a_disk_filled_by_another_program_stops_the_run_then_resumes(tmpfs, uninterrupted, capsys, monkeypatch):
  disk = tmpfs("disk", size="8m")
  workdir = disk / "run"
  write = metrics_lib.MetricsWriter.write

  def fill_at_step_20(self, step, scalars):
    if step == 20:
      deadline = time.monotonic() + 60
      while latest_step(str(workdir)) != 10 and time.monotonic() < deadline:  # the async save of step 10 done
        time.sleep(0.05)
      _fill(disk)
    write(self, step, scalars)

  monkeypatch.setattr(metrics_lib.MetricsWriter, "write", fill_at_step_20)
  # Step 20's records still fit in the last blocks of their files; the checkpoint does not.
  err = _stopped(capsys, train(workdir), workdir, 10, f"{workdir}/checkpoints: No space left on device")
  assert len(err.strip().splitlines()) == 1, err
  monkeypatch.undo()
  # Still full: the resumed run cannot rewrite metrics.jsonl, and changes nothing but the lock file's
  # holder (this process: it got as far as starting to write).
  before = snapshot(workdir)
  err = _stopped(capsys, train(workdir), workdir, 10, f"{workdir}/metrics.jsonl: No space left on device")
  assert len(err.strip().splitlines()) == 1, err
  after = snapshot(workdir)
  assert json.loads((workdir / LOCK_FILE).read_text())["pid"] == os.getpid()
  assert {k: v for k, v in after.items() if k != LOCK_FILE} == {k: v for k, v in before.items() if k != LOCK_FILE}
  (disk / "filler").unlink()
  assert train(workdir) == 0
  assert records(workdir) == uninterrupted


def test_metrics_on_a_full_disk_raise_naming_the_file_and_keep_whole_records(tmpfs):
  disk = tmpfs("disk", size="1m")
  writer = metrics_lib.MetricsWriter(str(disk))
  _fill(disk)
  scalars = {f"metric_{i}": 0.1 * i for i in range(20)}  # ~400 bytes a record: the last blocks fill soon
  written = 0
  with pytest.raises(OSError) as error:
    for step in range(1000):
      writer.write(step, scalars)
      written += 1
  assert error.value.errno == errno.ENOSPC
  assert error.value.filename in (str(disk / "metrics.jsonl"), str(disk / "tensorboard"))
  with pytest.raises(OSError, match="No space left on device"):
    writer.close()  # what is still buffered cannot be written either
  steps = [r["step"] for r in metrics_lib.read_metrics(str(disk))]
  assert steps == list(range(len(steps))) and written <= len(steps) <= written + 1  # a line cut short is dropped


def test_a_disk_full_before_the_run_is_one_line_naming_the_lock_file_then_the_run_goes(tmpfs, uninterrupted, capsys):
  disk = tmpfs("disk", size="8m")
  workdir = disk / "run"
  _fill(disk)
  code = train(workdir)
  err = capsys.readouterr().err
  assert code == cli.EXIT_BAD_INPUT, err
  assert err.strip().splitlines() == [f"resnet-jax train: error: {workdir}/lock: No space left on device; no "
                                      "checkpoint is saved yet; free space and run the same command to resume"]
  (disk / "filler").unlink()
  assert train(workdir) == 0
  assert records(workdir) == uninterrupted
