"""Degradation on scikit-learn digits in minutes on a CPU: plain and residual nets of 20 and 56 layers.

  resnet-jax sweep experiments/digits.py --root runs/digits --report
  resnet-jax report runs/digits          # again, or with --formats png,svg,pdf

Recipe: configs/digits.py (pad-1 crops, SGD momentum 0.9, weight decay 1e-4) with batch 64 and
lr 0.05 (the paper's 0.1 at 128, scaled linearly), ramped up linearly from 0 over the first 200
iterations, divided by 10 at 600 and 900, stopped at 1200 (51 epochs of the 1500 training digits).
The plain 56-layer net's gradients explode at initialisation (see the gradient-norm figure):
without the warm-up (tried at batch 128, lr 0.1, 800 iterations) it ended at 79 % training error
and the residual 56-layer net lagged its 20-layer twin; with it, the residual nets train and
plain-56 trains far slower or not at all (the two runs below).
Cost (measured 2026-11-24, 2 idle CPU cores, fresh clone): 3m07s for the sweep (members 26 s,
27 s, 1m04s, 1m10s), 3m40s with pip install and report. On 2026-11-23 at load average 1.4-3 the
same took 5m45s; before the CPU speed changes in BENCHMARKS.md, with other jobs on the cores, 10m30s.
Measured (seed 0; training error is the last 100 iterations' mean on augmented batches), current code:
  plain-20     train 0.59 %  test 1.68 %      residual-20  train 0.16 %  test 1.01 %
  plain-56     train 87.0 %  test 90.9 %      residual-56  train 0.17 %  test 2.02 %
and an earlier run, before BatchNorm was folded into one multiply-add (same maths, other rounding):
  plain-20     train 0.47 %  test 1.35 %      residual-20  train 0.12 %  test 1.68 %
  plain-56     train 49.8 %  test 49.5 %      residual-56  train 0.06 %  test 1.35 %
The deep plain net's training error stays far above the shallow one's (the degradation problem;
how far depends on float rounding: plain-56 is on a knife-edge here); the deep residual net's is
at the shallow twin's level (within one seed's noise: 11 vs 10 and 4 vs 8 errors in 6,400).
"""

BASE_CONFIG = "configs/digits.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0], "steps": [1200]}
OVERRIDES = {"data.batch_size": 64, "optimizer.learning_rate": 0.05, "optimizer.warmup_steps": 200,
             "optimizer.warmup": "linear", "optimizer.warmup_learning_rate": 0.0,
             "train.log_every_steps": 100, "train.eval_every_steps": 100, "train.analysis_every_steps": 300}
