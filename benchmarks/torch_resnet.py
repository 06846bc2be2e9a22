"""The paper's CIFAR ResNet (option A shortcuts) in PyTorch: the reference for compare_torch.py.

Same network, initialisation, BatchNorm (momentum 0.1 = Flax 0.9, eps 1e-5) and optimiser
(SGD momentum 0.9, weight decay 1e-4 on conv and dense weights only) as resnet-jax's
`configs/synthetic.py:family=cifar,depth=20`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
  """conv-BN-ReLU-conv-BN, plus the option A shortcut (subsample, zero-pad channels), ReLU."""

  def __init__(self, in_features: int, width: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_features, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.stride = stride
    self.pad_channels = width - in_features

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
    if self.pad_channels:
      shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
    return F.relu(y + shortcut)


class CifarResNet(nn.Module):
  """Depth 6n+2: a 3x3 stem, three stages of n blocks (16/32/64 filters), pool, dense."""

  def __init__(self, depth: int = 20, num_classes: int = 10):
    super().__init__()
    n, rem = divmod(depth - 2, 6)
    if rem or n < 1:
      raise ValueError(f"depth must be 6n+2, got {depth}")
    self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.bn = nn.BatchNorm2d(16)
    blocks, features = [], 16
    for index, width in enumerate((16, 32, 64)):
      for position in range(n):
        blocks.append(BasicBlock(features, width, 2 if index > 0 and position == 0 else 1))
        features = width
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(features, num_classes)
    for module in self.modules():
      if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.blocks(F.relu(self.bn(self.conv(x))))
    return self.head(x.mean((2, 3)))


def make_optimizer(model: nn.Module, lr: float = 0.1) -> torch.optim.SGD:
  """SGD momentum 0.9; weight decay 1e-4 on conv and dense weights, none on BN or biases."""
  decay = [p for name, p in model.named_parameters() if name.endswith("weight") and p.ndim > 1]
  rest = [p for name, p in model.named_parameters() if not (name.endswith("weight") and p.ndim > 1)]
  return torch.optim.SGD([dict(params=decay, weight_decay=1e-4), dict(params=rest, weight_decay=0.0)],
                         lr=lr, momentum=0.9)


def train_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer):
  """One SGD step on (images, labels): forward, cross-entropy, backward, update."""

  def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss

  return step
