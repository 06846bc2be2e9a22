"""The `resnet-jax` command: train, eval, describe, sweep, report, compare, analyze, benchmark, plan, convert.

Configs are ml_collections files with an optional argument after ':'; any field can be
overridden with --config.<section>.<field>=<value>. Bad input exits non-zero with one line.
`main` splits the CPU into devices (cpu_devices) before a command starts JAX's backend, when XLA
reads the split; importing a module of resnet_jax never starts it (tests/test_import_graph.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import jax

from resnet_jax import compilation_cache, cpu_devices, interop, storage
from resnet_jax.analysis.analyses import ANALYSES
from resnet_jax.analysis.trained import option_flag
from resnet_jax.benchmark import format_benchmark, run_benchmark
from resnet_jax.config import load_config
from resnet_jax.describe import describe, format_table
from resnet_jax.errors import ConfigError, DatasetUnavailable
from resnet_jax.plan import format_plan, plan
from resnet_jax.platforms import plugins
from resnet_jax.report import analyze
from resnet_jax.report.index import make_report, run_member_analyses
from resnet_jax.report.verdicts import compare
from resnet_jax.studies.sweep import run_sweep
from resnet_jax.train.checkpoint import STORAGE_ERRNOS, storage_failure
from resnet_jax.train.loop import TrainingStopped, evaluate_checkpoint, prepare, train
from resnet_jax.train.run_log import TrainingDiverged
from resnet_jax.train.workdir import CONFIG_FILE, recorded_config

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports a process ended by the signal
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _config(args, overrides):
  """The command's --config with its overrides, loaded once (main reads its batch sizes first)."""
  if getattr(args, "loaded_config", None) is None:
    args.loaded_config = load_config(args.config, overrides)
  return args.loaded_config


def _cmd_train(args, overrides):
  config = _config(args, overrides)
  if args.dry_run:
    resolved, _, _ = prepare(config)
    print(resolved.to_json_best_effort(indent=2, sort_keys=True))
    return
  summary = train(config, args.workdir)
  if summary:  # only process 0 reports
    print(json.dumps({k: v for k, v in summary.items() if "/" not in k}))


def _cmd_eval(args, overrides):
  if overrides:
    raise ConfigError(f"eval takes no config overrides, got {overrides}")
  for result in evaluate_checkpoint(args.workdir, args.step):
    print(json.dumps(result))


def _cmd_describe(args, overrides):
  config = _config(args, overrides)
  info = describe(config)
  print(json.dumps(info) if args.json else format_table(info))


def _cmd_sweep(args, overrides):
  try:
    failed = run_sweep(args.study, args.root, launcher=args.launcher, dry_run=args.dry_run,
                       overrides=overrides, only=args.only, at_once=args.jobs, slurm_args=args.slurm_arg)
  except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the sweep said how to resume
    raise SystemExit(EXIT_INTERRUPTED) from None
  if args.report and not args.dry_run:  # the report reads the sweep's runs: studies never import it
    if failed:
      print(f"report skipped: {len(failed)} members failed ({', '.join(failed)})")
    else:
      print(f"report: {make_report(args.root)}", flush=True)
  if failed:
    raise SystemExit(1)


def _cmd_report(args, overrides):
  if overrides:
    raise ConfigError(f"report takes no config overrides, got {overrides}")
  formats = tuple(args.formats.split(","))
  if args.analyses_of:
    run_member_analyses(args.root, args.analyses_of, formats)
  else:
    print(make_report(args.root, formats=formats))


def _cmd_compare(args, overrides):
  if overrides:
    raise ConfigError(f"compare takes no config overrides, got {overrides}")
  table, agree = compare(*args.reports)
  print(table)
  if not agree:
    raise SystemExit(1)


def _cmd_analyze(args, overrides):
  if overrides:
    raise ConfigError(f"analyze takes no config overrides, got {overrides}")
  analysis = ANALYSES[args.analysis]
  given = {field.name: getattr(args, field.name) for field in dataclasses.fields(analysis.options)}
  options = analysis.options(**{k: v for k, v in given.items() if v is not None})
  paths = analyze.run(analysis.name, args.workdir, options, all_seeds=args.seeds == "all",
                      formats=tuple(args.formats.split(",")))
  for path in paths:
    print(analysis.summary(path))


def _cmd_convert(args, overrides):
  if args.source:
    if not args.input or not args.config:
      raise ConfigError("convert --from needs --input FILE and --config CONFIG")
    record = interop.import_weights(args.input, _config(args, overrides), args.workdir, source=args.source)
  else:
    if not args.output or args.input or args.config or overrides:
      raise ConfigError("convert --to needs --output FILE and takes no --input, --config or overrides")
    record = interop.export_weights(args.workdir, args.output, target=args.target, step=args.step)
  print(json.dumps(record))


def _cmd_benchmark(args, overrides):
  result = run_benchmark(_config(args, overrides), steps=args.steps, peak_tflops=args.peak_tflops)
  print(json.dumps(result) if args.json else format_benchmark(result))


