"""Degradation on scikit-learn digits in minutes on a CPU: plain and residual nets of 20 and 56 layers.

  resnet-jax sweep experiments/digits.py --root runs/digits --report
  resnet-jax report runs/digits          # again, or with --formats png,svg,pdf

Recipe: configs/digits.py (pad-1 crops, SGD momentum 0.9, weight decay 1e-4) with batch 64 and
lr 0.05 (the paper's 0.1 at 128, scaled linearly), ramped up linearly from 0 over the first 200
iterations, divided by 10 at 600 and 900, stopped at 1200 (51 epochs of the 1500 training digits).
The plain 56-layer net's gradients explode at initialisation (see the gradient-norm figure):
without the warm-up (tried at batch 128, lr 0.1, 800 iterations) it ended at 79 % training error
and the residual 56-layer net lagged its 20-layer twin; with it, plain-56 trains, but far slower.
Cost: 10m30s for the sweep and its report, measured on 2 CPU cores shared with other jobs (load
average 3.3; the sweep got about one core: 659 CPU-seconds); members took 1m20s, 1m21s, 3m55s and
3m39s and the report 14s. Unshared, the 56-layer nets ran 1.75x faster, so expect about 6 minutes.
Expected (measured, seed 0; training error is the last 100 iterations' mean on augmented batches):
  plain-20     train 0.47 %  test 1.35 %      residual-20  train 0.12 %  test 1.68 %
  plain-56     train 49.8 %  test 49.5 %      residual-56  train 0.06 %  test 1.35 %
The deep plain net's training error stays far above the shallow one's (the degradation problem);
the deep residual net's is at or below its shallow twin's (4 against 8 errors in 6,400 augmented
examples: equal within the noise of one seed).
"""

BASE_CONFIG = "configs/digits.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0], "steps": [1200]}
OVERRIDES = {"data.batch_size": 64, "optimizer.learning_rate": 0.05, "optimizer.warmup_steps": 200,
             "optimizer.warmup": "linear", "optimizer.warmup_learning_rate": 0.0,
             "train.log_every_steps": 100, "train.eval_every_steps": 100, "train.analysis_every_steps": 300}
