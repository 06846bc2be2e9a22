"""Config arguments, overrides and validation: bad input exits 2 with one line naming the field,
before any model is built or compiled and before the work directory gets a checkpoint."""

from __future__ import annotations

import pathlib

import re

import pytest

from resnet_jax import cli
from resnet_jax.config import base_config, load_config, parse_arg, resolve, validate
from resnet_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py"))


def spec(name: str) -> str:
  return str(REPO / "configs" / name)


# ----------------------------------------------------------------------------- parse_arg, load_config

def test_parse_arg_keeps_the_types_of_the_defaults():
  args = parse_arg("depth=56,variant=plain,validation=true,lr=0.5", depth=20, variant="residual",
                   validation=False, lr=0.1)
  assert (args.depth, args.variant, args.validation, args.lr) == (56, "plain", True, 0.5)
  assert type(args.depth) is int and type(args.lr) is float
  assert parse_arg(None, depth=20).depth == 20
  assert parse_arg("validation=0", validation=True).validation is False


@pytest.mark.parametrize("arg, named", [("depht=20", "depht"), ("depth", "depth"), ("depth=abc", "depth")])
def test_parse_arg_rejects_unknown_keys_and_bad_values(arg, named):
  with pytest.raises(ConfigError, match=named):
    parse_arg(arg, depth=20, variant="residual")


def test_load_config_applies_argument_and_overrides():
  config = load_config(spec("digits.py") + ":depth=8,steps=40",
                       ["--config.train.num_steps=20", "--config.optimizer.learning_rate=0.05",
                        "--config.model.bn_group_size=4"])
  assert config.model.depth == 8
  assert config.train.num_steps == 20
  assert resolve(config, steps_per_epoch=11).derived.lr_boundaries == (10, 15)  # follows the override
  assert config.optimizer.learning_rate == 0.05
  assert config.model.bn_group_size == 4
  with pytest.raises(AttributeError):  # locked: a typo cannot add a field
    config.train.nmu_steps = 3


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_is_valid(name):
  config = load_config(spec(name), [])
  validate(config, num_devices=1)
  if name in ("digits.py", "synthetic.py"):  # the CPU-sized configs also run on 8 simulated devices
    validate(config, num_devices=8)


def test_validate_rejects_a_batch_that_does_not_divide_over_devices():
  config = base_config()
  config.data.batch_size = 100
  validate(config, num_devices=4)
  with pytest.raises(ConfigError, match=r"data\.batch_size=100 does not divide over 8 devices"):
    validate(config, num_devices=8)
  config.data.batch_size, config.data.eval_batch_size = 128, 500
  with pytest.raises(ConfigError, match=r"data\.eval_batch_size=500"):
    validate(config, num_devices=8)


@pytest.mark.parametrize("field, value, named", [
    ("data", ("augment", "crop"), "data.augment"),
    ("model", ("shortcut", "D"), "model.shortcut"),
    ("optimizer", ("momentum", 1.0), "optimizer.momentum"),
    ("optimizer", ("decay_fractions", (0.75, 0.5)), "optimizer.decay_fractions"),
    ("optimizer", ("learning_rate", float("nan")), "optimizer.learning_rate"),
    ("train", ("num_epochs", 3.0), "train.num_epochs"),
    ("optimizer", ("label_smoothing", 1.0), "label_smoothing"),
    ("train", ("log_every_steps", 0), "train.log_every_steps"),
    ("model", ("bn_group_size", 0), "model.bn_group_size"),
    ("train", ("seeds_together", "pmap"), "train.seeds_together"),
    ("model", ("family", "mnist"), "model.family"),
    ("model", ("variant", "highway"), "model.variant"),
    ("model", ("bottleneck_version", "v2"), "model.bottleneck_version"),
    ("model", ("dtype", "float16"), "model.dtype"),
    ("model", ("bn_momentum", 1.0), "model.bn_momentum"),
    ("model", ("width_multiplier", 0.0), "model.width_multiplier"),
    ("model", ("block", "wide"), "model.block"),
    ("optimizer", ("name", "adam"), "optimizer.name"),
    ("optimizer", ("lr_scaling", "sqrt"), "optimizer.lr_scaling"),
    ("optimizer", ("base_batch_size", 0), "optimizer.base_batch_size"),
    ("optimizer", ("schedule", "poly"), "optimizer.schedule"),
    ("optimizer", ("warmup_epochs", -1.0), "optimizer.warmup_epochs"),
    ("train", ("microbatch_size", 48), "train.microbatch_size"),
])
def test_validate_names_the_bad_field(field, value, named):
  config = base_config()
  config[field][value[0]] = value[1]
  with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
    validate(config, num_devices=1)