def _cmd_plan(args, overrides):
  result = plan(_config(args, overrides), args.target, args.devices, search=not args.no_search)
  print(json.dumps(result) if args.json else format_plan(result))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="resnet-jax", description=__doc__.splitlines()[0])
  parser.add_argument("--cpu-devices", default=None, metavar="auto|N",
                      help="XLA devices the CPU is split into for data parallelism (default: $RESNET_JAX_CPU_DEVICES "
                           "or auto: one per core, as many as divide the batch); a --xla_force_host_platform_"
                           "device_count in XLA_FLAGS wins")
  commands = parser.add_subparsers(dest="command", required=True)
  train_cmd = commands.add_parser("train", help="train (or resume) a model from a config")
  train_cmd.add_argument("--config", required=True, help="configs/<family>.py[:key=value,...]")
  train_cmd.add_argument("--workdir", required=True, help="checkpoints, metrics and logs go here; re-run to resume")
  train_cmd.add_argument("--dry-run", action="store_true",
                         help="print the resolved config (with the derived durations and schedule in steps) and stop")
  train_cmd.set_defaults(run=_cmd_train)
  evaluate_cmd = commands.add_parser("eval", help="evaluate a work directory's checkpoint")
  evaluate_cmd.add_argument("--workdir", required=True)
  evaluate_cmd.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  evaluate_cmd.set_defaults(run=_cmd_eval)
  describe_cmd = commands.add_parser("describe", help="print a model's stages, parameters and multiply-adds")
  describe_cmd.add_argument("--config", required=True)
  describe_cmd.add_argument("--json", action="store_true", help="one JSON object instead of a table")
  describe_cmd.set_defaults(run=_cmd_describe)
  sweep_cmd = commands.add_parser("sweep", help="run every unfinished member of a study in experiments/")
  sweep_cmd.add_argument("study", help="experiments/<study>.py")
  sweep_cmd.add_argument("--root", required=True, help="one work directory per member goes under here")
  sweep_cmd.add_argument("--launcher", choices=("local", "parallel", "slurm"), default="local",
                         help="local: this machine (one member after another on its GPUs, --jobs at once on a CPU); "
                         "parallel: one per local GPU; slurm: submit a job array and follow it to the end")
  sweep_cmd.add_argument("--jobs", default="auto",
                         help="members at once on a machine without GPUs, each on its own cores (default auto: one "
                              "per core)")
  sweep_cmd.add_argument("--slurm-arg", action="append", default=[], metavar="OPTION",
                         help="an sbatch option for --launcher slurm, e.g. --slurm-arg=--time=02:00:00 (repeatable; "
                              "after the study's SLURM list); GPUs only when asked for: --slurm-arg=--gres=gpu:1")
  sweep_cmd.add_argument("--dry-run", action="store_true",
                         help="list members and their configs, run nothing (--launcher slurm: write the script only)")
  sweep_cmd.add_argument("--only", metavar="KEY=VALUE[,...]",
                         help="run only the members whose study arguments match, e.g. depth=20,variant=residual")
  sweep_cmd.add_argument("--report", action="store_true", help="run `report` on the root when all members finish")
  sweep_cmd.set_defaults(run=_cmd_sweep)
  report_cmd = commands.add_parser("report", help="figures and tables from a study's work directories")
  report_cmd.add_argument("root")
  report_cmd.add_argument("--formats", default="png", help="comma-separated figure formats: png,svg,pdf")
  # One member's analyses (a job of the report's pool).
  report_cmd.add_argument("--analyses-of", metavar="WORKDIR", help=argparse.SUPPRESS)
  report_cmd.set_defaults(run=_cmd_report)
  compare_cmd = commands.add_parser("compare", help="the verdicts of two reports side by side: which claims agree "
                                    "(exit 0 when all do, 1 when some differ)")
  compare_cmd.add_argument("reports", nargs=2, metavar="REPORT",
                           help="a sweep root, its report/ folder or a verdicts.json (e.g. docs/digits_verdicts.json)")
  compare_cmd.set_defaults(run=_cmd_compare)
  analyze_cmd = commands.add_parser("analyze", help="an analysis of a work directory's models: "
                                                    + ", ".join(ANALYSES))
  analyses = analyze_cmd.add_subparsers(dest="analysis", required=True)
  for analysis in ANALYSES.values():
    sub = analyses.add_parser(analysis.name, help=analysis.help)
    for field in dataclasses.fields(analysis.options):
      sub.add_argument(option_flag(field), dest=field.name, type=type(field.default),
                       help=f"{field.metadata['help']} (default {field.default})")
    sub.add_argument("--workdir", required=True, help="a trained work directory (the folder with checkpoints/)")
    sub.add_argument("--seeds", choices=("first", "all"), default="first",
                     help="which models of a work directory that trained several seeds together")
    sub.add_argument("--formats", default="png", help="comma-separated figure formats: png,svg,pdf")
    sub.set_defaults(run=_cmd_analyze)
  convert_cmd = commands.add_parser("convert",
                                    help="torchvision/timm ResNet weights into a work directory, or back out")
  direction = convert_cmd.add_mutually_exclusive_group(required=True)
  direction.add_argument("--from", dest="source", choices=("torchvision", "timm"),
                         help="import --input into a new --workdir as a model of --config")
  direction.add_argument("--to", dest="target", choices=("torchvision", "timm"),
                         help="export --workdir's checkpoint to --output (.safetensors)")
  convert_cmd.add_argument("--input", help="a state dict: .safetensors, or .pth/.pt/.bin with torch installed")
  convert_cmd.add_argument("--config", help="configs/imagenet.py:depth=50,bottleneck=v1.5,shortcut=B (with --from)")
  convert_cmd.add_argument("--workdir", required=True)
  convert_cmd.add_argument("--output", help="the .safetensors file to write (with --to)")
  convert_cmd.add_argument("--step", type=int, default=None, help="checkpoint step to export (default: latest)")
  convert_cmd.set_defaults(run=_cmd_convert)
  benchmark_cmd = commands.add_parser("benchmark", help="compile time, train/eval throughput, memory, MFU")
  benchmark_cmd.add_argument("--config", required=True)
  benchmark_cmd.add_argument("--steps", type=int, default=20, help="timed steps per window")
  benchmark_cmd.add_argument("--peak-tflops", type=float, default=None, help="device peak for model FLOPs utilisation")
  benchmark_cmd.add_argument("--json", action="store_true")
  benchmark_cmd.set_defaults(run=_cmd_benchmark)
  plan_cmd = commands.add_parser("plan", help="memory per device of a config's training on accelerators not at hand "
                                              "(compiled here, for them)")
  plan_cmd.add_argument("--config", required=True)
  plan_cmd.add_argument("--target", required=True, metavar="NAME",
                        help="the accelerator: h100 (pip install 'resnet-jax[plan]'), v5e (pip install "
                             "'resnet-jax[plan-tpu]')")
  plan_cmd.add_argument("--devices", type=int, default=1, help="devices the global batch is split over (default 1)")
  plan_cmd.add_argument("--no-search", action="store_true", help="skip the search for the largest batch that fits")
  plan_cmd.add_argument("--json", action="store_true")
  plan_cmd.set_defaults(run=_cmd_plan)
  return parser


