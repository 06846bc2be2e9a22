"""A sweep worker: `resnet-jax` command lines run one after another in one long-lived process.

  python -m resnet_jax.worker      (a sweep's local and parallel launchers start one per slot)

Each line on stdin is a JSON object {"argv": [...], "log": path}: the worker runs the command as
`resnet-jax <argv>` would, its output appended to the log, and answers {"exit": code} on its stdout.
Python, JAX and the libraries start once, at the first command, and later members reuse the compiled
programs in memory (resnet_jax.train.loop keeps them): a sweep's later seeds of a shape trace and
compile nothing. A command that would start JAX otherwise (another CPU device count in XLA_FLAGS) is
answered {"exit": null} unrun, and after a failed command the worker exits: in both cases the next
command runs in a fresh worker, as it would in a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from typing import Iterator


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
  """Everything this process and its children write to stdout and stderr, appended to `path`."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  with open(path, "a") as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
  try:
    yield
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, original in zip((1, 2), saved):
      os.dup2(original, fd)
      os.close(original)


def _run(argv: list[str]) -> int:
  """`resnet-jax <argv>` in this process: its exit code (1 and the traceback for an unexpected error)."""
  from resnet_jax import cli
  try:
    return cli.main(argv)
  except SystemExit as exit:
    return exit.code if isinstance(exit.code, int) else 1
  except Exception:  # noqa: BLE001 - reported in the member's log, as a process of its own would
    traceback.print_exc()
    return 1


def main() -> None:
  replies = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # stray output between commands must not reach the replies
  from resnet_jax import cli
  user_flags, started = os.environ.get("XLA_FLAGS", ""), None
  for line in sys.stdin:
    job = json.loads(line)
    try:
      flags = cli.xla_flags_for(job["argv"], user_flags)
    except Exception:  # noqa: BLE001 - a bad command: run it, and it reports its error in its log
      flags = started
    if started is not None and flags != started:
      replies.write(json.dumps({"exit": None}) + "\n")
      return
    with _output_to(job["log"]):
      code = _run(job["argv"])
    if "jax" in sys.modules:
      started = os.environ.get("XLA_FLAGS", "")
    replies.write(json.dumps({"exit": code}) + "\n")
    if code != 0:
      return


if __name__ == "__main__":
  main()
