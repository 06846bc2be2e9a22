"""Degradation on scikit-learn digits in minutes on a CPU: plain and residual nets of 20 and 56 layers,
3 seeds each, with the spread over seeds, the loss landscapes and the lesion study.

  resnet-jax sweep experiments/digits.py --root runs/digits --report
  resnet-jax report runs/digits          # again, or with --formats png,svg,pdf
  resnet-jax compare runs/digits docs/digits_verdicts.json   # your verdicts against the README's run

Recipe: configs/digits.py (pad-1 crops, SGD momentum 0.9, weight decay 1e-4) with batch 64 and
lr 0.05 (the paper's 0.1 at 128, scaled linearly; given as the rate of batch 64), ramped up linearly
from 0 over the first 50 iterations, divided by 10 at 50% and 75% of the run, stopped at 300
iterations (12.8 epochs of the 1500 training digits). Seeds 0, 1 and 2 of each member are separate
runs (members ...-seed<s>), each with its own initialisation, example order and augmentation. On a
CPU the sweep runs one member per core, the first seed of every member first, so seeds 1 and 2 reuse
its compiled programs.

Shows: plain-56 trains far worse than plain-20 in every seed (the degradation problem), residual-56
trains; whether residual-56 beats residual-20 is undecided at this budget (CLAIMS; the README has the
verdicts of a named run). Why 3 seeds of the two end depths: deep plain nets on this data sit on a
knife-edge (their gradients explode at initialisation), so the size of the degradation moves between
seeds and CPUs while its sign does not; the intermediate depths (32, 44) would double the cost.
Cost: about 3 minutes for the whole command on 2 CPU cores (the README's named run; BENCHMARKS.md
keeps every timing).
"""

from resnet_jax.studies.study import degradation_claims

BASE_CONFIG = "configs/digits.py"
GRID = {"depth": [20, 56], "variant": ["plain", "residual"], "seed": [0, 1, 2]}
OVERRIDES = {"train.num_steps": 300, "data.batch_size": 64, "optimizer.learning_rate": 0.05,
             "optimizer.base_batch_size": 64, "optimizer.warmup_steps": 50, "optimizer.warmup": "linear",
             "optimizer.warmup_learning_rate": 0.0, "train.log_every_steps": 25, "train.eval_every_steps": 25,
             "train.analysis_every_steps": 150}
# The report's analyses, on the first seed of each member: the training loss around the trained
# weights (Li et al. 2018) on a 9 x 9 grid, and the lesion study (Veit et al. 2016) with 2 draws per k.
ANALYSES = {"landscape": {"grid": 9, "line": 15, "num_examples": 128}, "lesion": {"draws": 2}}
# What the study is meant to show, tested by the report over the 3 seeds (report/verdicts.json): plain-56
# has higher training and test error than plain-20 (the degradation problem); residual-56 lower than
# plain-56, and higher than residual-20 by under 1 point (3 of the 297 test digits); and the paper's
# "deeper residual nets are better", which 300 iterations are not expected to decide.
CLAIMS = degradation_claims(shallow=20, deep=56, no_worse_by=1.0)
