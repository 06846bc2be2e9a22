"""torchvision's ResNet state dict <-> a resnet-jax ImageNet ResNet: names, shapes and layouts.

torchvision names (timm's plain `resnet*` use the same ones): conv1, bn1, layer<s>.<b>.conv<k> /
bn<k>, layer<s>.<b>.downsample.0 (1x1 projection) / .1 (its BN), fc. Convolution weights are
OIHW there and HWIO here, the dense weight is (out, in) there and (in, out) here; BN weight, bias,
running_mean, running_var are scale, bias, mean, var. `num_batches_tracked` has no counterpart:
ignored on import, written on export.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import numpy as np
from flax import nnx

from resnet_jax.errors import ConfigError, WeightsMismatch
from resnet_jax.models import ResNet, build_model
from resnet_jax.platforms import local_platform
from resnet_jax.models.resnet import IMAGENET_STAGES

BN_FIELDS = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))
TRACKED = "num_batches_tracked"
LISTED = 3  # names shown in an error before "and N more"
DEPTHS = {layout: depth for depth, layout in IMAGENET_STAGES.items()}  # (block, stage sizes) -> depth


def model_needs(model: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """(field, value, needed value) of every field of a config's `model` section that torchvision's
  ResNet weights fix: He et al.'s post-activation residual net, projection shortcuts (option B),
  the stride on the 3x3 of a bottleneck (v1.5), the standard widths, BN epsilon 1e-5."""
  needs = [("model.family", model["family"], "imagenet"), ("model.variant", model["variant"], "residual"),
           ("model.shortcut", model["shortcut"], "B"),
           ("model.width_multiplier", model.get("width_multiplier", 1.0), 1.0),
           ("model.bn_epsilon", model.get("bn_epsilon", 1e-5), 1e-5)]
  if model["family"] == "imagenet" and IMAGENET_STAGES.get(model["depth"], ("basic",))[0] == "bottleneck":
    needs.append(("model.bottleneck_version", model.get("bottleneck_version", "v1"), "v1.5"))
  return needs


def refuse_unfit(needs: list[tuple[str, Any, Any]]) -> None:
  """One ConfigError line for the first field whose value is not the needed one."""
  for field, value, needed in needs:
    if value != needed:
      raise ConfigError(f"{field}={value!r} does not fit torchvision ResNet weights: they need {field}={needed!r} "
                        f"(--config.{field}={needed})")


def _unlike_torchvision(model: ResNet, block: nnx.Module) -> str | None:
  """What makes a block compute something else than torchvision's with the same weights, or None."""
  shortcut = block.shortcut
  if model.preact or model.stem_kernel != 7:
    return "pre-activation or CIFAR-shaped"
  if model.stem_norm.epsilon != 1e-5:
    return f"normalised with BN epsilon {model.stem_norm.epsilon}, not 1e-5"
  if shortcut is None:
    return "plain (no shortcut)"
  if shortcut.projects != (shortcut.stride != 1 or shortcut.pad_channels != 0):
    return "an option A or C shortcut"
  if hasattr(block, "conv3") and block.conv1.strides not in (1, (1, 1)):
    return "a v1 bottleneck (stride on the first 1x1)"
  return None


def _check_layout(model: ResNet) -> None:
  """Refuse a model whose weights torchvision would load but compute something else with."""
  for s, stage in enumerate(model.stages):
    for b, block in enumerate(stage):
      if kind := _unlike_torchvision(model, block):
        raise ConfigError(f"the model is not torchvision's ResNet: block layer{s + 1}.{b} is {kind}")


def _modules(model: ResNet) -> Iterator[tuple[str, str, nnx.Module]]:
  """(torch prefix, kind, module) of every layer with weights, in torchvision's order."""
  yield "conv1", "conv", model.stem_conv
  yield "bn1", "bn", model.stem_norm
  for s, stage in enumerate(model.stages):
    for b, block in enumerate(stage):
      prefix = f"layer{s + 1}.{b}"
      for k in (1, 2, 3):
        if hasattr(block, f"conv{k}"):
          yield f"{prefix}.conv{k}", "conv", getattr(block, f"conv{k}")
          yield f"{prefix}.bn{k}", "bn", getattr(block, f"bn{k}")
      if block.shortcut is not None and block.shortcut.projects:
        yield f"{prefix}.downsample.0", "conv", block.shortcut.conv
        yield f"{prefix}.downsample.1", "bn", block.shortcut.norm
  yield "fc", "linear", model.head


def _variables(model: ResNet) -> Iterator[tuple[str, nnx.Variable, Any, Any]]:
  """(torch name, variable, to_torch, from_torch) for every tensor a torchvision state dict holds but
  num_batches_tracked; the two functions convert the layout of a numpy array."""
  same = lambda x: x
  for prefix, kind, module in _modules(model):
    if kind == "conv":
      yield f"{prefix}.weight", module.kernel, lambda x: x.transpose(3, 2, 0, 1), lambda x: x.transpose(2, 3, 1, 0)
    elif kind == "linear":
      yield f"{prefix}.weight", module.kernel, lambda x: x.T, lambda x: x.T
      yield f"{prefix}.bias", module.bias, same, same
    else:
      for torch_field, field in BN_FIELDS:
        yield f"{prefix}.{torch_field}", getattr(module, field), same, same


