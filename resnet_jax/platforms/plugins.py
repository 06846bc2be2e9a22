"""JAX's accelerator plugins on a machine without their accelerator.

`pip install '.[plan]'` (or the test extra) brings the CUDA plugin, which compiles for GPUs that are not here.
On a machine without a GPU, JAX then logs a traceback from the plugin's start-up each time its backend starts,
and runs on the CPU as it would have without the plugin. `quiet_absent_accelerators` turns that into one line.
"""

from __future__ import annotations

import logging

_NO_DEVICE = ("cuInit(0) failed", "no CUDA-capable device", "CUDA_ERROR_NO_DEVICE")


class _AbsentAcceleratorLine(logging.Filter):
  """JAX's 'plugin configuration error' for a plugin that found no device, as one warning line."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.getMessage().startswith("Jax plugin configuration error") and record.exc_info:
      if any(sign in str(record.exc_info[1]) for sign in _NO_DEVICE):
        plugin = record.args[0] if record.args else "a plugin"
        record.msg, record.args = "%s is installed but found no device: JAX runs without it", (plugin,)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def quiet_absent_accelerators() -> None:
  """Installs the one-line report on JAX's backend logger; call before JAX's backend starts."""
  logger = logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _AbsentAcceleratorLine) for f in logger.filters):
    logger.addFilter(_AbsentAcceleratorLine())
