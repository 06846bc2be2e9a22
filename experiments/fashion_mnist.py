"""Fashion-MNIST degradation study sized for one GPU: plain and residual nets of 20, 56 and 110 layers.

The paper's CIFAR recipe scaled to 12k iterations (configs/fashion_mnist.py: batch 128, lr 0.1
/10 at 6k and 9k, pad-2 crop and flips), 2 seeds each (12 members). Plain-110 is not in the
paper's CIFAR grid; it is here because a 12k-iteration study shows the degradation most clearly
at that depth.

  resnet-jax sweep experiments/fashion_mnist.py --root runs/fashion_mnist --launcher parallel --report
  resnet-jax report runs/fashion_mnist

Reads Debian's dataset-fashion-mnist files offline, or tensorflow-datasets' fashion_mnist.
Cost (an estimate, not measured here): 12k iterations are 1.5M images, about a minute for
ResNet-20 at ~19k img/s on an RTX 3090-class GPU, 3x that for 56 layers, 6x for 110; the study is
about 40 ResNet-20 runs, under an hour on one GPU.
Expected: training error ordered plain-110 > plain-56 > plain-20 through training, residual nets
at or below ResNet-20 as depth grows. The paper has no Fashion-MNIST numbers, and none has
been measured here yet.
"""

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20, 56, 110], "variant": ["plain", "residual"], "seed": [0, 1]}
OVERRIDES = {"train.analysis_every_steps": 3000}  # per-layer gradient norms at 0, 3k, 6k, 9k
