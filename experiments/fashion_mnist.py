"""Fashion-MNIST degradation study sized for one GPU: plain and residual nets of 20, 56 and 110 layers.

The paper's CIFAR recipe scaled to 12k iterations (configs/fashion_mnist.py: batch 128, lr 0.1
/10 at 6k and 9k, pad-2 crop and flips), 2 seeds each (12 members). Plain-110 is not in the
paper's CIFAR grid; it is here because a 12k-iteration study shows the degradation most clearly
at that depth.

  resnet-jax sweep experiments/fashion_mnist.py --root runs/fashion_mnist --launcher parallel --report
  resnet-jax report runs/fashion_mnist

Reads Debian's dataset-fashion-mnist files offline, or tensorflow-datasets' fashion_mnist.
Cost on a GPU (an estimate, not measured: benchmarks/gpu_check.sh runs its seed-0 members on the first
lent GPU): 12k iterations are 1.5M images, about a minute for ResNet-20 at ~19k img/s (REFERENCE.md's
RTX 3090 anchor), ~3x that for 56 layers, ~7x for 110; the study is about 40 ResNet-20 runs, under an
hour on one GPU. On 2 CPU cores about 54 hours (from the CPU-sized study's throughput: ~2h50m per
20-layer member, ~8h per 56-layer one); the residual-20 member alone ended at 6.41 % test error
(BENCHMARKS.md).
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
