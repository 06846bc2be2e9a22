"""Paths that are local or on object storage (gs://, or another scheme etils.epath knows): one set of
file operations for work directories, sweep roots, reports and exported weights.

A local path goes through `os` exactly as before (atomic replace, errno-named errors). A URL goes
through etils.epath on its fsspec backend (gcsfs for gs://): fsspec rather than TensorFlow's gfile,
which epath would pick where TensorFlow is installed, because TensorFlow is imported only by the
streaming input pipeline (seconds of start-up, and it must never touch the accelerators), and gcsfs,
google-cloud-storage and TensorStore (orbax's checkpoints) all reach an emulator through
STORAGE_EMULATOR_HOST. An object is written whole or not at all, so a URL needs no temporary file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
from typing import IO, Iterator

from resnet_jax.errors import ConfigError

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")
EXTRA = "gcs"  # pip install 'resnet-jax[gcs]': gcsfs and google-cloud-storage
_configured = False


def is_url(path: str | os.PathLike) -> bool:
  """Whether `path` names object storage (gs://bucket/...) rather than a local file."""
  return bool(_SCHEME.match(os.fspath(path)))


def scheme(path: str) -> str | None:
  found = _SCHEME.match(os.fspath(path))
  return found[1] if found else None


def join(base: str, *parts: str) -> str:
  """`base`/`parts`: os.path.join locally; '/'-joined for a URL (gs://b/x + y -> gs://b/x/y)."""
  base = os.fspath(base)
  if not is_url(base):
    return os.path.join(base, *parts)
  return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def basename(path: str) -> str:
  return os.fspath(path).rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(os.path.normpath(path))


def dirname(path: str) -> str:
  return os.fspath(path).rstrip("/").rsplit("/", 1)[0] if is_url(path) else os.path.dirname(path)


def shown(path: str) -> str:
  """The path as a record names it: absolute when local, the URL itself otherwise."""
  return os.fspath(path) if is_url(path) else os.path.abspath(path)


def relative(path: str, start: str) -> str:
  """`path` relative to the folder `start` (a link inside a report)."""
  if is_url(path):
    prefix = os.fspath(start).rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path
  return os.path.relpath(path, start)


def configure(path: str) -> None:
  """Ready the libraries for URLs before the first one is used; a missing client library is one line
  naming the extra that brings it (a ConfigError: exit 2)."""
  global _configured
  if _configured or not is_url(path):
    return
  if scheme(path) == "gs":
    try:
      import gcsfs  # noqa: F401
      import google.cloud.storage  # noqa: F401
    except ImportError:
      raise ConfigError(f"{path}: gs:// paths need gcsfs and google-cloud-storage: "
                        f"pip install 'resnet-jax[{EXTRA}]'") from None
  os.environ["EPATH_USE_TF"] = "false"
  from etils.epath import gpath  # epath caches whether to use TensorFlow at its first path, local ones too
  getattr(gpath._is_tf_installed, "cache_clear", lambda: None)()
  emulator = os.environ.get("STORAGE_EMULATOR_HOST")
  if emulator:  # a test server: TensorStore has its own variable, and no storage-layout service runs there
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", emulator)
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
  import fsspec.config
  for protocol in ("gs", "gcs"):  # another process's writes (a checkpoint, a lease) must be seen at once
    options = fsspec.config.conf.setdefault(protocol, {})
    options.setdefault("use_listings_cache", False)
    if emulator:
      options.setdefault("token", "anon")  # a test server wants no credentials: look for none
  _configured = True


def epath(path: str):
  """An etils.epath.Path for `path`, the libraries configured for it."""
  configure(path)
  from etils import epath as epath_lib
  return epath_lib.Path(path)


# ----------------------------------------------------------------------------- queries

def exists(path: str) -> bool:
  return epath(path).exists() if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return epath(path).is_dir() if is_url(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
  if not is_url(path):
    return os.path.isfile(path)
  p = epath(path)
  return p.exists() and not p.is_dir()


def listdir(path: str) -> list[str]:
  """The names in a folder ([] when it does not exist)."""
  if not is_url(path):
    return os.listdir(path) if os.path.isdir(path) else []
  p = epath(path)
  return sorted(child.name for child in p.iterdir()) if p.is_dir() else []


def mtime(path: str) -> float:
  return epath(path).stat().mtime if is_url(path) else os.path.getmtime(path)


# ----------------------------------------------------------------------------- reading and writing

def read_text(path: str) -> str:
  if is_url(path):
    return epath(path).read_text()
  with open(path) as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  if is_url(path):
    return epath(path).read_bytes()
  with open(path, "rb") as f:
    return f.read()


def read_json(path: str):
  """A JSON file's value, or None when there is no such file."""
  return json.loads(read_text(path)) if exists(path) else None


def makedirs(path: str) -> None:
  """Create a local folder and its parents; nothing for a URL (object storage has no folders)."""
  if not is_url(path):
    os.makedirs(path, exist_ok=True)
  else:
    configure(path)


@contextlib.contextmanager
def name_in_errors(path: str) -> Iterator[None]:
  """OSErrors raised inside name `path` (a buffered write that meets a full disk names no file)."""
  try:
    yield
  except OSError as error:
    raise OSError(error.errno, error.strerror, path) from error


def write_bytes(path: str, data: bytes) -> None:
  """Write a whole file or nothing: locally through a temporary file and os.replace (a crash or a full
  disk leaves the previous version and no temporary file); on object storage one upload."""
  if is_url(path):
    epath(path).write_bytes(data)
    return
  try:
    with name_in_errors(path):
      with open(path + ".tmp", "wb") as f:
        f.write(data)
      os.replace(path + ".tmp", path)
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(path + ".tmp")
    raise


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode())


@contextlib.contextmanager
def open_write(path: str, binary: bool = True) -> Iterator[IO]:
  """A file to write whole (matplotlib's figures, csv): written to `path` when the block ends."""
  buffer = io.BytesIO() if binary else io.StringIO(newline="")
  yield buffer
  data = buffer.getvalue()
  write_bytes(path, data if binary else data.encode())


def remove(path: str) -> None:
  if is_url(path):
    epath(path).unlink()
  else:
    os.remove(path)


def move(source: str, target: str) -> None:
  """Move a file or folder (on object storage: every object copied, then the originals deleted)."""
  if is_url(source):
    configure(source)
    import fsspec
    fs = fsspec.filesystem(scheme(source))
    names = fs.find(source)  # every object under `source` ([source] for one object), without the scheme
    prefix = source.split("://", 1)[1].rstrip("/")
    fs.copy(names, [target.rstrip("/") + name[len(prefix):] for name in names])
    fs.rm(names)
  else:
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    os.rename(source, target)


def upload_tree(local: str, target: str) -> None:
  """Copy the local folder `local` and everything under it to `target` (a URL or a local folder)."""
  for folder, _, names in os.walk(local):
    for name in names:
      source = os.path.join(folder, name)
      destination = join(target, *os.path.relpath(source, local).split(os.sep))
      if is_url(target):
        epath(destination).write_bytes(read_bytes(source))
      else:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copyfile(source, destination)


@contextlib.contextmanager
def local_folder(path: str) -> Iterator[str]:
  """A local folder standing for `path`: `path` itself, or for a URL a temporary folder whose files
  are copied to `path` when the block ends (for writers that need a local file system)."""
  if not is_url(path):
    os.makedirs(path, exist_ok=True)
    yield path
    return
  with tempfile.TemporaryDirectory(prefix="resnet-jax-") as folder:
    yield folder
    upload_tree(folder, path)


class ObjectAppender:
  """A file opened for appending on object storage, which cannot append: the object is rewritten
  whole at each flush (as TensorFlow's gfile does on GCS). For small, line-oriented files (metrics,
  TensorBoard events) flushed at each logging step."""

  def __init__(self, path: str):
    self.name, self.closed = path, False
    p = epath(path)
    self._data = bytearray(p.read_bytes() if p.exists() else b"")
    self._flushed = len(self._data) if p.exists() else -1  # a new file is created at the first flush

  def write(self, data: bytes | str) -> int:
    self._data += data.encode() if isinstance(data, str) else data
    return len(data)

  def flush(self) -> None:
    if self._flushed != len(self._data):
      epath(self.name).write_bytes(bytes(self._data))
      self._flushed = len(self._data)

  def close(self) -> None:
    if not self.closed:
      self.flush()
      self.closed = True


def open_append(path: str, binary: bool = False) -> IO | ObjectAppender:
  """`path` opened for appending: a local file, or an ObjectAppender for a URL."""
  if is_url(path):
    return ObjectAppender(path)
  return open(path, "ab" if binary else "a")
