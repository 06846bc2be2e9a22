"""JAX's persistent compilation cache, on by default: a program compiled once is loaded from disk.

A sweep's seeds, a resumed run, `eval` and the report's analyses run the same programs as the run
before them; on a CPU compiling a 56-layer train step takes longer than hundreds of its steps.
JAX keys each entry by the program, the compiler options (the device count included) and the
jax/jaxlib versions, so a cached executable is the one a fresh compile would give. `configure`
sets JAX_COMPILATION_CACHE_DIR for the processes this one starts (a sweep's members) and JAX's own
setting for this one, unless the user set the variable; call it before anything compiles.
"""

from __future__ import annotations

import os

import jax

VARIABLE = "RESNET_JAX_COMPILATION_CACHE"  # a directory, or "off"; default: <cache home>/resnet-jax/xla
JAX_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
# JAX stores only programs that took a second to compile; the eager initialisers' many small programs
# (one per weight shape) then compile again in every process: 13 s of a 56-layer digits run on one core.
MIN_TIME_VARIABLE = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def default_directory() -> str:
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache_home, "resnet-jax", "xla")


def configure() -> None:
  choice = os.environ.get(VARIABLE) or default_directory()
  if choice != "off":
    os.environ.setdefault(JAX_VARIABLE, choice)
    os.environ.setdefault(MIN_TIME_VARIABLE, "0")
  # JAX read its variables when it was imported, before this ran: give this process the same settings.
  if JAX_VARIABLE in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.environ[JAX_VARIABLE])
  if MIN_TIME_VARIABLE in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ[MIN_TIME_VARIABLE]))
