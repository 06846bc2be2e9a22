"""CIFAR-10, the paper's section 4.2 recipe (Table 6, Fig. 6).

  resnet-jax train --config configs/cifar10.py:depth=56,variant=plain --workdir runs/cifar10-plain56
Arguments: depth (6n+2), variant (residual | plain | preact), shortcut (A | B | C), seed, validation
(1: train on 45k, evaluate on the held-out 5k, as the paper chose its schedule).
Recipe: batch 128, SGD momentum 0.9, weight decay 1e-4 on weights, lr 0.1 divided by 10 at 32k
and 48k iterations, 64k iterations, pad-4 crop + flip, per-pixel mean subtracted; ResNet-110 and
deeper warm up at lr 0.01 for 400 iterations. Expected test error (paper): ResNet-20/32/44/56/110
8.75 / 7.51 / 7.17 / 6.97 / 6.43 %. Needs tensorflow-datasets' cifar10 prepared (see docs/training.md).
Cost (an estimate, not measured: no GPU here): 64k iterations are 8.2M images, about 7 minutes for
ResNet-20 at the ~19k img/s of REFERENCE.md's RTX 3090 anchor, ~3x for 56 layers, ~6x for 110; on
2 CPU cores about 5 hours for ResNet-20 (~450 img/s, BENCHMARKS.md's CPU suite).
"""

from resnet_jax.config import apply_model_args, base_config, parse_arg

DATASET, NUM_CLASSES = "cifar10", 10


def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=20, variant="residual", shortcut="A", seed=0, validation=False)
  c = base_config()
  apply_model_args(c, args)
  c.data.name = DATASET
  c.data.validation_size = 5000 if args.validation else 0
  c.data.eval_split = "validation" if args.validation else "test"
  c.optimizer.base_batch_size = 128  # the paper's lr 0.1 belongs to batch 128: batch 512 trains at 0.4
  # Paper: ResNet-110 and deeper train at lr 0.01 until training error < 80% (~400 iterations).
  # A rule of model.depth, so it follows --config.model.depth as well as depth=.
  c.optimizer.warmup_steps = 400
  c.optimizer.warmup_min_depth = 110
  return c
