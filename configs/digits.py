"""scikit-learn digits (8x8 grayscale, 1500 train / 297 test): the CPU-sized study.

Ships inside the scikit-learn wheel, so it runs on any fresh machine with no download.
  resnet-jax train --config configs/digits.py:depth=20,variant=residual --workdir runs/digits-r20
Expected: test error under 5 % (0.34 %, 1 of 297, in the run BENCHMARKS.md records). Cost: under a
minute on 2 CPU cores (1200 steps at about 4,700 examples/s).
"""

from resnet_jax.config import apply_model_args, base_config, parse_arg


def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=20, variant="residual", shortcut="A", seed=0, steps=1200)
  c = base_config()
  apply_model_args(c, args)
  c.data.name = "digits"
  c.data.batch_size = 128
  c.optimizer.base_batch_size = 128  # lr 0.1 at batch 128 (the paper's CIFAR rate): batch 64 trains at 0.05
  c.data.eval_batch_size = 128
  c.data.augment = "pad_crop"  # no flips: a mirrored digit is another symbol
  c.data.pad = 1
  c.train.num_steps = args.steps  # lr /10 at 50% and 75% of the run (optimizer.decay_fractions)
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 200
  c.train.checkpoint_every_steps = 400
  return c
