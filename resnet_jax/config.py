"""Experiment configuration: the base ml_collections config, `key=value` arguments, validation.

Config files in configs/ start from `base_config()` and set what their family needs.
`validate()` runs before anything is compiled and raises `ConfigError` with one line that
names the field and the allowed values.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from resnet_jax.errors import ConfigError

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagenet2012", "imagenette", "synthetic")
STREAMED_DATASETS = ("imagenet2012", "imagenette")
AUGMENTATIONS = ("none", "pad_crop_flip", "pad_crop")
NORMALIZATIONS = ("pixel_mean", "channel_mean", "channel_mean_std", "none")
SCHEDULES = ("piecewise", "cosine", "constant")
WARMUPS = ("constant", "linear")
SEEDS_TOGETHER = ("auto", "vmap", "unroll")


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with the paper's CIFAR-10 defaults."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.batch_size = 128          # global, over all devices and hosts
  c.data.eval_batch_size = 1000    # global; the last batch is padded and masked
  c.data.augment = "pad_crop_flip"
  c.data.pad = 4
  c.data.normalize = "pixel_mean"  # paper: per-pixel mean subtracted, no division by std
  c.data.validation_size = 0       # >0 holds out that many training examples (paper: 5000)
  c.data.eval_split = "test"       # 'test' or 'validation' (needs validation_size > 0)
  c.data.data_dir = config_dict.placeholder(str)
  c.data.image_size = 32           # synthetic data only
  c.data.num_classes = 10          # synthetic data only
  c.data.num_train_examples = 4096  # synthetic data only
  # Streamed datasets (imagenet2012, imagenette): tf.data on the host, see resnet_jax/data/imagenet.py.
  c.data.tfds_name = config_dict.placeholder(str)  # None: the dataset's default tfds name
  c.data.tfds_train_split = "train"
  c.data.tfds_eval_split = "validation"
  c.data.train_crop = "scale"        # scale: shorter side in scale_range, 224 crop (paper); inception
  c.data.scale_range = (256, 480)
  c.data.color_augment = "lighting"  # none | lighting (AlexNet PCA, paper) | jitter_lighting
  c.data.eval_crops = "center"       # center: one 224 crop of the 256 resize; ten: the paper's 10-crop
  c.data.eval_crop_fraction = 0.875
  c.data.shuffle_buffer = 10_000     # encoded examples held for shuffling (~1.1 GB on ImageNet)
  c.data.prefetch = 2                # batches
  c.data.num_workers = config_dict.placeholder(int)  # tf.data threads; None: autotune
  c.data.cache = False               # keep this process's encoded share in RAM
  c.data.ram_budget_gb = 4.0         # tf.data autotune memory bound

  c.model = ml_collections.ConfigDict()
  c.model.family = "cifar"
  c.model.depth = 20
  c.model.block = config_dict.placeholder(str)  # CIFAR: 'basic' (6n+2) or 'bottleneck' (9n+2)
  c.model.variant = "residual"     # residual | plain | preact
  c.model.shortcut = "A"           # A | B | C (ignored by plain nets)
  c.model.width_multiplier = 1.0
  c.model.bottleneck_version = "v1"  # v1: stride on the first 1x1 (paper); v1.5: on the 3x3
  c.model.zero_init_residual = False
  c.model.bn_momentum = 0.9
  c.model.bn_epsilon = 1e-5
  c.model.bn_group_size = config_dict.placeholder(int)  # None: statistics over the global batch
  c.model.dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU; params, optimiser, BN stats stay float32

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-4
  c.optimizer.decay_norm_and_bias = False  # paper: decay conv and dense kernels only
  c.optimizer.schedule = "piecewise"
  c.optimizer.boundaries = (32_000, 48_000)
  c.optimizer.decay_factor = 0.1
  c.optimizer.warmup_steps = 0
  c.optimizer.warmup = "constant"  # constant: hold warmup_learning_rate (paper's ResNet-110)
  c.optimizer.warmup_learning_rate = 0.01
  c.optimizer.label_smoothing = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 64_000
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 2_000
  c.train.checkpoint_every_steps = 2_000
  c.train.keep_checkpoints = 3
  c.train.analysis_every_steps = 0  # >0: record per-layer gradient norms this often
  c.train.num_seeds = 1  # K > 1: seeds seed..seed+K-1 train together in one compiled program
  # How: vmap (the K models batched, for GPUs; XLA:CPU runs the resulting grouped convolutions
  # ~6x slower than K separate steps), unroll (K copies of the step in the program; compiles K
  # times longer), auto (unroll on CPU, vmap elsewhere). BENCHMARKS.md has the measurements.
  c.train.seeds_together = "auto"

  # Multi-process runs: left empty, jax.distributed detects SLURM, TPU pods and the like.
  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False             # True: call jax.distributed.initialize()
  c.distributed.coordinator_address = config_dict.placeholder(str)  # host:port of process 0
  c.distributed.num_processes = config_dict.placeholder(int)
  c.distributed.process_id = config_dict.placeholder(int)
  c.distributed.initialization_timeout_s = 300  # a process that never joins fails the job after this
  c.distributed.heartbeat_timeout_s = 100  # a process that dies or hangs fails the others after this
  c.distributed.cpu_collectives = "gloo"   # CPU-only jobs: cross-process collectives over gloo
  return c


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parse 'depth=56,variant=plain' into a ConfigDict over `defaults` (values keep their types)."""
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ConfigError(f"config argument {item!r}: expected key=value with key one of {sorted(defaults)}")
    kind = type(defaults[key])
    try:
      parsed[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError:
      raise ConfigError(f"config argument {key}={value!r}: expected a {kind.__name__}") from None
  return parsed


def load_config(spec: str, overrides: list[str]):
  """Resolve `path.py[:arg]` plus `--config.a.b=v` overrides into a locked ConfigDict."""
  from absl import flags
  from ml_collections import config_flags
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    raise ConfigError(f"unrecognised arguments {unknown}: fields are overridden as --config.<section>.<field>=<value>")
  argv = ["resnet-jax", f"--config={spec}", *overrides]
  values = flags.FlagValues()
  # config_flags finds the override flags in `sys_argv` when the flag is defined.
  config_flags.DEFINE_config_file("config", default=None, flag_values=values, lock_config=True, sys_argv=argv)
  try:
    values(argv)
  except flags.Error as error:
    message = str(error).strip().splitlines()[-1].replace(f"{ConfigError.__module__}.ConfigError: ", "")
    raise ConfigError(message.replace("flag --config", "--config")) from None
  except (AttributeError, KeyError) as error:  # an override names a field the config does not have
    while error.args and isinstance(error.args[0], BaseException):  # ml_collections nests them
      error = error.args[0]
    lines = str(error.args[0] if error.args else error).splitlines()
    name = lines[0].strip("'\"")
    field = next((o.split("=")[0] for o in overrides if o.split("=")[0].endswith(f".{name}")), name)
    hint = f"; {lines[-1]}" if len(lines) > 1 else ""
    raise ConfigError(f"{field}: unknown config field{hint}") from None
  return values.config


def apply_model_args(c: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
  """Copy the arguments every config file takes (seed, depth, variant, shortcut) into the config."""
  c.seed = args.seed
  c.model.depth = args.depth
  c.model.variant = args.variant
  c.model.shortcut = args.shortcut


def scale_schedule(c: ml_collections.ConfigDict, num_steps: int) -> None:
  """The paper's CIFAR schedule shape (64k steps, lr /10 at 50% and 75%) over `num_steps` steps."""
  c.train.num_steps = num_steps
  c.optimizer.boundaries = (num_steps // 2, num_steps * 3 // 4)


def _check_choice(config, field: str, allowed) -> None:
  value = config[field.split(".")[0]][field.split(".")[1]]
  if value not in allowed:
    raise ConfigError(f"{field}={value!r} is invalid: allowed values are {', '.join(map(str, allowed))}")


def _check_positive(config, field: str, allow_zero: bool = False) -> None:
  section, name = field.split(".")
  value = config[section][name]
  if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
    raise ConfigError(f"{field}={value!r} is invalid: expected a number {'>= 0' if allow_zero else '> 0'}")


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Check every field a run uses; raises ConfigError naming the field and allowed values."""
  from resnet_jax.models import DTYPES, FAMILIES, SHORTCUT_OPTIONS, VARIANTS, architecture
  from resnet_jax.models.blocks import BOTTLENECK_VERSIONS

  _check_choice(config, "data.name", DATASETS)
  _check_choice(config, "data.augment", AUGMENTATIONS)
  _check_choice(config, "data.normalize", NORMALIZATIONS)
  _check_choice(config, "data.eval_split", ("test", "validation"))
  _check_choice(config, "model.family", FAMILIES)
  _check_choice(config, "model.variant", VARIANTS)
  _check_choice(config, "model.shortcut", SHORTCUT_OPTIONS)
  _check_choice(config, "model.bottleneck_version", BOTTLENECK_VERSIONS)
  _check_choice(config, "model.dtype", tuple(DTYPES))
  _check_choice(config, "optimizer.schedule", SCHEDULES)
  _check_choice(config, "optimizer.warmup", WARMUPS)
  _check_choice(config, "train.seeds_together", SEEDS_TOGETHER)
  for field in ("data.batch_size", "data.eval_batch_size", "train.num_steps", "train.log_every_steps",
                "train.eval_every_steps", "train.checkpoint_every_steps", "train.keep_checkpoints", "train.num_seeds",
                "model.width_multiplier", "model.bn_epsilon"):
    _check_positive(config, field)
  for field in ("data.pad", "data.validation_size", "optimizer.learning_rate", "optimizer.weight_decay",
                "optimizer.warmup_steps", "optimizer.warmup_learning_rate", "optimizer.label_smoothing",
                "train.analysis_every_steps"):
    _check_positive(config, field, allow_zero=True)
  if not 0 <= config.optimizer.momentum < 1:
    raise ConfigError(f"optimizer.momentum={config.optimizer.momentum} is invalid: expected 0 <= momentum < 1")
  if not 0 <= config.model.bn_momentum < 1:
    raise ConfigError(f"model.bn_momentum={config.model.bn_momentum} is invalid: expected 0 <= momentum < 1")
  if config.optimizer.label_smoothing >= 1:
    raise ConfigError("optimizer.label_smoothing must be in [0, 1)")
  if list(config.optimizer.boundaries) != sorted(config.optimizer.boundaries):
    raise ConfigError(f"optimizer.boundaries={tuple(config.optimizer.boundaries)} must be increasing step numbers")
  if config.data.eval_split == "validation" and config.data.validation_size == 0:
    raise ConfigError("data.eval_split='validation' needs data.validation_size > 0 (the paper used 5000)")
  for field in ("batch_size", "eval_batch_size"):
    if config.data[field] % num_devices:
      raise ConfigError(f"data.{field}={config.data[field]} does not divide over {num_devices} devices: "
                        f"use a multiple of {num_devices}")
  group = config.model.bn_group_size
  if group is not None and (group < 1 or config.data.batch_size % group):
    raise ConfigError(f"model.bn_group_size={group} must be a positive divisor of data.batch_size="
                      f"{config.data.batch_size}, or None for global-batch statistics")
  if config.model.zero_init_residual and config.model.variant == "plain":
    raise ConfigError("model.zero_init_residual=True zeroes a plain net: allowed only with variant residual or preact")
  try:
    architecture(config.model.family, config.model.depth, config.model.block)
  except ValueError as error:
    raise ConfigError(str(error)) from None
  if config.data.name in STREAMED_DATASETS:
    from resnet_jax.data.imagenet import EVAL_CROPS, StreamConfig
    StreamConfig.from_data_config(config.data)
    _check_choice(config, "data.eval_crops", EVAL_CROPS)
