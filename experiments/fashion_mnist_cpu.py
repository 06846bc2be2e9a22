"""Degradation on Fashion-MNIST within an hour of a 2-core CPU: plain and residual nets of 20 and 56 layers.

  resnet-jax sweep experiments/fashion_mnist_cpu.py --root runs/fashion_mnist_cpu --report

All 60,000 training and 10,000 test images (28x28, Debian's dataset-fashion-mnist, read offline).
Recipe: the paper's CIFAR one (configs/fashion_mnist.py: batch 128, lr 0.1, SGD momentum 0.9, weight
decay 1e-4, pad-2 crops and flips, lr /10 at 50% and 75% of the run) cut from 64k to 1,000 iterations
(2.1 epochs), ramped up linearly from 0 over the first 50 (as the digits study: a plain 56-layer BN
net's first steps at lr 0.1 are its most fragile). Test error on the whole test set every 200
iterations, training error (the mean over the logged batches) every 20, per-layer gradient norms at
0 and 500, the loss landscapes of the four nets; no lesion study (27 blocks x 10,000 test images per
pattern would cost more than the training). One seed each: a second seed of the four would not fit
the hour.

Cost, measured on the 2-core machine (one member per core, one XLA device each, 2026-12-03): about
70 training images/s per core at 56 layers and 200 at 20 (CPU benchmark, one core), so a core
trains one 56-layer and one 20-layer member in about 41 minutes plus evaluations; see README for the
measured wall time.
"""

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0]}
OVERRIDES = {"train.num_steps": 1000, "optimizer.warmup_steps": 50, "optimizer.warmup": "linear",
             "optimizer.warmup_learning_rate": 0.0, "train.log_every_steps": 20, "train.eval_every_steps": 200,
             "train.checkpoint_every_steps": 200, "train.analysis_every_steps": 500}
ANALYSES = {"landscape": {"grid": 9, "line": 15, "num_examples": 128}}
