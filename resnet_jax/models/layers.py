"""The network's layers, and `Layers`: how they compute.

The network of the paper is fixed by resnet.py and blocks.py; `Layers` supplies the convolution
primitive, the initialisers and the activation they are built with (as flax's examples pass `conv` and
`act` into their ResNet). `Layers()` computes the network with JAX's own operations. A platform layer
(resnet_jax/platforms) passes versions that one compiler runs faster; the network, its parameters and
what it computes stay the same.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]

# He et al. 2015b: zero-mean normal with variance 2 / fan_in, for every convolution.
he_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
# LeCun normal (truncated, variance 1 / fan_in): nnx.Linear's default, for the classifier.
lecun_normal = nnx.initializers.lecun_normal()


@dataclasses.dataclass(frozen=True)
class Layers:
  """The convolution primitive, the initialisers and the activation of a network's layers."""
  conv_general_dilated: Callable = jax.lax.conv_general_dilated
  conv_init: Initializer = he_normal
  dense_init: Initializer = lecun_normal
  act: Callable[[jax.Array], jax.Array] = nnx.relu

  def conv(self, in_features: int, out_features: int, kernel: int, stride: int = 1, *, dtype: jnp.dtype,
           rngs: nnx.Rngs, zero_init: bool = False) -> nnx.Conv:
    """A bias-free square convolution with symmetric 'same' padding, as in the paper's Caffe nets."""
    pad = kernel // 2
    return nnx.Conv(in_features, out_features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                    use_bias=False, dtype=dtype, kernel_init=nnx.initializers.zeros if zero_init else self.conv_init,
                    conv_general_dilated=self.conv_general_dilated, rngs=rngs)

  def dense(self, in_features: int, out_features: int, *, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """The classifier: a dense layer with bias."""
    return nnx.Linear(in_features, out_features, dtype=dtype, kernel_init=self.dense_init, rngs=rngs)


def response_std(y: jax.Array) -> jax.Array:
  """Std of a layer's response per channel (over batch and space), averaged over channels (Fig. 7)."""
  return jnp.std(y.astype(jnp.float32), axis=tuple(range(y.ndim - 1))).mean()