def _batch_sizes(args, overrides) -> tuple[int, ...] | None:
  """The batch sizes the CPU devices must divide: the command's config, or the work directory's;
  None for a multi-process job, which keeps one CPU device per process unless the user asks for more."""
  if getattr(args, "config", None):
    config = _config(args, overrides)
    data, distributed = config.data, config.distributed
  elif args.command in ("eval", "analyze") and storage.isfile(storage.join(args.workdir, CONFIG_FILE)):
    recorded = recorded_config(args.workdir)
    data, distributed = recorded.data, recorded.distributed
  else:
    return ()
  return None if distributed.enabled else (data.batch_size, data.eval_batch_size)


def xla_flags_for(argv: list[str], user_flags: str) -> str:
  """The XLA_FLAGS that `resnet-jax <argv>` starts JAX with, given the user's own (its CPU split)."""
  args, overrides = _parser().parse_known_args(argv)
  return cpu_devices.xla_flags(args.cpu_devices, _batch_sizes(args, overrides), user_flags)


def main(argv: list[str] | None = None) -> int:
  args, overrides = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
  if args.command == "plan" and "JAX_PLATFORMS" not in os.environ:  # compiles for devices that are not here
    jax.config.update("jax_platforms", "cpu")
  # TensorFlow only reads data here: keep its start-up log lines off the terminal.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  plugins.quiet_absent_accelerators()
  try:
    cpu_devices.pin_to_cores()
    cpu_devices.configure(args.cpu_devices, _batch_sizes(args, overrides))  # before the backend starts
    compilation_cache.configure()
  except (ConfigError, FileNotFoundError) as error:
    print(f"resnet-jax {args.command}: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  try:
    args.run(args, overrides)
  except (ConfigError, DatasetUnavailable, FileNotFoundError) as error:
    print(f"resnet-jax {args.command}: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except TrainingDiverged as error:
    print(f"resnet-jax {args.command}: training diverged: {error}", file=sys.stderr)
    return EXIT_DIVERGED
  except TrainingStopped as error:
    print(f"resnet-jax {args.command}: {error}", file=sys.stderr)
    return EXIT_STOPPED
  except OSError as error:  # a full or read-only disk: what is saved stays, the same command resumes
    if error.errno not in STORAGE_ERRNOS:
      raise
    workdir = args.workdir if args.command == "train" else None
    print(f"resnet-jax {args.command}: error: {storage_failure(error, workdir)}", file=sys.stderr)
    return EXIT_BAD_INPUT
  return 0


if __name__ == "__main__":
  sys.exit(main())
