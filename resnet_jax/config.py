"""Experiment configuration: the base ml_collections config, `key=value` arguments, validation.

Config files in configs/ start from `base_config()` and set what their family needs.
`validate()` runs before anything is compiled and raises `ConfigError` with one line that
names the field and the allowed values.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import os
import traceback
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_dict, config_flags

from resnet_jax.data import registry
from resnet_jax.data.registry import EVAL_CROPS, EVAL_RESIZES, NORMALIZATIONS, STREAMED_DATASETS
from resnet_jax.data.stream_config import StreamConfig
from resnet_jax.errors import ConfigError
from resnet_jax.models import DTYPES, FAMILIES, SHORTCUT_OPTIONS, VARIANTS, architecture
from resnet_jax.models.blocks import BOTTLENECK_VERSIONS

AUGMENTATIONS = ("none", "pad_crop_flip", "pad_crop")
SCHEDULES = ("piecewise", "cosine", "polynomial", "constant")
WARMUPS = ("constant", "linear")
OPTIMIZERS = ("sgd", "lars")
LR_SCALINGS = ("linear", "none")
SEEDS_TOGETHER = ("auto", "vmap", "unroll")


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with the paper's CIFAR-10 defaults."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"  # a built-in set (registry.DATASETS), or your own: tfds:NAME, folder:PATH, npz:PATH
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
  # Your own data (docs/training.md: Your own data; resnet_jax/data/tfds_data.py, folder.py, npz.py).
  c.data.resize_to = config_dict.placeholder(int)  # folder: and tfds: sets: resize to NxN (None: keep the size)
  c.data.image_key = config_dict.placeholder(str)  # tfds: sets: the image feature (None: the single Image)
  c.data.label_key = config_dict.placeholder(str)  # tfds: sets: the label feature (None: the single ClassLabel)
  c.data.in_memory_limit_gb = 4.0  # tfds: sets: held in memory if the train split as uint8 fits, else streamed
  # Streamed datasets (imagenet2012, imagenette, large tfds: sets): tf.data on the host, resnet_jax/data/imagenet.py.
  c.data.tfds_name = config_dict.placeholder(str)  # None: the dataset's default tfds name
  c.data.tfds_train_split = "train"  # also the train split of tfds: sets
  c.data.tfds_eval_split = "validation"  # tfds: sets too; one without a 'validation' split evaluates on 'test'
  c.data.train_crop = "scale"        # scale: shorter side in scale_range, 224 crop (paper); inception
  c.data.scale_range = (256, 480)
  c.data.color_augment = "lighting"  # none | lighting (AlexNet PCA, paper) | jitter_lighting
  c.data.eval_crops = "center"       # center: one 224 crop of the 256 resize; ten: the paper's 10-crop
  c.data.eval_crop_fraction = 0.875
  # Eval resize (streamed data): paper: bilinear without antialias (Caffe); torchvision: as its Resize(256) +
  # CenterCrop(224): shorter side to image_size / eval_crop_fraction, bilinear with antialias, then the crops
  c.data.eval_resize = "paper"
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
  c.optimizer.name = "sgd"  # sgd (paper) | lars: a per-layer trust ratio on kernels, none on BN and biases
  # The rate belongs to a global batch: the run uses learning_rate x data.batch_size / base_batch_size
  # (Goyal et al. 2017's linear scaling rule; derived.learning_rate), so it follows either field.
  # lr_scaling 'none': learning_rate as given at any batch (a recipe with its own rule, e.g. MLPerf's LARS).
  c.optimizer.learning_rate = 0.1
  c.optimizer.base_batch_size = 128  # paper: 0.1 at 128 on CIFAR, at 256 on ImageNet
  c.optimizer.lr_scaling = "linear"
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-4
  c.optimizer.decay_norm_and_bias = False  # paper: decay conv and dense kernels only
  c.optimizer.schedule = "piecewise"
  # piecewise: lr x decay_factor at these fractions of the run (paper: 32k and 48k of 64k iterations),
  # so the schedule follows train.num_steps / num_epochs however they are set.
  c.optimizer.decay_fractions = (0.5, 0.75)
  c.optimizer.decay_factor = 0.1
  c.optimizer.decay_power = 2.0  # polynomial: (1 - t)^power from the rate to end_learning_rate after the warm-up
  c.optimizer.end_learning_rate = 0.0  # polynomial only (MLPerf: 1e-4)
  # Warm-up in steps or in epochs (at most one > 0; both 0: none); epochs follow the batch as every duration.
  c.optimizer.warmup_steps = 0
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.warmup_min_depth = 0  # warm up only models at least this deep (paper: ResNet-110 and deeper)
  # constant: hold warmup_learning_rate (paper's ResNet-110); linear: ramp from it to the rate (Goyal et al.:
  # from 0.1, the unscaled rate). warmup_learning_rate is not scaled with the batch.
  c.optimizer.warmup = "constant"
  c.optimizer.warmup_learning_rate = 0.01
  c.optimizer.label_smoothing = 0.0
  c.optimizer.trust_coefficient = 0.001  # lars: the trust ratio's coefficient (You et al., MLPerf)
  c.optimizer.lars_epsilon = 0.0  # lars: added to the trust ratio's denominator

  c.train = ml_collections.ConfigDict()
  # Durations in steps or in epochs of the training split: exactly one of each pair is > 0 (0: unset).
  # Epochs become steps when the run starts, from the dataset and the batch size.
  c.train.num_steps = 64_000
  c.train.num_epochs = 0.0
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 2_000  # evaluate this often and at the end, whatever log_every_steps is
  c.train.eval_every_epochs = 0.0
  c.train.checkpoint_every_steps = 2_000
  c.train.keep_checkpoints = 3
  c.train.analysis_every_steps = 0  # >0: record per-layer gradient norms this often
  c.train.num_seeds = 1  # K > 1: seeds seed..seed+K-1 train together in one compiled program
  # How: vmap (the K models batched, for GPUs; XLA:CPU runs the resulting grouped convolutions
  # ~6x slower than K separate steps), unroll (K copies of the step in the program; compiles K
  # times longer), auto (unroll in a program lowered for a CPU, vmap elsewhere). BENCHMARKS.md has the measurements.
  c.train.seeds_together = "auto"
  # > 0: each step's global batch runs as consecutive micro-batches of this many examples (global), their
  # gradients averaged before one update (gradient accumulation): a batch the devices cannot hold. BN
  # statistics are per micro-batch, so model.bn_group_size must divide it; then it does not change the result.
  c.train.microbatch_size = 0  # 0: the whole batch at once
  # A jax.profiler trace of the train steps from step profile_start_step to profile_start_step + profile_steps
  # into <workdir>/profile (TensorBoard's profile plugin); 0 steps: off. It changes no result.
  c.train.profile_steps = 0
  c.train.profile_start_step = 10  # after the first steps, which compile

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


def upgrade_recorded(raw: dict) -> dict:
  """A recorded config (JSON-like) with every field it predates at the library's default, which keeps what the
  run computed (a field comes with a default that does what was done before it), and a learning rate that
  belonged to the run's own batch (runs before the scaling rule used it as given)."""
  raw.setdefault("optimizer", {}).setdefault("base_batch_size", raw["data"]["batch_size"])
  _fill(raw, base_config().to_dict())
  if "derived" in raw:
    raw["derived"].setdefault("learning_rate", raw["optimizer"]["learning_rate"])
  return raw


