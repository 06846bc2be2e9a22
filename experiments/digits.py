"""Degradation on scikit-learn digits in minutes on a CPU: plain and residual nets of 20 and 56 layers,
3 seeds each, with the spread over seeds, the loss landscapes and the lesion study.

  resnet-jax sweep experiments/digits.py --root runs/digits --report
  resnet-jax report runs/digits          # again, or with --formats png,svg,pdf

Recipe: configs/digits.py (pad-1 crops, SGD momentum 0.9, weight decay 1e-4) with batch 64 and
lr 0.05 (the paper's 0.1 at 128, scaled linearly; given as the rate of batch 64), ramped up linearly from 0 over the first 50
iterations, divided by 10 at 50% and 75% of the run, stopped at 300 iterations (12.8 epochs of the
1500 training digits). Seeds 0, 1 and 2 of each member are separate runs (members ...-seed<s>), each
with its own initialisation, example order and augmentation. On a CPU the sweep runs one member per
core, the first seed of every member first, so seeds 1 and 2 load every compiled program from the
compilation cache. Training the three seeds in one program (train.num_seeds=3, unrolled on a CPU)
gains nothing at this size: measured 2026-11-25 on 2 idle cores, plain-20 at 1200 iterations took
2m22s for three together against 55 s for one alone, at the same examples/s per model, and
compiling the three-model program takes about three times as long.

Why 3 seeds of 20 and 56 layers: deep plain nets on this data sit on a knife-edge. The sign of the
degradation is robust, its size is not: at 500 iterations plain-56 ended between 62 % and 76 %
training error over three seeds (one earlier seed-0 run at 87 %), at 300 iterations between 83 %
and 88 % (2026-11-25, members on two XLA devices), 79 % and 87 % (2026-12-02, one device per member:
the same computation, reduced in another order), 75 % and 88 % (2026-12-03, the last stage's 2x2
convolutions as matrix products) or 77 % and 86 % (2026-12-04, those as one dense-matrix product). The plain 56-layer net's gradients explode at
initialisation (the gradient-norm figure: about 800-950 at its first blocks against under 1 at its
last), so where it lands depends on the draw. Three seeds of the paper's two end depths fit the
README's main job on 2 CPU cores: the whole command took 9m49s-11m13s on three fresh clones on
2026-11-25, 7m13s on 2026-12-02 with one XLA device per member (a test run competing for the cores),
4m14s-4m47s on three fresh clones on 2026-12-03 (sweep workers, faster small convolutions) and
3m54s-4m20s on three more that evening (residual blocks compiled without recomputing the residual
stream), 3m04s-3m26s on three on 2026-12-04 (the 2x2 convolutions as one dense-matrix product) and
2m45s-2m50s on three more that night (21:31-21:44; training code unchanged). The intermediate depths
(32, 44) would double the cost (a GRID edit adds them).
"""

from resnet_jax.studies.study import degradation_claims

BASE_CONFIG = "configs/digits.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0, 1, 2]}
OVERRIDES = {"train.num_steps": 300, "data.batch_size": 64, "optimizer.learning_rate": 0.05,
             "optimizer.base_batch_size": 64, "optimizer.warmup_steps": 50, "optimizer.warmup": "linear", "optimizer.warmup_learning_rate": 0.0,
             "train.log_every_steps": 25, "train.eval_every_steps": 25, "train.analysis_every_steps": 150}
# The report's analyses, on the first seed of each member: the training loss around the trained
# weights (Li et al. 2018) on a 9 x 9 grid, and the lesion study (Veit et al. 2016) with 2 draws per k.
ANALYSES = {"landscape": {"grid": 9, "line": 15, "num_examples": 128}, "lesion": {"draws": 2}}
# What the study is meant to show, tested by the report over the 3 seeds (report/verdicts.json): plain-56
# has higher training and test error than plain-20 (the degradation problem); residual-56 lower than
# plain-56, and higher than residual-20 by under 1 point (3 of the 297 test digits); and the paper's
# "deeper residual nets are better", which 300 iterations are not expected to decide.
CLAIMS = degradation_claims(shallow=20, deep=56, no_worse_by=1.0)
