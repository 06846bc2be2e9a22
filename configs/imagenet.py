"""ImageNet (ILSVRC 2012), the paper's section 3.4 recipe (Tables 2-3, Fig. 4).

  resnet-jax train --config configs/imagenet.py:depth=34,variant=plain,shortcut=A --workdir runs/in-plain34
Arguments: depth (18 | 34 | 50 | 101 | 152), variant (residual | plain | preact), shortcut (A | B | C;
default A for 18/34 as in the degradation study, B for 50+), bottleneck (v1: paper, stride on the
first 1x1; v1.5: stride on the 3x3, torchvision), dataset (imagenet2012 | imagenette), seed.
Recipe: batch 256, SGD momentum 0.9, weight decay 1e-4 on weights, lr 0.1 divided by 10 every 30
epochs (the paper divided on plateaus, ~600k iterations), scale augmentation (shorter side in
[256, 480], 224 crop, flip, PCA lighting), per-channel mean subtracted, BN over groups of 32 images
(the paper's per-GPU BN). Expected top-1 error, 10-crop (paper): plain-18 27.94, plain-34 28.54,
ResNet-18 27.88, ResNet-34 25.03 (A); ResNet-50/101/152 22.85 / 21.75 / 21.43 (B).
Needs tensorflow-datasets' imagenet2012 prepared (manual download; see docs/training.md).
Cost (an estimate, not measured: no GPU here): 90 epochs are 115M images, about 2 hours for ResNet-50
on 8 H100 at 15-20k img/s in all, bound by the input pipeline; `resnet-jax plan --config
configs/imagenet.py:depth=50 --target h100 --devices 8` compiles it for them and gives its memory.
"""

from resnet_jax.config import base_config, parse_arg

def get_config(arg: str | None = None):
  args = parse_arg(arg, depth=50, variant="residual", shortcut="", bottleneck="v1", dataset="imagenet2012",
                   seed=0, epochs=90)
  c = base_config()
  c.seed = args.seed
  c.data.name = args.dataset
  c.data.batch_size = 256
  c.data.eval_batch_size = 256
  c.data.image_size = 224
  c.data.normalize = "channel_mean"
  c.model.family = "imagenet"
  c.model.depth = args.depth
  c.model.variant = args.variant
  c.model.shortcut = args.shortcut or ("A" if args.depth < 50 else "B")
  c.model.bottleneck_version = args.bottleneck
  c.model.bn_group_size = 32
  c.optimizer.base_batch_size = 256  # the paper's lr 0.1 belongs to batch 256: batch 1024 trains at 0.4
  # Durations in epochs: converted to steps when the run starts, from the split's size and
  # data.batch_size, so they follow --config.data.batch_size and --config.train.num_epochs.
  c.train.num_steps, c.train.num_epochs = 0, float(args.epochs)
  c.optimizer.decay_fractions = tuple(e / args.epochs for e in range(30, args.epochs, 30))  # /10 every 30 epochs
  c.train.log_every_steps = 100
  c.train.eval_every_steps, c.train.eval_every_epochs = 0, 5.0
  c.train.checkpoint_every_steps = 2_000
  return c
