"""CIFAR-10 degradation and depth study: the paper's Fig. 6 (left, middle) and Table 6.

Plain nets of 20/32/44/56 layers and residual nets (option A shortcuts) of 20/32/44/56/110 layers,
5 seeds each (45 members), on the paper's recipe (configs/cifar10.py: 64k iterations, batch 128,
lr 0.1 /10 at 32k and 48k, ResNet-110 warmed up at lr 0.01 for 400 iterations).

  resnet-jax sweep experiments/cifar10.py --root runs/cifar10 --dry-run      # list the members
  resnet-jax sweep experiments/cifar10.py --root runs/cifar10 --launcher parallel --report
  resnet-jax sweep experiments/cifar10.py --root runs/cifar10 --launcher slurm   # writes a job array
  resnet-jax report runs/cifar10

Needs tensorflow-datasets' cifar10 prepared (see docs/training.md). Cost (an estimate, not measured here):
64k iterations of ResNet-20 are 8.2M images, about 7 minutes at the ~19k img/s a JAX ResNet-20
reaches on one RTX 3090; deeper nets cost in proportion to their multiply-adds (ResNet-56 about 3x,
ResNet-110 about 6x), so one seed of the 9 nets is about 22 ResNet-20 runs, and the study about
13 GPU-hours on an RTX 3090-class GPU (one member per GPU at a time).
Expected (paper): plain nets' training and test error grow with depth (plain-56 above plain-20);
residual nets' fall with depth, test error 8.75 / 7.51 / 7.17 / 6.97 / 6.43 % (20/32/44/56/110;
110 is the best of 5 runs, mean 6.61 +- 0.16). An independent reproduction measured plain-20
9.78 +- 0.13 and plain-56 12.95 +- 0.22 % (mean of 5).
"""

from resnet_jax.studies.study import Claim, degradation_claims

BASE_CONFIG = "configs/cifar10.py"
GRID = {"depth": [20, 32, 44, 56, 110], "variant": ["plain", "residual"], "seed": [0, 1, 2, 3, 4]}
EXCLUDE = [{"variant": "plain", "depth": 110}]  # the paper's plain nets stop at 56 layers
OVERRIDES = {"train.analysis_every_steps": 16_000}  # per-layer gradient norms at 0, 16k, 32k, 48k
PAPER = {("residual", 20): 8.75, ("residual", 32): 7.51, ("residual", 44): 7.17, ("residual", 56): 6.97,
         ("residual", 110): 6.43}
# What the study is meant to show, tested by the report over the 5 seeds: Table 6's numbers (within 0.5
# points, about 3x the paper's ResNet-110 std of 0.16; for ResNet-110 its mean of 5 runs, 6.61, not the
# best, 6.43), the degradation of plain nets (Fig. 6 left) and deeper residual nets being better (Fig. 6
# middle, Table 6) from 20 to 56 layers and from 56 to 110.
CLAIMS = [
    *(Claim(f"ResNet-{depth} reaches Table 6's {PAPER[('residual', depth)]} % test error (within 0.5 points)",
            "test_error", ("residual", depth), "within", PAPER[("residual", depth)], margin=0.5)
      for depth in (20, 32, 44, 56)),
    Claim("ResNet-110 reaches Table 6's mean of 5 runs, 6.61 % test error (within 0.5 points)", "test_error",
          ("residual", 110), "within", 6.61, margin=0.5),
    *degradation_claims(shallow=20, deep=56, no_worse_by=0.5),
    Claim("residual-110 has lower test error than residual-56 (Table 6)", "test_error", ("residual", 110), "<",
          ("residual", 56)),
]