def _bn_prefixes(model: ResNet) -> list[str]:
  return [prefix for prefix, kind, _ in _modules(model) if kind == "bn"]


def expected_shapes(model: ResNet) -> dict[str, tuple[int, ...]]:
  """Every tensor name of the equivalent torchvision state dict and its shape (num_batches_tracked: ())."""
  shapes = {name: to_torch(np.broadcast_to(np.uint8(0), variable.get_value().shape)).shape  # no copy made
            for name, variable, to_torch, _ in _variables(model)}
  shapes.update({f"{prefix}.{TRACKED}": () for prefix in _bn_prefixes(model)})
  return shapes


def _names(names: list[str]) -> str:
  shown = ", ".join(names[:LISTED])
  return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def check_tensors(state_dict: Mapping[str, np.ndarray], model: ResNet, what: str) -> None:
  """One WeightsMismatch naming the tensors that are missing, extra or of another shape than `model`'s
  (num_batches_tracked may be absent). `what` names the model, e.g. 'ResNet-50'."""
  expected = expected_shapes(model)
  missing = [n for n in expected if n not in state_dict and not n.endswith(TRACKED)]
  extra = [n for n in state_dict if n not in expected]
  shaped = [n for n in expected if n in state_dict and tuple(np.shape(state_dict[n])) != tuple(expected[n])]
  problems = []
  if missing:
    problems.append(f"missing tensor{'s' * (len(missing) > 1)} {_names(missing)}")
  if extra:
    problems.append(f"extra tensor{'s' * (len(extra) > 1)} {_names(extra)}")
  if shaped:
    n = shaped[0]
    problems.append(f"tensor {n} has shape {tuple(np.shape(state_dict[n]))}, expected {tuple(expected[n])}"
                    + (f" (and {len(shaped) - 1} more of another shape)" if len(shaped) > 1 else ""))
  if problems:
    raise WeightsMismatch(f"the weights do not fit a torchvision {what}: {'; '.join(problems)}")


def detect_layout(state_dict: Mapping[str, np.ndarray]) -> tuple[str, tuple[int, ...]] | None:
  """(block type, blocks per stage) of a torchvision-named ResNet state dict, or None if it is none."""
  stages = []
  for s in range(1, 5):
    blocks = {name.split(".")[1] for name in state_dict if name.startswith(f"layer{s}.")}
    if not blocks or not all(b.isdigit() for b in blocks):
      return None
    stages.append(len(blocks))
  block = "bottleneck" if any(".conv3." in name for name in state_dict) else "basic"
  return block, tuple(stages)


def detected_depth(state_dict: Mapping[str, np.ndarray]) -> int | None:
  """The ImageNet depth (18-152) whose layout the state dict has, or None."""
  return DEPTHS.get(detect_layout(state_dict))


def state_dict_to_model(state_dict: Mapping[str, np.ndarray], model_config: Mapping[str, Any], *,
                        num_classes: int, seed: int = 0) -> ResNet:
  """A resnet-jax model of `model_config` (a config's `model` section) holding the state dict's weights.

  The state dict must match exactly (see `check_tensors`); arrays are numpy (float tensors of any float
  dtype are stored as float32). The model is built abstractly, so no random initialisation is computed.
  """
  refuse_unfit(model_needs(model_config))
  model = nnx.eval_shape(lambda: build_model(model_config, num_classes=num_classes, in_channels=3, seed=seed,
                                             platform=local_platform()))
  check_tensors(state_dict, model, f"ResNet-{model_config['depth']}")
  for name, variable, _, from_torch in _variables(model):
    variable.set_value(jax.numpy.asarray(from_torch(np.asarray(state_dict[name], np.float32))))
  unset = [str(path) for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model))
           if isinstance(leaf, jax.ShapeDtypeStruct)]
  if unset:  # a layer this mapping does not know: a bug here, not in the weights
    raise ConfigError(f"no torchvision name for the model's {_names(unset)}")
  return model


def model_to_state_dict(model: ResNet, num_batches_tracked: int = 0) -> dict[str, np.ndarray]:
  """The model's weights as a torchvision state dict of numpy arrays (float32; num_batches_tracked int64)."""
  _check_layout(model)
  state_dict = {name: np.array(to_torch(np.asarray(variable.get_value())), np.float32, order="C")
                for name, variable, to_torch, _ in _variables(model)}
  for prefix in _bn_prefixes(model):
    state_dict[f"{prefix}.{TRACKED}"] = np.asarray(num_batches_tracked, np.int64)
  return state_dict
