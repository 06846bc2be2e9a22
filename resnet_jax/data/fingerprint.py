"""Content fingerprints of data files: what a work directory records to refuse resuming on other data."""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 20
# (root, ((relative path, size, mtime_ns), ...)) -> fingerprint
_DONE: dict[tuple, str] = {}


def files_fingerprint(root: str, paths: list[str]) -> str:
  """'sha256:<hex>' over the files' paths relative to `root` and their bytes, in the order given.

  Memoised on each file's size and modification time: a process that resolves the config again
  does not read the files again.
  """
  stats = tuple((os.path.relpath(p, root), s.st_size, s.st_mtime_ns) for p, s in ((p, os.stat(p)) for p in paths))
  key = (os.path.abspath(root), stats)
  if key not in _DONE:
    digest = hashlib.sha256()
    for path, (relative, size, _) in zip(paths, stats):
      digest.update(f"{relative}\0{size}\0".encode())
      with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
          digest.update(chunk)
    _DONE[key] = f"sha256:{digest.hexdigest()}"
  return _DONE[key]


def record(source: str, fingerprint: str, streamed: bool = False, **more) -> dict:
  """The `derived` fields of own data (see registry.provenance)."""
  return dict(data_source=source, data_fingerprint=fingerprint, data_streamed=streamed, **more)
