"""The MLPerf Training ResNet-50 v1.5 reference recipe: LARS at batch 4096 (and its rates for 16k and 32k).

  resnet-jax train --config configs/imagenet_mlperf.py --workdir runs/mlperf-r50
Arguments: batch (global, default 4096), epochs (default 42), seed. Change the batch with batch=, not
--config.data.batch_size: the peak rate and warm-up are MLPerf's per-batch choices, not the linear
rule (optimizer.lr_scaling none), so an override of data.batch_size alone keeps batch 4096's rate.
batch=16384 or batch=32768 take lars_util.py's rate and warm-up for those batches; it gives no length
for them, so choose epochs=.
Recipe (mlcommons/training image_classification, v1.0 TensorFlow 2 reference: the TPU v3-64 command in
README_tensorflow2.md, the schedule in tensorflow2/lars_util.py): ResNet-50 v1.5, LARS (trust
coefficient 0.001, epsilon 0; BN and biases neither adapted nor decayed), momentum 0.9, weight decay
2e-4, label smoothing 0.1, BN statistics per replica (64 images: 4096 over the 64 TPU cores, kept here
as model.bn_group_size=64 at any batch); a linear warm-up from 0 to the peak rate, then polynomial decay of power 2
to 1e-4 at the end of the run. Peak rate and warm-up by batch (lars_util.py): below 16384, 10.0 over
5 epochs; below 32768, 25.0 over 5; from 32768, 31.2 over 25. The command trains 42 epochs at batch
4096 (derived.learning_rate 10.0, 1,560 warm-up steps of 13,104) and evaluates every 4.
Published: MLPerf's quality target is 75.9 % top-1 validation accuracy (24.1 % error), reached at
batches of 32k and more by LARS submissions (You et al. 2017; MLPerf). Not as the reference: its
evaluation starts at epoch 2 (here every 4 epochs from the start) and its data pipeline is the
MLPerf one; here configs/imagenet.py's Inception-style crops with per-channel mean/std.
Cost (an estimate, not measured: no GPU here): 42 epochs are 54M images; on 8 H100 between ~16 min at
MLPerf v4.0's 7,160 images/s per GPU and ~45 min at 2,470 (REFERENCE.md's anchors). Batch 4096 on 8
GPUs is 512 per GPU, ~20 GiB of bf16 temporaries by proportion to REFERENCE.md's 2.5 GiB per 64;
train.microbatch_size (a multiple of the BN groups' 64) gives the same result in less memory.
Needs tensorflow-datasets' imagenet2012 prepared (manual download; see docs/training.md).
"""

import os

from resnet_jax.config import load_config, parse_arg

IMAGENET = os.path.join(os.path.dirname(__file__), "imagenet.py")

# lars_util.py's peak rate and warm-up epochs: (first batch of the range, rate, warm-up epochs)
PEAK_RATES = ((0, 10.0, 5.0), (16_384, 25.0, 5.0), (32_768, 31.2, 25.0))


def get_config(arg: str | None = None):
  args = parse_arg(arg, batch=4096, epochs=42, seed=0)
  c = load_config(f"{IMAGENET}:depth=50,variant=residual,shortcut=B,bottleneck=v1.5,seed={args.seed},"
                  f"epochs={args.epochs}", [])
  _, rate, warmup_epochs = [row for row in PEAK_RATES if args.batch >= row[0]][-1]
  c.data.batch_size = args.batch
  c.data.eval_batch_size = 1024
  c.data.train_crop = "inception"
  c.data.normalize = "channel_mean_std"
  c.model.bn_group_size = 64
  c.optimizer.name = "lars"
  c.optimizer.trust_coefficient, c.optimizer.lars_epsilon = 0.001, 0.0
  c.optimizer.learning_rate, c.optimizer.lr_scaling = rate, "none"
  c.optimizer.weight_decay = 2e-4
  c.optimizer.label_smoothing = 0.1
  c.optimizer.schedule, c.optimizer.decay_power, c.optimizer.end_learning_rate = "polynomial", 2.0, 1e-4
  c.optimizer.warmup, c.optimizer.warmup_epochs, c.optimizer.warmup_learning_rate = "linear", warmup_epochs, 0.0
  c.train.eval_every_epochs = 4.0
  return c
