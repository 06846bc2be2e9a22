"""Weights files of the PyTorch world: .safetensors (read and written with numpy, no torch needed) and
torch.save pickles (.pth, .pt, .bin; read only, through torch when it is installed)."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Mapping

import numpy as np

from resnet_jax import storage
from resnet_jax.errors import ConfigError

SAFETENSORS = (".safetensors",)
TORCH_PICKLES = (".pth", ".pt", ".bin")


def file_format(path: str) -> str:
  """'safetensors' or 'torch' from the file name; one ConfigError line for anything else."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix in SAFETENSORS:
    return "safetensors"
  if suffix in TORCH_PICKLES:
    return "torch"
  raise ConfigError(f"--input {path}: unknown weights format {suffix or '(no suffix)'!r}: expected one of "
                    f"{', '.join(SAFETENSORS + TORCH_PICKLES)}")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{tensor name: numpy array} of a .safetensors file or a torch.save'd state dict (a local file or a URL)."""
  if not storage.isfile(path):
    raise FileNotFoundError(f"--input {path}: no such file")
  if file_format(path) == "safetensors":
    return _read_safetensors(path)
  return _read_torch(path)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    from safetensors.numpy import load, load_file
  except ImportError:
    raise ConfigError("reading .safetensors needs the safetensors package: pip install safetensors") from None
  try:
    return load(storage.read_bytes(path)) if storage.is_url(path) else load_file(path)
  except Exception as error:  # a corrupt or truncated file
    raise ConfigError(f"--input {path}: cannot read it as safetensors with numpy: {error}") from None


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise ConfigError(f"--input {path}: reading {os.path.splitext(path)[1]} files needs PyTorch (pip install torch); "
                      "or save the state dict as .safetensors, which needs no torch") from None
  try:
    source = io.BytesIO(storage.read_bytes(path)) if storage.is_url(path) else path
    loaded = torch.load(source, map_location="cpu", weights_only=True)
  except Exception as error:
    raise ConfigError(f"--input {path}: torch.load failed: {' '.join(str(error).split())[:300]}") from None
  if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
    keys = ", ".join(list(loaded)[:5]) if isinstance(loaded, Mapping) else type(loaded).__name__
    raise ConfigError(f"--input {path} holds no state dict of tensors (found: {keys}): save model.state_dict()")
  return {name: (t.float() if t.is_floating_point() else t).detach().cpu().numpy() for name, t in loaded.items()}


def write_safetensors(path: str, state_dict: Mapping[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
  """Write a state dict as .safetensors (a local file or a URL), whole or not at all ('format': 'pt', as
  torch's own writer marks it)."""
  from safetensors.numpy import save
  storage.write_bytes(path, save(dict(state_dict), metadata={"format": "pt", **(metadata or {})}))


def sha256(path: str) -> str:
  if storage.is_url(path):
    return hashlib.sha256(storage.read_bytes(path)).hexdigest()
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()
