"""Model inspection: parameter and multiply-add counts, a stage table, layer responses (Fig. 7)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resnet_jax.models.resnet import ResNet


def count_params(module: nnx.Module) -> int:
  """Trainable parameters: conv/dense kernels and biases, BN scale and bias (not running stats)."""
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _jaxpr_macs(jaxpr: jax.extend.core.Jaxpr) -> int:
  macs = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      out, kernel = eqn.outvars[0].aval, eqn.invars[1].aval
      out_features = kernel.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
      macs += math.prod(out.shape) * math.prod(kernel.shape) // out_features
    elif eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval
      macs += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs.shape[d] for d in lhs_contract)
    for sub in _sub_programs(eqn):
      macs += _jaxpr_macs(sub)
  return macs


def _sub_programs(eqn: jax.extend.core.JaxprEqn) -> list[jax.extend.core.Jaxpr]:
  """What an equation runs inside: every sub-program, but of a choice by platform
  (`jax.lax.platform_dependent`) only its default branch, the network's own operations (a platform
  layer's rewrites are the other branches)."""
  platforms = eqn.params.get("branches_platforms")
  if platforms is not None and None in platforms:
    return [eqn.params["branches"][platforms.index(None)].jaxpr]
  return list(jax.extend.core.jaxprs_in_params(eqn.params))


def count_macs(model: ResNet, image_shape: tuple[int, int, int]) -> int:
  """Forward multiply-adds of convolutions and dense layers for one example (the paper's 'FLOPs')."""
  graphdef, state = nnx.split(model)
  forward = lambda s, x: nnx.merge(graphdef, s)(x, train=False)
  closed = jax.make_jaxpr(forward)(state, jnp.zeros((1, *image_shape), jnp.float32))
  return _jaxpr_macs(closed.jaxpr)


def trace_blocks(model: ResNet, image_shape: tuple[int, ...], apply_block) -> jax.ShapeDtypeStruct:
  """The logits' shape of one example through the forward pass, each block run by `apply_block(name, block,
  x)` (shapes only: nothing is computed, and the model may be abstract, as `nnx.eval_shape` builds it)."""
  graphdef, state = nnx.split(model)
  forward = lambda s, x: nnx.merge(graphdef, s)(x, train=False, apply_block=apply_block)
  return jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))


def stage_table(model: ResNet, image_shape: tuple[int, int, int]) -> list[dict[str, Any]]:
  """One row per part of the network: name, blocks, output shape (one example), parameters."""
  shapes = {}

  def record(name, block, x):
    shapes.setdefault("stem", x.shape[1:])
    y = block(x, train=False)
    shapes[name.split(".")[0]] = y.shape[1:]
    return y

  logits = trace_blocks(model, image_shape, record)
  head_modules = [m for m in (model.final_norm, model.head) if m is not None]
  stem_modules = [m for m in (model.stem_conv, model.stem_norm) if m is not None]
  rows = [dict(name="stem", blocks=0, output_shape=shapes["stem"],
               params=sum(count_params(m) for m in stem_modules))]
  for index, stage in enumerate(model.stages):
    rows.append(dict(name=f"stage{index + 1}", blocks=len(stage),
                     output_shape=shapes[f"stage{index + 1}"], params=count_params(stage)))
  rows.append(dict(name="head", blocks=0, output_shape=logits.shape[1:],
                   params=sum(count_params(m) for m in head_modules)))
  return rows


def layer_responses(model: ResNet, images: jax.Array) -> np.ndarray:
  """Std of each 3x3 layer's response, in layer order, with BN in eval mode (paper Fig. 7)."""
  model.set_attributes(record_responses=True, raise_if_not_found=False)
  try:
    _, captured = nnx.capture(model, nnx.Intermediate)(images, train=False)
  finally:
    model.set_attributes(record_responses=False, raise_if_not_found=False)
  ordered = sorted(nnx.to_flat_state(captured), key=lambda item: item[0])
  return np.array([float(v) for _, values in ordered for v in _values(values)])


def _values(variable) -> tuple:
  value = variable.get_value() if hasattr(variable, "get_value") else variable
  return value if isinstance(value, tuple) else (value,)
