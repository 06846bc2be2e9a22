"""Weights in and out: torchvision and timm ResNet state dicts <-> resnet-jax models and work directories.

  import_weights(path, config, workdir, source="torchvision")  a .safetensors / .pth file -> a work directory
  export_weights(workdir, path)                                 a work directory -> a torchvision .safetensors
  state_dict_to_model / model_to_state_dict                     the same in memory (numpy state dicts)
"""

from resnet_jax.interop.convert import (IMPORTED_FILE, SOURCES, TARGETS, check_config, export_weights,
                                        import_weights, load_model)
from resnet_jax.interop.files import read_state_dict, write_safetensors
from resnet_jax.interop.layout import check_tensors, detected_depth, model_to_state_dict, state_dict_to_model

__all__ = ["IMPORTED_FILE", "SOURCES", "TARGETS", "check_config", "check_tensors", "detected_depth", "export_weights",
           "import_weights", "load_model", "model_to_state_dict", "read_state_dict", "state_dict_to_model",
           "write_safetensors"]
