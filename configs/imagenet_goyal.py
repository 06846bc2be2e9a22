"""Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour": ResNet-50 at batch 8192.

  resnet-jax train --config configs/imagenet_goyal.py --workdir runs/goyal-r50
  resnet-jax train --config configs/imagenet_goyal.py:batch=256 --workdir runs/goyal-r50-b256   # their baseline
  resnet-jax train --config configs/imagenet_goyal.py --workdir runs/goyal-r50 --config.train.microbatch_size=2048
Arguments: batch (global, default 8192), depth (50), seed. The rate follows the batch however it is
set (argument or --config.data.batch_size): derived.learning_rate in --dry-run and the run's log.
Recipe (the paper's sections 2 and 5.1): ResNet-50 with the stride on the 3x3 convolutions (v1.5,
their "variant from [12]"), 90 epochs, SGD with Nesterov momentum 0.9, weight decay 1e-4 on weights
and not on BN gamma/beta; the linear scaling rule lr = 0.1 x batch / 256 (3.2 at batch 8192),
reached by a linear warm-up over the first 5 epochs from 0.1 (780 steps at 8192), divided by 10 at
epochs 30, 60 and 80; BN statistics over groups of 32 images whatever the batch (their per-GPU
batch); the last BN gamma of each residual block initialised to zero; scale and aspect-ratio crops
(Inception style) with flips, per-channel mean and std normalisation. Other data settings as
configs/imagenet.py. Not as the paper: their fully connected layer starts from N(0, 0.01), this one
from LeCun normal; they used momentum correction when the rate changes (optax does not).
Published (Goyal et al. 2017): top-1 validation error 23.74 +- 0.09 % at batch 8192 on 256 GPUs against
23.60 +- 0.12 % at batch 256; the rule holds up to about 8k and breaks down beyond.
Cost (an estimate, not measured: no GPU here): 90 epochs are 115M images; on 8 H100 between ~35 min
at MLPerf v4.0's 7,160 images/s per GPU and ~1.6 h at 2,470 (NVIDIA's PyTorch AMP ResNet-50 on one
A100), REFERENCE.md's anchors; the paper took about an hour on 256 P100. Memory: 1,024 images per
GPU at batch 8192 on 8 GPUs; a bf16 ResNet-50 step needs about 2.5 GiB of temporaries per 64 images
(REFERENCE.md, compiled for an H100), so ~40 GiB by proportion; train.microbatch_size=2048 (256 per
GPU, ~10 GiB) gives the same result, BN groups of 32 dividing it.
Needs tensorflow-datasets' imagenet2012 prepared (manual download; see docs/training.md).
"""

import os

from resnet_jax.config import load_config, parse_arg

IMAGENET = os.path.join(os.path.dirname(__file__), "imagenet.py")


def get_config(arg: str | None = None):
  args = parse_arg(arg, batch=8192, depth=50, seed=0)
  c = load_config(f"{IMAGENET}:depth={args.depth},variant=residual,shortcut=B,bottleneck=v1.5,seed={args.seed}",
                  [])
  c.data.batch_size = args.batch
  c.data.eval_batch_size = 1024
  c.data.train_crop = "inception"
  c.data.normalize = "channel_mean_std"
  c.model.bn_group_size = 32
  c.model.zero_init_residual = True
  c.optimizer.nesterov = True
  c.optimizer.learning_rate, c.optimizer.base_batch_size = 0.1, 256  # 0.1 x batch / 256
  c.optimizer.warmup, c.optimizer.warmup_epochs, c.optimizer.warmup_learning_rate = "linear", 5.0, 0.1
  c.optimizer.decay_fractions = (30 / 90, 60 / 90, 80 / 90)  # of 90 epochs
  return c