@pytest.mark.parametrize("fields, named", [
    (dict(variant="plain", shortcut="D"), "model.shortcut"),  # checked though a plain net builds no shortcut
    (dict(family="cifar", bottleneck_version="v2"), "model.bottleneck_version"),  # though basic blocks ignore it
    (dict(family="imagenet", depth=18, block="bottleneck"), "model.depth=18 with model.block='bottleneck'"),
    (dict(variant="plain", zero_init_residual=True), "model.zero_init_residual"),
])
def test_validate_checks_the_fields_a_network_would_not_reach(fields, named):
  config = base_config()
  config.model.update(fields)
  with pytest.raises(ConfigError, match=re.escape(named)):
    validate(config, num_devices=1)


# ----------------------------------------------------------------------------- through the CLI

DIGITS = spec("digits.py") + ":depth=8,steps=20"
BAD_INPUT = {
    "unknown field": (DIGITS, ["--config.train.nmu_steps=5"], ["nmu_steps"]),
    "wrong type": (DIGITS, ["--config.train.num_steps=abc"], ["num_steps", "abc"]),
    "not a --config flag": (DIGITS, ["--num_steps=5"], ["--config."]),
    "invalid depth": (spec("digits.py") + ":depth=21", [], ["model.depth=21", "6n+2"]),
    "invalid variant": (spec("digits.py") + ":depth=8,variant=resnet", [], ["model.variant", "plain"]),
    "misspelt config argument": (spec("digits.py") + ":depht=20", [], ["depht"]),
    "config argument of the wrong type": (spec("digits.py") + ":depth=deep", [], ["depth"]),
    "zero steps": (DIGITS, ["--config.train.num_steps=0"], ["train.num_steps"]),
    "unknown dataset": (DIGITS, ["--config.data.name=mnist"], ["data.name", "digits"]),
    "bn group not dividing the batch": (DIGITS, ["--config.model.bn_group_size=3"], ["model.bn_group_size"]),
    "micro-batches without BN groups": (DIGITS, ["--config.train.microbatch_size=32"],
                                        ["train.microbatch_size=32", "model.bn_group_size"]),
    "warm-up in steps and in epochs": (
        DIGITS, ["--config.optimizer.warmup_steps=5", "--config.optimizer.warmup_epochs=1"],
        ["optimizer.warmup_steps=5", "optimizer.warmup_epochs=1.0"]),
    "unknown optimizer": (DIGITS, ["--config.optimizer.name=adam"], ["optimizer.name", "lars"]),
    "batch larger than the dataset": (DIGITS, ["--config.data.batch_size=2048"], ["data.batch_size", "1500"]),
    "validation split without size": (DIGITS, ["--config.data.eval_split=validation"], ["data.validation_size"]),
    "validation size not below train size": (
        DIGITS, ["--config.data.validation_size=1500", "--config.data.eval_split=validation"],
        ["data.validation_size"]),
}


@pytest.fixture
def no_model(monkeypatch):
  """Bad input must be caught before a model is built (so before anything compiles)."""
  def reached(*args, **kwargs):
    raise AssertionError("a model was built for a config that should have been rejected")
  monkeypatch.setattr("resnet_jax.train.loop.build_model", reached)


def _one_line_error(capsys, code, named):
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert code == cli.EXIT_BAD_INPUT, captured.err
  assert len(lines) == 1, f"expected one line on stderr, got:\n{captured.err}"
  assert lines[0].startswith("resnet-jax ") and "Traceback" not in captured.err
  for word in named:
    assert word in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_before_compiling(case, tmp_path, capsys, no_model):
  config, overrides, named = BAD_INPUT[case]
  workdir = tmp_path / "run"
  code = cli.main(["train", "--config", config, "--workdir", str(workdir), *overrides])
  _one_line_error(capsys, code, named)
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


def test_unavailable_dataset_says_how_to_get_it(tmp_path, capsys, no_model):
  empty = tmp_path / "tfds"
  empty.mkdir()
  workdir = tmp_path / "run"
  code = cli.main(["train", "--config", spec("cifar10.py") + ":depth=8", "--workdir", str(workdir),
                   f"--config.data.data_dir={empty}"])
  line = _one_line_error(capsys, code, ["cifar10", str(empty), "download_and_prepare", "--config.data.data_dir"])
  assert "not prepared" in line
  assert not (workdir / "checkpoints").exists()
  assert list(empty.iterdir()) == []  # nothing downloaded or prepared


def test_eval_of_a_missing_workdir_exits_2(tmp_path, capsys):
  code = cli.main(["eval", "--workdir", str(tmp_path / "nothing")])
  _one_line_error(capsys, code, ["config.json"])
  code = cli.main(["eval", "--workdir", str(tmp_path), "--config.train.num_steps=3"])
  _one_line_error(capsys, code, ["overrides"])
