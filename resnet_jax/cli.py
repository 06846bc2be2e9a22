"""The `resnet-jax` command: train, eval, describe, sweep, report, compare, analyze, benchmark, convert.

Configs are ml_collections files with an optional argument after ':'; any field can be
overridden with --config.<section>.<field>=<value>. Bad input exits non-zero with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from resnet_jax import compilation_cache, cpu_devices
from resnet_jax.config import load_config
from resnet_jax.train.workdir import recorded_config
from resnet_jax.errors import ConfigError, DatasetUnavailable

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
    from resnet_jax.train.loop import prepare  # after cpu_devices.configure: JAX must not start before the CPU split
    resolved, _, _ = prepare(config)
    print(resolved.to_json_best_effort(indent=2, sort_keys=True))
    return
  from resnet_jax.train.loop import train  # after cpu_devices.configure: JAX must not start before the CPU split
  summary = train(config, args.workdir)
  if summary:  # only process 0 reports
    print(json.dumps({k: v for k, v in summary.items() if "/" not in k}))


def _cmd_eval(args, overrides):
  if overrides:
    raise ConfigError(f"eval takes no config overrides, got {overrides}")
  # after cpu_devices.configure: JAX must not start before the CPU split
  from resnet_jax.train.loop import evaluate_checkpoint
  for result in evaluate_checkpoint(args.workdir, args.step):
    print(json.dumps(result))


def _cmd_describe(args, overrides):
  # after cpu_devices.configure: JAX must not start before the CPU split
  from resnet_jax.describe import describe, format_table
  config = _config(args, overrides)
  info = describe(config)
  print(json.dumps(info) if args.json else format_table(info))


def _cmd_sweep(args, overrides):
  from resnet_jax.studies.sweep import run_sweep  # after cpu_devices.configure: JAX must not start before the CPU split
  try:
    failed = run_sweep(args.study, args.root, launcher=args.launcher, dry_run=args.dry_run,
                       overrides=overrides, only=args.only, at_once=args.jobs, slurm_args=args.slurm_arg)
  except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the sweep said how to resume
    raise SystemExit(EXIT_INTERRUPTED) from None
  if args.report and not args.dry_run:  # the report reads the sweep's runs: studies never import it
    if failed:
      print(f"report skipped: {len(failed)} members failed ({', '.join(failed)})")
    else:
      from resnet_jax.report.index import make_report  # after cpu_devices.configure, as above
      print(f"report: {make_report(args.root)}", flush=True)
  if failed:
    raise SystemExit(1)


def _cmd_report(args, overrides):
  if overrides:
    raise ConfigError(f"report takes no config overrides, got {overrides}")
  # after cpu_devices.configure: JAX must not start before the CPU split
  from resnet_jax.report.index import make_report, run_member_analyses
  formats = tuple(args.formats.split(","))
  if args.analyses_of:
    run_member_analyses(args.root, args.analyses_of, formats)
  else:
    print(make_report(args.root, formats=formats))


def _cmd_compare(args, overrides):
  if overrides:
    raise ConfigError(f"compare takes no config overrides, got {overrides}")
  from resnet_jax.report.verdicts import compare  # after cpu_devices.configure, as the other commands
  table, agree = compare(*args.reports)
  print(table)
  if not agree:
    raise SystemExit(1)


def _cmd_analyze(args, overrides):
  if overrides:
    raise ConfigError(f"analyze takes no config overrides, got {overrides}")
  # after cpu_devices.configure: JAX must not start before the CPU split
  from resnet_jax.report import analyze
  if args.analysis == "landscape":
    from resnet_jax.analysis import landscape as analysis  # after cpu_devices.configure, as above
    given = dict(grid=args.grid, line=args.line, span=args.span, num_examples=args.examples, seed=args.seed,
                 points_per_call=args.points_per_call)
    options, run = analysis.LandscapeOptions, analyze.run_landscape
  else:
    from resnet_jax.analysis import lesion as analysis  # after cpu_devices.configure, as above
    given = dict(draws=args.draws, seed=args.seed, patterns_per_call=args.patterns_per_call)
    options, run = analysis.LesionOptions, analyze.run_lesion
  paths = run(args.workdir, options(**{k: v for k, v in given.items() if v is not None}),
              all_seeds=args.seeds == "all", formats=tuple(args.formats.split(",")))
  for path in paths:
    print(analysis.summary(path))


def _cmd_convert(args, overrides):
  from resnet_jax import interop  # after cpu_devices.configure: JAX must not start before the CPU split
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
  # after cpu_devices.configure: JAX must not start before the CPU split
  from resnet_jax.benchmark import format_benchmark, run_benchmark
  result = run_benchmark(_config(args, overrides), steps=args.steps, peak_tflops=args.peak_tflops)
  print(json.dumps(result) if args.json else format_benchmark(result))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="resnet-jax", description=__doc__.splitlines()[0])
  parser.add_argument("--cpu-devices", default=None, metavar="auto|N",
                      help="XLA devices the CPU is split into for data parallelism (default: $RESNET_JAX_CPU_DEVICES "
                           "or auto: one per core, as many as divide the batch); a --xla_force_host_platform_"
                           "device_count in XLA_FLAGS wins")
  commands = parser.add_subparsers(dest="command", required=True)
  train = commands.add_parser("train", help="train (or resume) a model from a config")
  train.add_argument("--config", required=True, help="configs/<family>.py[:key=value,...]")
  train.add_argument("--workdir", required=True, help="checkpoints, metrics and logs go here; re-run to resume")
  train.add_argument("--dry-run", action="store_true",
                     help="print the resolved config (with the derived durations and schedule in steps) and stop")
  train.set_defaults(run=_cmd_train)
  evaluate = commands.add_parser("eval", help="evaluate a work directory's checkpoint")
  evaluate.add_argument("--workdir", required=True)
  evaluate.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  evaluate.set_defaults(run=_cmd_eval)
  describe = commands.add_parser("describe", help="print a model's stages, parameters and multiply-adds")
  describe.add_argument("--config", required=True)
  describe.add_argument("--json", action="store_true", help="one JSON object instead of a table")
  describe.set_defaults(run=_cmd_describe)
  sweep = commands.add_parser("sweep", help="run every unfinished member of a study in experiments/")
  sweep.add_argument("study", help="experiments/<study>.py")
  sweep.add_argument("--root", required=True, help="one work directory per member goes under here")
  sweep.add_argument("--launcher", choices=("local", "parallel", "slurm"), default="local",
                     help="local: this machine (one member after another on its GPUs, --jobs at once on a CPU); "
                     "parallel: one per local GPU; slurm: submit a job array and follow it to the end")
  sweep.add_argument("--jobs", default="auto",
                     help="members at once on a machine without GPUs, each on its own cores (default auto: one per core)")
  sweep.add_argument("--slurm-arg", action="append", default=[], metavar="OPTION",
                     help="an sbatch option for --launcher slurm, e.g. --slurm-arg=--time=02:00:00 (repeatable; after "
                          "the study's SLURM list); GPUs only when asked for: --slurm-arg=--gres=gpu:1")
  sweep.add_argument("--dry-run", action="store_true",
                     help="list members and their configs, run nothing (--launcher slurm: write the script only)")
  sweep.add_argument("--only", metavar="KEY=VALUE[,...]",
                     help="run only the members whose study arguments match, e.g. depth=20,variant=residual")
  sweep.add_argument("--report", action="store_true", help="run `report` on the root when all members finish")
  sweep.set_defaults(run=_cmd_sweep)
  report = commands.add_parser("report", help="figures and tables from a study's work directories")
  report.add_argument("root")
  report.add_argument("--formats", default="png", help="comma-separated figure formats: png,svg,pdf")
  report.add_argument("--analyses-of", metavar="WORKDIR", help=argparse.SUPPRESS)  # one member's (the report's pool)
  report.set_defaults(run=_cmd_report)
  compare = commands.add_parser("compare", help="the verdicts of two reports side by side: which claims agree "
                                "(exit 0 when all do, 1 when some differ)")
  compare.add_argument("reports", nargs=2, metavar="REPORT",
                       help="a sweep root, its report/ folder or a verdicts.json (e.g. docs/digits_verdicts.json)")
  compare.set_defaults(run=_cmd_compare)
  analyze = commands.add_parser("analyze", help="loss landscape or lesion study of a work directory's models")
  analyses = analyze.add_subparsers(dest="analysis", required=True)
  landscape = analyses.add_parser("landscape", help="training loss around the trained weights (Li et al. 2018)")
  landscape.add_argument("--grid", type=int, help="2-D grid points per axis, odd (default 15)")
  landscape.add_argument("--line", type=int, help="1-D slice points, odd (default 21)")
  landscape.add_argument("--span", type=float, help="coefficients run from -span to span (default 1)")
  landscape.add_argument("--examples", type=int, help="training examples the loss is averaged over (default 128)")
  landscape.add_argument("--points-per-call", type=int,
                         help="grid points vmapped together (default 1: a compiled loop, fastest on CPU)")
  lesion = analyses.add_parser("lesion", help="test error with residual blocks deleted (Veit et al. 2016)")
  lesion.add_argument("--draws", type=int, help="random draws of k deleted blocks, for each k (default 3)")
  lesion.add_argument("--patterns-per-call", type=int,
                      help="lesion patterns vmapped together (default 1: a compiled loop, fastest on CPU)")
  for sub in (landscape, lesion):
    sub.add_argument("--workdir", required=True, help="a trained work directory (the folder with checkpoints/)")
    sub.add_argument("--seed", type=int, help="seed of the directions and example subset / of the draws (default 0)")
    sub.add_argument("--seeds", choices=("first", "all"), default="first",
                     help="which models of a work directory that trained several seeds together")
    sub.add_argument("--formats", default="png", help="comma-separated figure formats: png,svg,pdf")
    sub.set_defaults(run=_cmd_analyze)
  convert = commands.add_parser("convert", help="torchvision/timm ResNet weights into a work directory, or back out")
  direction = convert.add_mutually_exclusive_group(required=True)
  direction.add_argument("--from", dest="source", choices=("torchvision", "timm"),
                         help="import --input into a new --workdir as a model of --config")
  direction.add_argument("--to", dest="target", choices=("torchvision", "timm"),
                         help="export --workdir's checkpoint to --output (.safetensors)")
  convert.add_argument("--input", help="a state dict: .safetensors, or .pth/.pt/.bin with torch installed")
  convert.add_argument("--config", help="configs/imagenet.py:depth=50,bottleneck=v1.5,shortcut=B (with --from)")
  convert.add_argument("--workdir", required=True)
  convert.add_argument("--output", help="the .safetensors file to write (with --to)")
  convert.add_argument("--step", type=int, default=None, help="checkpoint step to export (default: latest)")
  convert.set_defaults(run=_cmd_convert)
  benchmark = commands.add_parser("benchmark", help="compile time, train/eval throughput, memory, MFU")
  benchmark.add_argument("--config", required=True)
  benchmark.add_argument("--steps", type=int, default=20, help="timed steps per window")
  benchmark.add_argument("--peak-tflops", type=float, default=None, help="device peak for model FLOPs utilisation")
  benchmark.add_argument("--json", action="store_true")
  benchmark.set_defaults(run=_cmd_benchmark)
  return parser


def _batch_sizes(args, overrides) -> tuple[int, ...] | None:
  """The batch sizes the CPU devices must divide: the command's config, or the work directory's;
  None for a multi-process job, which keeps one CPU device per process unless the user asks for more."""
  if getattr(args, "config", None):
    data, distributed = _config(args, overrides).data, _config(args, overrides).distributed
  elif args.command in ("eval", "analyze") and os.path.isfile(os.path.join(args.workdir, "config.json")):
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
  # TensorFlow only reads data here: keep its start-up log lines off the terminal.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  try:
    cpu_devices.pin_to_cores()
    cpu_devices.configure(args.cpu_devices, _batch_sizes(args, overrides))  # before JAX starts
    compilation_cache.configure()
    # after cpu_devices.configure: JAX must not start before the CPU split
    from resnet_jax.train.checkpoint import STORAGE_ERRNOS, storage_failure
    from resnet_jax.train.loop import TrainingDiverged, TrainingStopped
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
