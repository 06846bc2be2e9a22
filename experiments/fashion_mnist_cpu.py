"""Degradation on Fashion-MNIST within an hour of a 2-core CPU: plain and residual nets of 20 and 56 layers.

  resnet-jax sweep experiments/fashion_mnist_cpu.py --root runs/fashion_mnist_cpu --report

All 60,000 training and 10,000 test images (28x28, Debian's dataset-fashion-mnist, read offline).
Recipe: the paper's CIFAR one (configs/fashion_mnist.py: batch 128, lr 0.1, SGD momentum 0.9, weight
decay 1e-4, pad-2 crops and flips, lr /10 at 50% and 75% of the run) cut from 64k to 800 iterations
(1.7 epochs), ramped up linearly from 0 over the first 50 (as the digits study: a plain 56-layer BN
net's first steps at lr 0.1 are its most fragile). Test error on the whole test set every 200
iterations, training error (the mean over the logged batches) every 20, per-layer gradient norms at
0 and 400, the loss landscapes of the four nets; no lesion study (27 blocks x 10,000 test images per
pattern would cost more than the training). One seed each: a second seed of the four would not fit
the hour.

Why 800 iterations: a core trains one 56-layer member (~55 images/s on an idle core) and one
20-layer member (~170) in about 40 minutes, evaluations and the report included; 1,000 iterations
would take about 70. Cost: 46 minutes on 2 idle CPU cores (the README's named run).
With one seed the report's verdicts can only say "undecided at 1 seed" (no spread to test against),
beside the measured differences; more seeds are a GRID edit ("seed": [0, 1, 2]: three times the cost).
"""

from resnet_jax.studies.study import degradation_claims

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0]}
OVERRIDES = {"train.num_steps": 800, "optimizer.warmup_steps": 50, "optimizer.warmup": "linear",
             "optimizer.warmup_learning_rate": 0.0, "train.log_every_steps": 20, "train.eval_every_steps": 200,
             "train.checkpoint_every_steps": 200, "train.analysis_every_steps": 400}
ANALYSES = {"landscape": {"grid": 9, "line": 15, "num_examples": 128}}
# What the study is meant to show, as the digits study's ("no worse" allows 1 point: 100 of the 10,000
# test images); the report tests each claim over the seeds.
CLAIMS = degradation_claims(shallow=20, deep=56, no_worse_by=1.0)
