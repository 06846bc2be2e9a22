"""Keep TensorFlow (used only for tf.data / TFDS) off the accelerators JAX uses."""

from __future__ import annotations


def hide_gpus_from_tensorflow() -> None:
  """Stop TensorFlow from reserving GPU memory; a no-op once TF has set up its devices."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # devices already initialised: they were hidden by an earlier call
    pass
