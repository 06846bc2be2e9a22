"""The linear scaling rule on a CPU: ResNet-20 on Fashion-MNIST at batch 128 against batch 1024, the
same 8 epochs, with the rule and warm-up (lr 0.8) and without it (lr 0.1); 2 seeds each.

  resnet-jax sweep experiments/large_batch.py --root runs/large_batch --report

Recipe: configs/fashion_mnist.py (the paper's CIFAR recipe: SGD momentum 0.9, weight decay 1e-4 on
weights, pad-2 crops and flips; lr 0.1 at batch 128, /10 at 50 % and 75 % of the run) for 8 epochs
of the 60,000 training images: 3,744 steps at batch 128, 464 at batch 1024. As Goyal et al. 2017:
BN statistics per 128 images at every batch (model.bn_group_size), and a warm-up over the first
epoch from the unscaled rate 0.1 to the batch's rate, which only the scaled arm has to climb
(0.1 to 0.8, 58 steps). The batch-1024 steps run as 8 micro-batches of 128 (train.microbatch_size:
the same result as one batch with those BN groups, and XLA:CPU trains batch 128 ~2.5x faster per
image than 1024 at once). Test error on the whole test set after every epoch.

CLAIMS (Goyal et al. 2017, scaled down), tested over the seeds by the report: at the same number of epochs,
batch 1024 with the rule and warm-up ends within a point of batch 128's test error; batch 1024 at the unscaled
rate 0.1 (8x fewer updates of the same size) ends worse than with the rule. docs/large-batch.md has the
measured table and verdicts.

Cost: 6 members of 480,000 training images each, one member per core: the run of docs/large-batch.md took
about 3 hours on 2 CPU cores shared with other work (batch 128 at ~390 images/s a core).
"""

from resnet_jax.studies.study import Claim

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20], "variant": ["residual"], "epochs": [8.0], "batch": [128, 1024],
        "lr_scaling": ["linear", "none"], "seed": [0, 1]}
EXCLUDE = [{"batch": 128, "lr_scaling": "none"}]  # at its base batch the rule changes nothing
OVERRIDES = {"model.bn_group_size": 128, "train.microbatch_size": 128, "optimizer.warmup_epochs": 1.0,
             "optimizer.warmup": "linear", "optimizer.warmup_learning_rate": 0.1, "train.log_every_steps": 10,
             "train.eval_every_steps": 0, "train.eval_every_epochs": 1.0}


def _group(batch: int, lr_scaling: str) -> tuple:
  return ("residual", 20, {"batch": batch, "lr_scaling": lr_scaling})


CLAIMS = [
    Claim("batch 1024 with the linear scaling rule and warm-up ends within 1 point of batch 128's test error "
          "(Goyal et al. 2017)", "test_error", _group(1024, "linear"), "within", _group(128, "linear"), margin=1.0),
    Claim("batch 1024 at the unscaled rate ends with higher test error than with the rule", "test_error",
          _group(1024, "none"), ">", _group(1024, "linear")),
    Claim("batch 1024 at the unscaled rate ends with higher training error than with the rule", "train_error",
          _group(1024, "none"), ">", _group(1024, "linear")),
]
