"""scikit-learn digits (8x8 grayscale, 1500 train / 297 test): the CPU-sized study.

Ships inside the scikit-learn wheel, so it runs on any fresh machine with no download.
  resnet-jax train --config configs/digits.py:depth=20,variant=residual --workdir runs/digits-r20
Expected: test error under 5% (see README for the measured number and time on 2 CPU cores).
"""

from resnet_jax.config import base_config, parse_arg


def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=20, variant="residual", shortcut="A", seed=0, steps=1200)
  c = base_config()
  c.seed = args.seed
  c.data.name = "digits"
  c.data.batch_size = 128
  c.data.eval_batch_size = 128
  c.data.augment = "pad_crop"  # no flips: a mirrored digit is another symbol
  c.data.pad = 1
  c.model.family = "cifar"
  c.model.depth = args.depth
  c.model.variant = args.variant
  c.model.shortcut = args.shortcut
  c.optimizer.boundaries = (args.steps // 2, args.steps * 3 // 4)
  c.train.num_steps = args.steps
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 200
  c.train.checkpoint_every_steps = 400
  return c
