"""Fashion-MNIST (28x28 grayscale, 60k train / 10k test): a real degradation study sized for one GPU.

Reads Debian's dataset-fashion-mnist files (/usr/share/datasets/fashion-mnist) offline, or
tensorflow-datasets' fashion_mnist.
  resnet-jax train --config configs/fashion_mnist.py:depth=56,variant=plain --workdir runs/fmnist-plain56
Recipe: the paper's CIFAR schedule scaled to `steps` (default 12k: lr 0.1, /10 at 50% and 75%),
batch 128, pad-2 crop and horizontal flips (clothes are left-right symmetric).
Arguments besides depth, variant, shortcut, seed and steps: epochs (> 0: the run's length in epochs
instead of steps), batch (global; the rate follows it, 0.1 x batch / 128) and lr_scaling (none:
0.1 at any batch), for experiments/large_batch.py.
Expected: a residual ResNet-20 ends near 6.4 % test error at 12k steps (BENCHMARKS.md); plain nets get
worse with depth. Cost: about 48 minutes for ResNet-20 on 2 CPU cores; about a minute on one GPU (an
estimate from REFERENCE.md's RTX 3090 anchor, not measured).
"""

from resnet_jax.config import apply_model_args, base_config, parse_arg


def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=20, variant="residual", shortcut="A", seed=0, steps=12_000, epochs=0.0, batch=128,
                   lr_scaling="linear")
  c = base_config()
  apply_model_args(c, args)
  c.data.name = "fashion_mnist"
  c.data.pad = 2
  c.data.batch_size = args.batch
  c.optimizer.base_batch_size = 128  # the paper's CIFAR rate, 0.1 at batch 128
  c.optimizer.lr_scaling = args.lr_scaling
  # lr /10 at 50% and 75% of the run (optimizer.decay_fractions)
  c.train.num_steps, c.train.num_epochs = (0, args.epochs) if args.epochs else (args.steps, 0.0)
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  return c
