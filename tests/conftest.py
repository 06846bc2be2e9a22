"""Shared test setup: 8 simulated CPU devices, quiet TensorFlow, the repository root on hand."""

import os
import pathlib

# Must be set before JAX initialises its backend; tests that need 1 device use a mesh over one.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> pathlib.Path:
  return REPO
