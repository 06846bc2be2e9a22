"""Shared test setup. Tests run on the CPU's single device; multi-device and multi-process
tests start subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=N."""

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests run on the CPU, whatever accelerator plugins are installed (the plan extra brings CUDA's compiler).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA device in this process, whichever test first starts JAX (cli.main would otherwise split
# the CPU, one device per core): in-process runs are compared with each other bit for bit.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1".strip()

# Runs the tests start write their compiled programs here, not into the user's cache (resnet_jax.compilation_cache).
os.environ.setdefault("RESNET_JAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="resnet-jax-tests-xla-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN_SIZE, EVAL_SIZE = 40, 23  # fake imagenet2012 splits (imagenette: 10 and 10, one per class)


@pytest.fixture
def repo() -> pathlib.Path:
  return REPO


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> str:
  """Debian's Fashion-MNIST files, installed when missing (tools/fashion_mnist.sh, as root): tests of the real
  data never skip."""
  subprocess.run(["bash", str(REPO / "tools" / "fashion_mnist.sh")], check=True, timeout=900)
  return "/usr/share/datasets/fashion-mnist"


def spec(config: str) -> str:
  """A config spec ('configs/digits.py:depth=8') with the file's absolute path."""
  return str(REPO / config)


def records(workdir) -> list[dict]:
  """metrics.jsonl without the wall-clock field."""
  from resnet_jax.train.metrics import read_metrics
  return [{k: v for k, v in r.items() if k != "examples_per_second"} for r in read_metrics(str(workdir))]


def has_records(workdir) -> bool:
  """Whether the run in `workdir` (a folder or gs://) has written its first metrics record."""
  from resnet_jax import storage
  metrics = storage.join(str(workdir), "metrics.jsonl")
  return storage.exists(metrics) and "\n" in storage.read_text(metrics)


def wait_for(condition, processes, what: str, timeout: float = 300) -> None:
  """Polls `condition` until it holds; fails, naming `what`, when a process ends first or `timeout` s pass."""
  processes = processes if isinstance(processes, (list, tuple)) else [processes]
  deadline = time.monotonic() + timeout
  while not condition():
    for process in processes:
      assert process.poll() is None, f"the run ended before {what}: {process.communicate()[0][-3000:]}"
    assert time.monotonic() < deadline, f"no {what} within {timeout} s"
    time.sleep(0.05)


def resnet_jax_command() -> list[str]:
  """The `resnet-jax` command of this Python (its console script, or the module)."""
  script = pathlib.Path(sys.executable).parent / "resnet-jax"
  return [str(script)] if script.exists() else [sys.executable, "-m", "resnet_jax.cli"]


def sigterm_after_first_records(args: list[str], workdir, env: dict, cwd=None) -> tuple[int, str]:
  """Start `resnet-jax args`, send SIGTERM once the run in `workdir` has logged, and return its exit code and
  output (the process is killed if the test fails meanwhile)."""
  proc = subprocess.Popen(resnet_jax_command() + args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    wait_for(lambda: has_records(workdir), proc, "metrics")
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  return proc.returncode, output


def checkpoint_steps(workdir) -> list[int]:
  from resnet_jax.train.checkpoint import Checkpointer
  checkpointer = Checkpointer(str(workdir))
  try:
    return sorted(checkpointer.all_steps())
  finally:
    checkpointer.close()


@pytest.fixture(scope="session")
def gcs_server():
  """A Google Cloud Storage server (tools/fake_gcs.py) with bucket `runs`, for this test process and its
  subprocesses (the environment points every client at it); stopped at the end."""
  spec = importlib.util.spec_from_file_location("fake_gcs", REPO / "tools" / "fake_gcs.py")
  fake_gcs = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(fake_gcs)
  process, url = fake_gcs.start(buckets=("runs",))
  saved = {k: os.environ.get(k) for k in fake_gcs.environment(url)}
  os.environ.update(fake_gcs.environment(url))
  yield url
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
  process.terminate()
  process.wait()


@pytest.fixture
def gcs_dir(gcs_server, request) -> str:
  """A fresh gs:// folder on the test server, named after the test."""
  return f"gs://runs/{request.node.name.replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


CACHE_FLAGS = {"jax_persistent_cache_min_compile_time_secs": 0, "jax_persistent_cache_min_entry_size_bytes": 0}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """Share compiled programs between the runs of this module (and its subprocesses)."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache
  path = str(tmp_path_factory.mktemp("jax-cache"))
  flags = dict(CACHE_FLAGS, jax_compilation_cache_dir=path)
  saved = {name: getattr(jax.config, name) for name in flags}
  for name, value in flags.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield path
  for name, value in saved.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def subprocess_env(compile_cache: str, num_devices: int | None = None) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update({name.upper(): str(value) for name, value in CACHE_FLAGS.items()})
  env.update(JAX_COMPILATION_CACHE_DIR=compile_cache, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
  if num_devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  return env




def _fake_builder(module, name: str):
  """A subclass of a real tfds builder that writes random JPEGs; label == example index."""
  import tensorflow_datasets as tfds

  class Fake(module.Builder):
    code_path = None  # no checksums file to look up beside this test

    def _info(self):
      features = {"image": tfds.features.Image(encoding_format="jpeg"),
                  "label": tfds.features.ClassLabel(num_classes=1000 if name == "imagenet2012" else 10)}
      if name == "imagenet2012":
        features["file_name"] = tfds.features.Text()
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                   supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager
      classes = self.info.features["label"].num_classes
      return {"train": self._generate_examples(min(TRAIN_SIZE, classes), 0),
              "validation": self._generate_examples(min(EVAL_SIZE, classes), 1)}

    def _generate_examples(self, count, seed):
      rng = np.random.default_rng(seed)
      for i in range(count):
        example = {"image": rng.integers(0, 256, (*rng.integers(40, 130, 2), 3), dtype=np.uint8), "label": i}
        if name == "imagenet2012":
          example["file_name"] = f"{i}.JPEG"
        yield i, example

  Fake.name = name
  return Fake


@pytest.fixture(scope="session")
def fake_tfds_dir(tmp_path_factory) -> str:
  import tensorflow_datasets as tfds
  from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder
  from tensorflow_datasets.datasets.imagenette import imagenette_dataset_builder
  from resnet_jax.data.tf_runtime import hide_gpus_from_tensorflow
  hide_gpus_from_tensorflow()
  root = str(tmp_path_factory.mktemp("tfds"))
  with tfds.core.registered.skip_registration():
    for module, name, config in ((imagenet2012_dataset_builder, "imagenet2012", None),
                                 (imagenette_dataset_builder, "imagenette", "full-size-v2")):
      _fake_builder(module, name)(config=config, data_dir=root).download_and_prepare(
          download_config=tfds.download.DownloadConfig(num_shards=4))
  return root
