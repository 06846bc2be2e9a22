"""Fashion-MNIST (28x28 grayscale, 60k train / 10k test): a real degradation study sized for one GPU.

Reads Debian's dataset-fashion-mnist files (/usr/share/datasets/fashion-mnist) offline, or
tensorflow-datasets' fashion_mnist.
  resnet-jax train --config configs/fashion_mnist.py:depth=56,variant=plain --workdir runs/fmnist-plain56
Recipe: the paper's CIFAR schedule scaled to `steps` (default 12k: lr 0.1, /10 at 50% and 75%),
batch 128, pad-2 crop and horizontal flips (clothes are left-right symmetric).
"""

from resnet_jax.config import apply_model_args, base_config, parse_arg


def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=20, variant="residual", shortcut="A", seed=0, steps=12_000)
  c = base_config()
  apply_model_args(c, args)
  c.data.name = "fashion_mnist"
  c.data.pad = 2
  c.train.num_steps = args.steps  # lr /10 at 50% and 75% of the run (optimizer.decay_fractions)
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  return c
