"""The checks of benchmarks/gpu_check.sh, one subcommand each; each prints a Markdown section or one JSON line.

  python benchmarks/gpu_check.py setup --wheels .whl
  python benchmarks/gpu_check.py header
  python benchmarks/gpu_check.py tests --cap 150 --log /tmp/pytest.log -- -q tests/test_units.py
  python benchmarks/gpu_check.py bench --name cifar-resnet56 --goal 40000 --json-out r.json -- --config ... --steps 200
  python benchmarks/gpu_check.py table --title Throughput r.json ...
  python benchmarks/gpu_check.py precision --model cifar:56:32:128 --model imagenet:50:224:32
  python benchmarks/gpu_check.py study --root /tmp/study --cap 200 -- --only seed=0
  python benchmarks/gpu_check.py seeds --depth 20 --batch 128 --seeds 3 --steps 5
  python benchmarks/gpu_check.py record --block gpu_check.md --into BENCHMARKS.md

Run from the repository root (the configs are read from configs/), with the repository on PYTHONPATH: nothing is
installed but the carried wheels (benchmarks/gpu_wheels.sh).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import suite  # benchmarks/suite.py: the benchmark table's format

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = str(REPO / "configs" / "synthetic.py")
STEP_CAP = float(os.environ.get("GPU_CHECK_STEP_CAP", 600))  # gpu_check.sh's timeout of the step running this
# The carried wheels (benchmarks/gpu_wheels.sh): distribution name -> the module it installs.
CARRIED = {"ml_collections": "ml_collections", "tensorboardx": "tensorboardX", "pytest": "pytest", "pluggy": "pluggy",
           "iniconfig": "iniconfig", "pygments": "pygments", "pytest_xdist": "xdist", "execnet": "execnet"}
GPU_SECTION = "## GPU"


def _command_line(argv: list[str]) -> str:
  return " ".join(argv)


def _nvidia_smi() -> str:
  query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
  try:
    return subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout.strip() or "none"
  except (OSError, subprocess.SubprocessError):
    return "none (no nvidia-smi)"


def _commit() -> str:
  if os.environ.get("GPU_CHECK_COMMIT"):
    return os.environ["GPU_CHECK_COMMIT"]
  try:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return sha + (" + uncommitted changes" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "n/a (no git checkout here; set GPU_CHECK_COMMIT)"


def cmd_setup(args) -> None:
  """Install, from the carried wheels and no package index, each package whose module is missing; one line
  (for the header) per package still missing."""
  import importlib.util
  wheels = {path.name.split("-")[0].lower(): path for path in Path(args.wheels).glob("*.whl")} \
      if Path(args.wheels).is_dir() else {}
  wanted = [dist for dist, module in CARRIED.items() if importlib.util.find_spec(module) is None]
  present = [str(wheels[dist]) for dist in wanted if dist in wheels]
  if present:
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                          *present], capture_output=True, text=True)
    print(run.stdout + run.stderr, file=sys.stderr)
  importlib.invalidate_caches()
  missing = [dist for dist in wanted if importlib.util.find_spec(CARRIED[dist]) is None]
  if missing:
    print(f"- **missing on this image, and not among the carried wheels ({args.wheels}/): {', '.join(missing)}**: "
          "prepare them with `bash benchmarks/gpu_wheels.sh` and carry the folder; the steps that need them fail\n")


def cmd_header(args) -> None:
  import flax
  import jax
  import jaxlib
  import optax
  devices = jax.devices()
  now = datetime.datetime.now(datetime.timezone.utc)
  print(f"### GPU check, {now:%Y-%m-%d %H:%M} UTC (`bash benchmarks/gpu_check.sh`{' --smoke' if args.smoke else ''})\n")
  print(f"- nvidia-smi: {_nvidia_smi()}")
  print(f"- jax.devices(): {len(devices)} x {devices[0].device_kind} ({devices[0].platform})")
  print(f"- jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, optax {optax.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
  print(f"- code: {_commit()}; load average {os.getloadavg()[0]:.2f}")
  if args.smoke:
    print("- **smoke mode**: tiny models, few steps, a test subset; the numbers say nothing about speed")


# -- tests ---------------------------------------------------------------------------------------------------------

SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")
MISSING = re.compile(r"No module named '([\w.]+)'")


def _run_capped(argv: list[str], cap: float, log_path: str, env: dict | None = None) -> tuple[int, float, bool]:
  """Run `argv` in its own process group with output into `log_path`; after `cap` seconds send the group SIGINT
  (pytest then still prints its summary), 30 s later SIGKILL; SIGTERM to this process kills the group too.
  Returns (exit code, seconds, whether it was interrupted)."""
  start = time.perf_counter()
  with open(log_path, "w") as log:
    process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, process_group=0, env=env)

    def stop(signum, frame):
      del frame
      os.killpg(process.pid, signal.SIGKILL)
      raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    interrupted = False
    try:
      code = process.wait(timeout=cap)
    except subprocess.TimeoutExpired:
      interrupted = True
      os.killpg(process.pid, signal.SIGINT)
      try:
        code = process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
  return code, time.perf_counter() - start, interrupted


def pytest_outcome(log: str) -> dict:
  """Counts from pytest's last summary line, and the failed/errored tests of its -rfE summary, those that
  failed for a missing module grouped by the module."""
  counts = {}
  summaries = [line for line in log.splitlines() if SUMMARY.search(line) and " in " in line]
  if summaries:
    for number, kind in SUMMARY.findall(summaries[-1]):
      counts[kind.rstrip("s") if kind.startswith("error") else kind] = int(number)
  missing, other = {}, []
  for line in log.splitlines():
    if line.startswith(("FAILED ", "ERROR ")):
      module = MISSING.search(line)
      if module:
        missing.setdefault(module.group(1).split(".")[0], []).append(line.split()[1])
      else:
        other.append(line)
  return dict(counts=counts, missing=missing, other=other)


def cmd_tests(args) -> None:
  import importlib.util
  absent = [module for module in ("pytest", "xdist") if importlib.util.find_spec(module) is None]
  if absent:
    print("#### Test suite on the device\n")
    raise SystemExit(f"{' and '.join(absent)} missing on this image: carry .whl (bash benchmarks/gpu_wheels.sh)")
  argv = [sys.executable, "-m", "pytest", "-rfE", "-p", "no:cacheprovider", "--continue-on-collection-errors",
          *args.pytest_args]
  # pytest cuts each summary line to the terminal's width: wide enough here for the error, whatever the terminal
  code, seconds, interrupted = _run_capped(argv, args.cap, args.log, env=dict(os.environ, COLUMNS="1000"))
  outcome = pytest_outcome(Path(args.log).read_text(errors="replace"))
  counts = ", ".join(f"{n} {kind}" for kind, n in outcome["counts"].items()) or "no summary line"
  print("#### Test suite on the device\n")
  print(f"`python -m pytest {_command_line(argv[3:])}` (cap {args.cap:.0f} s): **{counts}** in {seconds:.0f} s, "
        f"exit code {code}{', interrupted at the cap (counts so far)' if interrupted else ''}.\n")
  for module, tests in sorted(outcome["missing"].items()):
    print(f"- failed for want of `{module}` (not on the device image): {len(tests)}")
  if outcome["other"]:
    print(f"- other failures and errors ({len(outcome['other'])}):")
    for line in outcome["other"][:20]:  # all of them are in the log
      print(f"  - `{line[:200]}`")
  print(json.dumps(dict(check="tests", exit_code=code, seconds=round(seconds, 1), interrupted=interrupted,
                        counts=outcome["counts"], missing={k: len(v) for k, v in outcome["missing"].items()},
                        other=len(outcome["other"]))), file=sys.stderr)


# -- throughput ----------------------------------------------------------------------------------------------------

def cmd_bench(args) -> None:
  """One `resnet-jax benchmark ... --json` under a time cap; writes {name, command, goal, result|error}."""
  command = ["resnet-jax", "benchmark", *args.benchmark_args, "--json"]
  start = time.perf_counter()
  record = dict(name=args.name, command=_command_line(command), goal=args.goal)
  try:
    run = subprocess.run([sys.executable, "-m", "resnet_jax.cli", *command[1:]], cwd=REPO, capture_output=True,
                         text=True, timeout=args.cap)
    if run.returncode == 0:
      record["result"] = json.loads(run.stdout.strip().splitlines()[-1])
    else:
      record["error"] = f"exit code {run.returncode}: " + " ".join(run.stderr.strip().splitlines()[-3:])[-400:]
  except subprocess.TimeoutExpired:
    record["error"] = f"timed out after {args.cap:.0f} s"
  record["wall_s"] = round(time.perf_counter() - start, 1)
  line = json.dumps(record)
  if args.json_out:
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(line)
  print(line, file=sys.stderr)


def _load_record(path: Path) -> dict:
  """A `bench` record, or a raw `resnet-jax benchmark --json` result (suite.py --json-dir) named by its file."""
  data = json.loads(path.read_text())
  return data if "name" in data and ("result" in data or "error" in data) else dict(name=path.stem, result=data)


def cmd_table(args) -> None:
  """The benchmark records as suite.py's table, plus the goals they are measured against."""
  records = [_load_record(Path(p)) for p in args.files]
  print(f"#### {args.title}\n")
  for record in records:
    if record.get("command"):
      print(f"- `{record['command']}` ({record.get('wall_s', '?')} s)")
  done = [(suite.Row(r["name"], "", (), r["result"]["steps_per_window"]), r["result"]) for r in records if "result" in r]
  print("\n" + (suite.markdown(done) if done else "(no results)"))
  for record in records:
    if "error" in record:
      print(f"\n- {record['name']}: **{record['error']}**")
    elif record.get("goal"):
      rate = record["result"]["train_examples_per_s"]
      print(f"\n- {record['name']}: {rate:,.0f} train img/s against the goal of {record['goal']:,.0f} "
            f"({100 * rate / record['goal']:.0f}%): {'met' if rate >= record['goal'] else 'not met'}; "
            f"peak memory {_mib(record['result']['peak_memory_bytes'])}")
  print()


