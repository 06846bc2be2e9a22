"""Fashion-MNIST degradation study sized for one GPU: plain and residual nets of 20, 56 and 110 layers.

The paper's CIFAR recipe scaled to 12k iterations (configs/fashion_mnist.py: batch 128, lr 0.1
/10 at 6k and 9k, pad-2 crop and flips), 2 seeds each (12 members). Plain-110 is not in the
paper's CIFAR grid; it is here because a 12k-iteration study shows the degradation most clearly
at that depth.

  resnet-jax sweep experiments/fashion_mnist.py --root runs/fashion_mnist --launcher parallel --report
  resnet-jax report runs/fashion_mnist

Reads Debian's dataset-fashion-mnist files offline, or tensorflow-datasets' fashion_mnist.
Measured (2026-11-24, 2 CPU cores, no GPU), the smallest member alone:
  resnet-jax sweep experiments/fashion_mnist.py --root runs/fashion_mnist --only depth=20,variant=residual,seed=0
took 47m56s (~540 img/s) and ended at test error 6.41 %, training error 5.2 % (last 100 iterations).
Cost on a GPU (an estimate, not measured): 12k iterations are 1.5M images, about a minute for
ResNet-20 at ~19k img/s (REFERENCE.md's RTX 3090 anchor), ~3x that for 56 layers, ~7x for 110; the
study is about 40 ResNet-20 runs, under an hour on one GPU. On 2 CPU cores, from the 800-iteration
study (experiments/fashion_mnist_cpu.py, 2026-12-03: one member per core, 800 x 128 images in 11m15s-
11m37s at 20 layers and 31m22s-33m06s at 56, evaluations included): 12k iterations take ~2h50m per
20-layer member and ~8h per 56-layer member, about twice that (~16h, extrapolated) per 110-layer
member; the 12 members, two at once, ~54 h.
Expected: training error ordered plain-110 > plain-56 > plain-20 through training, residual nets
at or below ResNet-20 as depth grows. The paper has no Fashion-MNIST numbers; only the member
above has been run here.
"""

from resnet_jax.studies.study import Claim, degradation_claims

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20, 56, 110], "variant": ["plain", "residual"], "seed": [0, 1]}
OVERRIDES = {"train.analysis_every_steps": 3000}  # per-layer gradient norms at 0, 3k, 6k, 9k
# What the study is meant to show, tested by the report over the 2 seeds (a 90 % t-interval with one
# degree of freedom: only large, consistent differences are decided): the claims of the digits study
# between 20 and 110 layers, and plain-110 worse than plain-56.
CLAIMS = [*degradation_claims(shallow=20, deep=110, no_worse_by=1.0),
          Claim("plain-110 has higher training error than plain-56", "train_error", ("plain", 110), ">", ("plain", 56))]
