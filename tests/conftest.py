"""Shared test setup. Tests run on the CPU's single device; multi-device and multi-process
tests start subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=N."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> pathlib.Path:
  return REPO