def _fill(tree: dict, defaults: dict) -> None:
  for key, value in defaults.items():
    if isinstance(value, dict):
      _fill(tree.setdefault(key, {}), value)
    else:
      tree.setdefault(key, value)


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


def _one_line(error: BaseException) -> str:
  """'ValueError: the message' with its line breaks folded into spaces."""
  return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _line_in(error: BaseException, path: str) -> str:
  """':<line>' of the innermost traceback frame in file `path`, or ''."""
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if os.path.abspath(frame.filename) == os.path.abspath(path)]
  return f":{lines[-1]}" if lines else ""


def _run_config_file(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the file in `path.py[:arg]`; anything wrong with the file is one ConfigError line."""
  path, sep, arg = spec.partition(":")
  if os.path.exists(path) and not os.path.isfile(path):
    raise ConfigError(f"--config {path} is not a file: expected a config file such as configs/digits.py")
  if not os.path.exists(path):
    folder = os.path.dirname(path) or "."
    found = sorted(f for f in os.listdir(folder) if f.endswith(".py")) if os.path.isdir(folder) else []
    raise ConfigError(f"--config {path}: no such file" + (f"; {folder}/ has {', '.join(found)}" if found else ""))
  loader = importlib.machinery.SourceFileLoader("config_file", path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  try:
    loader.exec_module(module)
  except SyntaxError as error:
    raise ConfigError(f"--config {path}:{error.lineno}: SyntaxError: {error.msg}") from None
  except Exception as error:  # the file itself fails as it is imported
    raise ConfigError(f"--config {path}{_line_in(error, path)}: {_one_line(error)}") from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"--config {path} defines no get_config(arg): a config file returns its "
                      "ml_collections.ConfigDict from get_config, as configs/digits.py does")
  try:
    config = module.get_config(*([arg] if sep else []))
  except ConfigError:  # a bad argument after ':' (parse_arg), already one line naming it
    raise
  except Exception as error:
    raise ConfigError(f"--config {path}{_line_in(error, path)}: get_config raised {_one_line(error)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"--config {path}: get_config returned {type(config).__name__}, expected an "
                      "ml_collections.ConfigDict")
  return config


def load_config(spec: str, overrides: list[str]) -> ml_collections.ConfigDict:
  """Resolve `path.py[:arg]` plus `--config.a.b=v` overrides into a locked ConfigDict."""
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    raise ConfigError(f"unrecognised arguments {unknown}: fields are overridden as --config.<section>.<field>=<value>")
  config = _run_config_file(spec)
  argv = ["resnet-jax", *overrides]
  values = flags.FlagValues()
  try:
    # config_flags finds the override flags in `sys_argv` (and checks their fields) when the flag is defined.
    config_flags.DEFINE_config_dict("config", config, flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
  except flags.Error as error:
    raise ConfigError(str(error).strip().splitlines()[-1].replace("flag --config", "--config")) from None
  except (AttributeError, KeyError) as error:  # an override names a field the config does not have
    while error.args and isinstance(error.args[0], BaseException):  # ml_collections nests them
      error = error.args[0]
    lines = str(error.args[0] if error.args else error).splitlines()
    name = lines[0].strip("'\"")
    field = next((o.split("=")[0] for o in overrides if name in o.split("=")[0].split(".")[1:]), name)
    hint = f"; {lines[-1]}" if len(lines) > 1 else ""
    raise ConfigError(f"{field}: unknown config field{hint}") from None
  return values.config


def apply_model_args(c: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
  """Copy the arguments every config file takes (seed, depth, variant, shortcut) into the config."""
  c.seed = args.seed
  c.model.depth = args.depth
  c.model.variant = args.variant
  c.model.shortcut = args.shortcut


def _check_choice(config, field: str, allowed) -> None:
  value = config[field.split(".")[0]][field.split(".")[1]]
  if value not in allowed:
    raise ConfigError(f"{field}={value!r} is invalid: allowed values are {', '.join(map(str, allowed))}")


def _check_positive(config, field: str, allow_zero: bool = False) -> None:
  section, name = field.split(".")
  value = config[section][name]
  if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
    raise ConfigError(f"{field}={value!r} is invalid: expected a number {'>= 0' if allow_zero else '> 0'}")


def _check_finite(tree: dict, prefix: str = "") -> None:
  """Every number in the config is finite (a NaN learning rate would train before failing)."""
  for key, value in tree.items():
    values = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(value, dict):
      _check_finite(value, f"{prefix}{key}.")
    elif any(isinstance(v, float) and not math.isfinite(v) for v in values):
      raise ConfigError(f"{prefix}{key}={value!r} is invalid: expected a finite number")


def _check_duration(config, steps_field: str, epochs_field: str, required: bool = True) -> None:
  """At most one of a (steps, epochs) pair is > 0; exactly one where the duration is `required`."""
  (section, steps_name), epochs_name = steps_field.split("."), epochs_field.split(".")[1]
  _check_positive(config, steps_field, allow_zero=True)
  _check_positive(config, epochs_field, allow_zero=True)
  steps, epochs = config[section][steps_name], config[section][epochs_name]
  if steps and epochs:
    raise ConfigError(f"{steps_field}={steps} and {epochs_field}={epochs} are both set: give one, "
                      f"the other 0 (e.g. --config.{epochs_field}=0)")
  if required and not steps and not epochs:
    raise ConfigError(f"{steps_field} and {epochs_field} are both 0: give one of them > 0")


DURATIONS = (("train.num_steps", "train.num_epochs"), ("train.eval_every_steps", "train.eval_every_epochs"))
WARMUP = ("optimizer.warmup_steps", "optimizer.warmup_epochs")  # both 0: no warm-up


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Check every field a run uses; raises ConfigError naming the field and allowed values."""
  registry.check_name(config.data.name)
  _check_choice(config, "data.augment", AUGMENTATIONS)
  _check_choice(config, "data.normalize", NORMALIZATIONS)
  _check_choice(config, "data.eval_split", ("test", "validation"))
  if config.data.get("eval_resize", "paper") not in EVAL_RESIZES:  # absent from runs recorded before it existed
    raise ConfigError(f"data.eval_resize={config.data.eval_resize!r} is invalid: allowed values are "
                      f"{', '.join(EVAL_RESIZES)}")
  _check_choice(config, "model.family", FAMILIES)
  _check_choice(config, "model.variant", VARIANTS)
  _check_choice(config, "model.shortcut", SHORTCUT_OPTIONS)
  _check_choice(config, "model.bottleneck_version", BOTTLENECK_VERSIONS)
  _check_choice(config, "model.dtype", tuple(DTYPES))
  _check_choice(config, "optimizer.name", OPTIMIZERS)
  _check_choice(config, "optimizer.lr_scaling", LR_SCALINGS)
  _check_choice(config, "optimizer.schedule", SCHEDULES)
  _check_choice(config, "optimizer.warmup", WARMUPS)
  _check_choice(config, "train.seeds_together", SEEDS_TOGETHER)
  _check_finite(config.to_dict())
  for field in ("data.batch_size", "data.eval_batch_size", "train.log_every_steps", "train.checkpoint_every_steps",
                "train.keep_checkpoints", "train.num_seeds", "model.width_multiplier", "model.bn_epsilon",
                "optimizer.base_batch_size", "optimizer.decay_power", "optimizer.trust_coefficient"):
    _check_positive(config, field)
  for field in ("data.pad", "data.validation_size", "optimizer.learning_rate", "optimizer.weight_decay",
                "optimizer.warmup_learning_rate", "optimizer.label_smoothing", "optimizer.end_learning_rate",
                "optimizer.lars_epsilon", "train.analysis_every_steps", "optimizer.warmup_min_depth",
                "train.profile_steps", "train.profile_start_step"):
    _check_positive(config, field, allow_zero=True)
  for steps, epochs in DURATIONS:
    _check_duration(config, steps, epochs)
  _check_duration(config, *WARMUP, required=False)
  if not 0 <= config.optimizer.momentum < 1:
    raise ConfigError(f"optimizer.momentum={config.optimizer.momentum} is invalid: expected 0 <= momentum < 1")
  if not 0 <= config.model.bn_momentum < 1:
    raise ConfigError(f"model.bn_momentum={config.model.bn_momentum} is invalid: expected 0 <= momentum < 1")
  if config.optimizer.label_smoothing >= 1:
    raise ConfigError("optimizer.label_smoothing must be in [0, 1)")
  fractions = tuple(config.optimizer.decay_fractions)
  if not all(0 < f < 1 for f in fractions) or list(fractions) != sorted(set(fractions)):
    raise ConfigError(f"optimizer.decay_fractions={fractions} is invalid: expected increasing fractions of the run, "
                      "each in (0, 1), e.g. (0.5, 0.75)")
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
  _check_microbatch_size(config, num_devices)
  if config.model.zero_init_residual and config.model.variant == "plain":
    raise ConfigError("model.zero_init_residual=True zeroes a plain net: allowed only with variant residual or preact")
  try:
    architecture(config.model.family, config.model.depth, config.model.block)
  except ValueError as error:
    raise ConfigError(f"model.depth={config.model.depth} with model.block={config.model.block!r} is invalid: "
                      f"{error}") from None
  _check_own_data(config)
  if config.data.name in STREAMED_DATASETS or config.data.name.startswith("tfds:"):  # tfds: sets may stream
    StreamConfig.from_data_config(config.data)
    _check_choice(config, "data.eval_crops", EVAL_CROPS)


def microbatches(config) -> int:
  """How many micro-batches a step's batch runs as (train.microbatch_size; 1: the whole batch at once)."""
  return config.data.batch_size // (config.train.microbatch_size or config.data.batch_size)


def _check_microbatch_size(config, num_devices: int) -> None:
  """Micro-batches split the global batch evenly, each over every device, each holding whole BN groups:
  BN statistics over the global batch (bn_group_size None) cannot be computed a micro-batch at a time."""
  micro, batch, group = config.train.microbatch_size, config.data.batch_size, config.model.bn_group_size
  if not isinstance(micro, int) or isinstance(micro, bool) or micro < 0 or (micro and batch % micro):
    raise ConfigError(f"train.microbatch_size={micro!r} is invalid: expected a divisor of data.batch_size={batch}, "
                      "or 0 for the whole batch at once")
  if microbatches(config) == 1:
    return
  if micro % num_devices:
    raise ConfigError(f"train.microbatch_size={micro} does not divide over {num_devices} devices: use a multiple "
                      f"of {num_devices}")
  if group is None or micro % group:
    asked = "the global batch" if group is None else f"groups of {group}"
    raise ConfigError(f"train.microbatch_size={micro} computes BN statistics per micro-batch, but "
                      f"model.bn_group_size={group} asks for {asked}: set model.bn_group_size to {micro} "
                      "or a divisor of it")


def _check_own_data(config) -> None:
  """The fields of your own data; refused where the dataset would ignore them."""
  data, kind = config.data, (registry.own_kind(config.data.name) or ("",))[0]
  for field, kinds in (("resize_to", ("folder", "tfds")), ("image_key", ("tfds",)), ("label_key", ("tfds",))):
    if data.get(field) is not None and kind not in kinds:
      raise ConfigError(f"data.{field}={data[field]!r} applies to {' and '.join(k + ': sets' for k in kinds)} only, "
                        f"not data.name={data.name!r}: leave it unset")
  if data.get("resize_to") is not None and data.resize_to < 1:
    raise ConfigError(f"data.resize_to={data.resize_to} is invalid: expected an image size >= 1, or None")
  if kind == "tfds" and data.tfds_name is not None:
    raise ConfigError(f"data.tfds_name={data.tfds_name!r} is for imagenet2012 and imagenette: {data.name!r} names "
                      "its tfds set already")
  if kind:
    _check_positive(config, "data.in_memory_limit_gb", allow_zero=True)


def _steps(config, steps_field: str, epochs_field: str, steps_per_epoch: int) -> int:
  (section, steps_name), epochs_name = steps_field.split("."), epochs_field.split(".")[1]
  epochs = config[section][epochs_name]
  return max(1, round(epochs * steps_per_epoch)) if epochs else config[section][steps_name]


def resolve(config: ml_collections.ConfigDict, steps_per_epoch: int) -> ml_collections.ConfigDict:
  """A locked copy of a validated config with a `derived` section: everything the run computes from
  its fields, in steps. The trainer reads durations and the schedule from here only, so derived values
  follow their fields however those were set (config argument or override).

    derived.steps_per_epoch   whole global batches per epoch of the training split
    derived.num_steps         train.num_steps, or train.num_epochs x steps_per_epoch
    derived.eval_every_steps  train.eval_every_steps, or train.eval_every_epochs x steps_per_epoch
    derived.lr_boundaries     piecewise schedule: optimizer.decay_fractions x num_steps, rounded
    derived.learning_rate     the rate after the warm-up: optimizer.learning_rate x data.batch_size /
                              optimizer.base_batch_size (linear scaling rule), or learning_rate (lr_scaling none)
    derived.warmup_steps      optimizer.warmup_steps, or warmup_epochs x steps_per_epoch, if model.depth >=
                              optimizer.warmup_min_depth, else 0
    derived.microbatches      data.batch_size / train.microbatch_size: micro-batches per step (1: none)
    derived.data_*            your own data only: source, fingerprint, streamed, eval split (registry.provenance)
  """
  (run_steps, run_epochs), (eval_steps, eval_epochs) = DURATIONS
  num_steps = _steps(config, run_steps, run_epochs, steps_per_epoch)
  opt = config.optimizer
  boundaries = tuple(round(f * num_steps) for f in opt.decay_fractions) if opt.schedule == "piecewise" else ()
  warmup = _steps(config, *WARMUP, steps_per_epoch) if config.model.depth >= opt.warmup_min_depth else 0
  length = f"train.num_steps={num_steps}" if config.train.num_steps else \
      f"train.num_epochs={config.train.num_epochs} ({num_steps} steps of {steps_per_epoch} per epoch)"
  if not all(0 < b < num_steps for b in boundaries) or len(set(boundaries)) != len(boundaries):
    raise ConfigError(f"optimizer.decay_fractions={tuple(opt.decay_fractions)} put the learning-rate decays at steps "
                      f"{boundaries} of {length}: each must be a distinct step inside (0, {num_steps}); "
                      "lengthen the run or use --config.optimizer.schedule=constant")
  if warmup >= num_steps:
    given = f"optimizer.warmup_epochs={opt.warmup_epochs} ({warmup} steps)" if opt.warmup_epochs else \
        f"optimizer.warmup_steps={warmup}"
    raise ConfigError(f"{given} must be below the run's {num_steps} steps ({length})")
  rate = opt.learning_rate * config.data.batch_size / opt.base_batch_size if opt.lr_scaling == "linear" \
      else opt.learning_rate
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.derived = ml_collections.ConfigDict(dict(
      steps_per_epoch=steps_per_epoch, num_steps=num_steps,
      eval_every_steps=_steps(config, eval_steps, eval_epochs, steps_per_epoch),
      lr_boundaries=boundaries, learning_rate=rate, warmup_steps=warmup, microbatches=microbatches(config),
      **registry.provenance(config.data)))
  resolved.lock()
  return resolved