def _mib(value) -> str:
  return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


# -- bf16 vs float32 -----------------------------------------------------------------------------------------------

def _relative(a, ref) -> float:
  """||a - ref|| / ||ref|| over all leaves of two pytrees, in float64."""
  import jax
  import numpy as np
  pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(ref))]
  num = math.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in pairs))
  den = math.sqrt(sum(float(np.sum(y ** 2)) for _, y in pairs))
  return num / den if den else float("nan")


def _worst_leaf(a, ref) -> float:
  """The largest per-leaf relative difference (leaves whose reference is not all zero)."""
  import jax
  import numpy as np
  values = [_relative(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(ref)) if np.any(np.asarray(y))]
  return max(values)


def _forward_backward(model_config: dict, num_classes: int, images, labels, precision: str):
  """Loss, logits and parameter gradients of one train-mode forward and backward pass, as host arrays."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from resnet_jax import platforms
  from resnet_jax.models import build_model
  model = build_model(model_config, num_classes=num_classes, in_channels=images.shape[-1], seed=0,
                      platform=platforms.local_platform(), layers=platforms.LAYERS)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)

  def loss_fn(params):
    logits = nnx.merge(graphdef, params, batch_stats, copy=True)(images, train=True).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

  with jax.default_matmul_precision(precision):
    (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  return jax.device_get((params, loss, logits, grads))


def cmd_precision(args) -> None:
  """bf16 and float32 (default matmul precision: TF32 on recent NVIDIA GPUs) against float32 at 'highest'
  precision: the same initialisation, the same random batch, one train-mode forward and backward pass."""
  import jax
  import numpy as np
  print("#### bfloat16 and float32 against float32 at precision 'highest'\n")
  print(f"`python benchmarks/gpu_check.py {_command_line(sys.argv[1:])}`: one train-mode forward and backward pass "
        "(BN on batch statistics) of the same initialisation (seed 0) on one random-normal batch; relative "
        "difference = ‖x − ref‖ / ‖ref‖, gradient over all parameters together and the worst single tensor. "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(none)'}\n")
  print("| model | image | batch | dtype | matmul precision | loss | loss rel diff | logits rel diff "
        "| grad rel diff | worst tensor grad rel diff | s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for spec in args.model:
    family, depth, size, batch = spec.split(":")
    depth, size, batch = int(depth), int(size), int(batch)
    num_classes = 10 if family == "cifar" else 1000
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, size, size, 3), np.float32)
    labels = rng.integers(0, num_classes, batch).astype(np.int32)
    base = dict(family=family, depth=depth, variant="residual", shortcut="B" if family == "imagenet" else "A")
    ref = None
    for dtype, precision in (("float32", "highest"), ("float32", "default"), ("bfloat16", "default")):
      start = time.perf_counter()
      params, loss, logits, grads = _forward_backward(dict(base, dtype=dtype), num_classes, images, labels, precision)
      seconds = time.perf_counter() - start
      if ref is None:
        ref = params, loss, logits, grads
        diffs = ("(reference)",) * 4
      else:
        same_init = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref[0])))
        if not same_init:
          raise SystemExit(f"{spec}: the {dtype} model's initial parameters differ from the float32 model's")
        diffs = tuple(f"{d:.2e}" for d in (abs(float(loss) - float(ref[1])) / abs(float(ref[1])),
                                           _relative(logits, ref[2]), _relative(grads, ref[3]),
                                           _worst_leaf(grads, ref[3])))
      print(f"| {family}-resnet{depth} | {size} | {batch} | {dtype} | {precision} | {float(loss):.4f} | "
            f"{' | '.join(diffs)} | {seconds:.1f} |", flush=True)


# -- several seeds: vmap vs unroll ---------------------------------------------------------------------------------

def _seeds_run(depth: int, batch: int, num_seeds: int, mode: str, dtype: str, steps: int, time_steps: int,
               windows: int) -> dict:
  """Compile, train `steps` steps from the initialisation (losses, parameter updates), then time windows."""
  import jax
  import numpy as np
  from resnet_jax.benchmark import time_windows
  from resnet_jax.config import load_config
  from resnet_jax.train.loop import setup
  # The paper's rate 0.1 at any batch (not scaled down to the smoke test's batch of 8): the parameters move far
  # enough in a few steps that what the two ways of training several seeds leave apart is rounding.
  overrides = [*suite.CIFAR_INPUT, f"--config.train.num_seeds={num_seeds}", f"--config.train.seeds_together={mode}",
               "--config.optimizer.lr_scaling=none"]
  config = load_config(f"{SYNTHETIC}:family=cifar,depth={depth},batch={batch},dtype={dtype}", overrides)
  exp = setup(config)
  initial = jax.device_get(exp.state.params)
  data = next(exp.inputs.train_batches(0))
  start = time.perf_counter()
  exp.train_step.lower(exp.state, data).compile()
  compile_s = time.perf_counter() - start
  state, losses = exp.state, []
  for _ in range(steps):
    state, metrics = exp.train_step(state, data)
    losses.append(np.reshape(jax.device_get(metrics["loss"]), (num_seeds,)))
  params = jax.device_get(state.params)
  holder = [state]

  def run(n: int):
    for _ in range(n):
      holder[0], _ = exp.train_step(holder[0], data)
    return holder[0]

  seconds = sorted(time_windows(run, time_steps, windows))[windows // 2]
  step_ms = 1e3 * seconds / time_steps
  return dict(num_seeds=num_seeds, mode=mode, compile_s=compile_s, step_ms=step_ms,
              examples_per_s=num_seeds * batch / step_ms * 1e3, losses=np.stack(losses), initial=initial,
              params=params, seeds=exp.seeds)


def _member(tree, k: int):
  import jax
  return jax.tree.map(lambda leaf: leaf[k], tree)


def _update_difference(params, other, initial) -> float:
  """||params - other|| / ||other - initial||: two runs' difference relative to how far the parameters
  moved (in a few steps they hardly move, so relative to the parameters themselves any difference looks small)."""
  import jax
  import numpy as np
  norm = lambda tree: math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in jax.tree.leaves(tree)))
  return norm(jax.tree.map(np.subtract, params, other)) / norm(jax.tree.map(np.subtract, other, initial))


def cmd_seeds(args) -> None:
  """K seeds in one program, vmapped and unrolled, against each other and against seed 0 trained alone."""
  import numpy as np
  print(f"#### Several seeds in one program: vmap vs unroll (CIFAR ResNet-{args.depth}, batch {args.batch})\n")
  print(f"`python benchmarks/gpu_check.py {_command_line(sys.argv[1:])}`: configs/synthetic.py with the paper's input "
        f"side, dtype {args.dtype}; {args.steps} steps from the initialisation for the agreement, then "
        f"{args.windows} timed windows of {args.time_steps} steps (median); img/s counts the examples of all seeds.\n")
  runs = {}
  print("| K | mode | compile s | train step ms | train img/s | step time / single-seed step |")
  print("|---|---|---|---|---|---|")
  for num_seeds, mode in ((1, "-"), (args.seeds, "unroll"), (args.seeds, "vmap")):
    run = _seeds_run(args.depth, args.batch, num_seeds, "vmap" if mode == "-" else mode, args.dtype, args.steps,
                     args.time_steps, args.windows)
    runs[mode] = run
    print(f"| {num_seeds} | {mode} | {run['compile_s']:.1f} | {run['step_ms']:,.2f} | {run['examples_per_s']:,.0f} "
          f"| {run['step_ms'] / runs['-']['step_ms']:.2f} |", flush=True)
  single, unroll, vmap = runs["-"], runs["unroll"], runs["vmap"]
  pairs = [
      ("unroll vs vmap, all seeds", np.max(np.abs(unroll["losses"] - vmap["losses"])),
       max(_update_difference(_member(vmap["params"], k), _member(unroll["params"], k), _member(unroll["initial"], k))
           for k in range(args.seeds))),
  ]
  for mode, run in (("unroll", unroll), ("vmap", vmap)):
    pairs.append((f"seed {single['seeds'][0]} alone vs {mode} member 0",
                  np.max(np.abs(run["losses"][:, 0] - single["losses"][:, 0])),
                  _update_difference(_member(run["params"], 0), single["params"], single["initial"])))
  print(f"\n| runs compared | max abs train-loss diff ({args.steps} steps) "
        "| max parameter diff / parameter update (after those steps) |")
  print("|---|---|---|")
  for name, loss_diff, update_diff in pairs:
    print(f"| {name} | {loss_diff:.2e} | {update_diff:.2e} |")
  print(f"\nFirst-step losses (unroll): {', '.join(f'{x:.4f}' for x in unroll['losses'][0])}; "
        f"members differ: {bool(np.ptp(unroll['losses'][0]) > 0)}")


# -- the GPU-sized study ---------------------------------------------------------------------------------------------

def cmd_study(args) -> None:
  """experiments/fashion_mnist.py's members in GRID order, one after another on the device, until the cap; a row
  per finished member (a later call resumes the rest)."""
  command = ["resnet-jax", "sweep", "experiments/fashion_mnist.py", "--root", args.root, *args.sweep_args]
  log = Path(args.root).with_suffix(".log")
  Path(args.root).mkdir(parents=True, exist_ok=True)
  code, seconds, interrupted = _run_capped([sys.executable, "-m", "resnet_jax.cli", *command[1:]], args.cap, str(log))
  print("#### The GPU-sized Fashion-MNIST study (experiments/fashion_mnist.py)\n")
  print(f"`{_command_line(command)}` (cap {args.cap:.0f} s): {seconds:.0f} s, exit code {code}"
        f"{', stopped at the cap' if interrupted else ''}.\n")
  rows = []
  for member in sorted(Path(args.root).iterdir(), key=lambda path: path.stat().st_mtime):
    finished = member / "finished.json"
    if finished.exists():
      record = json.loads(finished.read_text())
      started = min(p.stat().st_mtime for p in member.iterdir())
      rows.append(f"| {member.name} | {record['step']} | {100 * record['eval_error']:.2f} | "
                  f"{100 * record['train_error']:.2f} | {finished.stat().st_mtime - started:.0f} |")
  if rows:
    print("| member | steps | test error % | train error % (last interval) | s |\n|---|---|---|---|---|")
    print("\n".join(rows))
  else:
    print("- no member finished; the log ends: `" + " ".join(log.read_text(errors="replace").split()[-40:]) + "`")
  print()


# -- BENCHMARKS.md -------------------------------------------------------------------------------------------------

def cmd_record(args) -> None:
  """Put the block at the top of BENCHMARKS.md's GPU section between markers naming its first line (a heading
  unique to the run), replacing what an earlier step of the same run put there: called after each step, so what
  ran is kept if a later step is cut off."""
  block = Path(args.block).read_text().strip()
  begin, end = f"<!-- gpu_check: {block.splitlines()[0]} -->", "<!-- gpu_check: end -->"
  text = Path(args.into).read_text()
  if GPU_SECTION + "\n" not in text:
    raise SystemExit(f"{args.into} has no '{GPU_SECTION}' section")
  if begin in text:  # exactly what an earlier call inserted, removed
    start = text.index("\n" + begin)
    text = text[:start] + text[text.index(end + "\n", start) + len(end) + 1:]
  head, gpu = text.split(GPU_SECTION + "\n", 1)
  Path(args.into).write_text(f"{head}{GPU_SECTION}\n\n{begin}\n{block}\n{end}\n{gpu}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  setup = commands.add_parser("setup", help="install the carried wheels the image lacks (no package index)")
  setup.add_argument("--wheels", default=".whl")
  setup.set_defaults(run=cmd_setup)
  header = commands.add_parser("header", help="date, device, versions")
  header.add_argument("--smoke", action="store_true")
  header.set_defaults(run=cmd_header)
  tests = commands.add_parser("tests", help="pytest with a time cap; counts and failures")
  tests.add_argument("--cap", type=float, default=STEP_CAP - 40,
                     help="seconds before pytest is interrupted (default: $GPU_CHECK_STEP_CAP - 40)")
  tests.add_argument("--log", required=True, help="pytest's whole output goes here")
  tests.add_argument("pytest_args", nargs="*")
  tests.set_defaults(run=cmd_tests)
  bench = commands.add_parser("bench", help="one `resnet-jax benchmark` under a time cap, as a JSON record")
  bench.add_argument("--name", required=True)
  bench.add_argument("--goal", type=float, default=None, help="train img/s to compare with")
  bench.add_argument("--cap", type=float, default=STEP_CAP - 10, help="seconds (default: $GPU_CHECK_STEP_CAP - 10)")
  bench.add_argument("--json-out", default=None)
  bench.add_argument("benchmark_args", nargs="+")
  bench.set_defaults(run=cmd_bench)
  table = commands.add_parser("table", help="benchmark records (bench, suite.py --json-dir) as one table")
  table.add_argument("--title", required=True)
  table.add_argument("files", nargs="*")
  table.set_defaults(run=cmd_table)
  precision = commands.add_parser("precision", help="bf16 and float32 against float32 at 'highest'")
  precision.add_argument("--model", action="append", required=True, metavar="FAMILY:DEPTH:IMAGE:BATCH")
  precision.set_defaults(run=cmd_precision)
  seeds = commands.add_parser("seeds", help="train.num_seeds: vmap vs unroll vs one seed")
  seeds.add_argument("--depth", type=int, default=20)
  seeds.add_argument("--batch", type=int, default=128)
  seeds.add_argument("--seeds", type=int, default=3)
  seeds.add_argument("--dtype", default="auto")
  seeds.add_argument("--steps", type=int, default=5, help="steps compared between the runs")
  seeds.add_argument("--time-steps", type=int, default=20, help="steps per timed window")
  seeds.add_argument("--windows", type=int, default=3)
  seeds.set_defaults(run=cmd_seeds)
  study = commands.add_parser("study", help="the GPU-sized Fashion-MNIST study's members until a time cap")
  study.add_argument("--root", required=True)
  study.add_argument("--cap", type=float, default=STEP_CAP - 20, help="seconds (default: $GPU_CHECK_STEP_CAP - 20)")
  study.add_argument("sweep_args", nargs="*", help="more arguments of `resnet-jax sweep` (--only, --config...)")
  study.set_defaults(run=cmd_study)
  record = commands.add_parser("record", help="put a gpu_check.md block into BENCHMARKS.md's GPU section")
  record.add_argument("--block", required=True)
  record.add_argument("--into", default=str(REPO / "BENCHMARKS.md"))
  record.set_defaults(run=cmd_record)
  args = parser.parse_args()
  if args.command in ("setup", "record"):  # need neither JAX nor the package
    args.run(args)
    return
  sys.path.insert(0, str(REPO))
  from resnet_jax import compilation_cache
  compilation_cache.configure()  # before JAX starts: the eager initialisers' programs are shared between steps
  args.run(args)


if __name__ == "__main__":
  main()
