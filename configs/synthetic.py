"""Random images and labels of any size: for benchmarks and smoke tests (nothing to learn).

  resnet-jax train --config configs/synthetic.py:family=imagenet,depth=50,image_size=224,batch=256 --workdir /tmp/s
  resnet-jax benchmark --config configs/synthetic.py:depth=56,batch=128 --steps 20
Arguments: family, depth, variant, shortcut, image_size, batch, steps, dtype, num_classes. Expected: chance
error. Cost: what `resnet-jax benchmark` measures (BENCHMARKS.md).
"""

from resnet_jax.config import base_config, parse_arg


def get_config(arg: str | None = None):
  args = parse_arg(arg, family="cifar", depth=20, variant="residual", shortcut="A", image_size=32,
                   batch=128, steps=100, dtype="auto", num_classes=10)
  c = base_config()
  c.data.name = "synthetic"
  c.data.image_size = args.image_size
  c.data.num_classes = args.num_classes
  c.data.batch_size = args.batch
  c.data.eval_batch_size = args.batch
  c.data.num_train_examples = 8 * args.batch
  c.data.augment = "none"
  c.data.normalize = "none"
  c.model.family = args.family
  c.model.depth = args.depth
  c.model.variant = args.variant
  c.model.shortcut = "B" if args.family == "imagenet" and args.depth >= 50 else args.shortcut
  c.model.dtype = args.dtype
  c.optimizer.schedule = "constant"
  c.train.num_steps = args.steps
  c.train.log_every_steps = 10
  c.train.eval_every_steps = args.steps
  c.train.checkpoint_every_steps = args.steps
  return c
