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

Claims (Goyal et al. 2017, scaled down): at the same number of epochs, batch 1024 with the rule and
warm-up ends near batch 128's test error; batch 1024 at the unscaled rate 0.1 (8x fewer updates of
the same size) ends clearly worse. docs/training.md has the measured table.

Cost: 6 members of 480,000 training images each; on 2 CPU cores one member per core at ~420-540
images/s (measured with `resnet-jax benchmark`, batch 128, one core), about an hour.
"""

BASE_CONFIG = "configs/fashion_mnist.py"
GRID = {"depth": [20], "variant": ["residual"], "epochs": [8.0], "batch": [128, 1024],
        "lr_scaling": ["linear", "none"], "seed": [0, 1]}
EXCLUDE = [{"batch": 128, "lr_scaling": "none"}]  # at its base batch the rule changes nothing
OVERRIDES = {"model.bn_group_size": 128, "train.microbatch_size": 128, "optimizer.warmup_epochs": 1.0,
             "optimizer.warmup": "linear", "optimizer.warmup_learning_rate": 0.1, "train.log_every_steps": 10,
             "train.eval_every_steps": 0, "train.eval_every_epochs": 1.0}
