#!/usr/bin/env bash
# Everything that has never run on an accelerator, most valuable first, in one command sized for a session's device
# time (15 minutes in all, at most 10 per command; the default budget of 420 s leaves room for the machine's start
# and a second call): the test suite on the GPU, the goals' benchmarks (BENCHMARKS.md "## GPU"), bf16 against
# float32, the GPU-sized Fashion-MNIST study, then vmap against unrolled seeds and the suite's GPU preset, as far as
# the budget goes. After each step its numbers go into BENCHMARKS.md's GPU section, and BENCHMARKS.md, the Markdown
# block (gpu_check.md), the log and the JSON results into $OUT.
#
# Prepare once, here, in the repository root: the wheels the device image lacks and the Fashion-MNIST files, into
# the git-ignored .whl/ and .data/ (the device machine reaches no package index):
#   bash benchmarks/gpu_wheels.sh
# Run on the device machine (the `run` tool; no .git travels, so pass the commit: git rev-parse --short HEAD):
#   run(command="GPU_CHECK_COMMIT=<sha> bash benchmarks/gpu_check.sh", carry=[".whl", ".data"], timeout_s=540)
# Then copy $OUT's BENCHMARKS.md over this checkout's. Smoke test on a CPU, a minute or two (tiny models, few steps,
# a test subset; BENCHMARKS.md is not touched unless GPU_CHECK_BENCHMARKS names a file):
#   bash benchmarks/gpu_check.sh --smoke        (or GPU_CHECK_SMOKE=1)
# Environment: PYTHON (default python3), nothing installed but numpy, jax, flax, optax, orbax-checkpoint,
# scikit-learn and matplotlib needed (the repository is put on PYTHONPATH); GPU_CHECK_BUDGET_S (default 420: each
# step's timeout is cut to what is left, a step with under 20 s left is skipped); GPU_CHECK_WHEELS (the carried
# wheels, default .whl); GPU_CHECK_DATA (the carried data, default .data); GPU_CHECK_ONLY (steps to run, of
# header, tests, bench, precision, study, seeds, suite); GPU_CHECK_BENCHMARKS (the BENCHMARKS.md to write: default
# this checkout's, none in smoke mode); OUT (where the block, BENCHMARKS.md, the logs and the JSON results go).
set -u
cd "$(dirname "$0")/.."
SMOKE=${GPU_CHECK_SMOKE:-0}
[ "${1:-}" = --smoke ] && SMOKE=1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-420}
ONLY=${GPU_CHECK_ONLY:-header,tests,bench,precision,study,seeds,suite}
OUTDIR=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG=$OUTDIR/gpu_check.log
mkdir -p "$OUTDIR" "$WORK/md" "$WORK/log" "$WORK/json/bench" "$WORK/json/suite"
: >"$LOG"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 RESNET_JAX_COMPILATION_CACHE=$WORK/xla  # a fresh one, shared
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
CHECK="$PY benchmarks/gpu_check.py"
DATA=$(realpath -m "${GPU_CHECK_DATA:-.data}")
if ((SMOKE)); then BENCHMARKS_MD=${GPU_CHECK_BENCHMARKS:-}; else BENCHMARKS_MD=${GPU_CHECK_BENCHMARKS:-BENCHMARKS.md}; fi
echo "gpu_check: block in $OUTDIR/gpu_check.md, log $LOG" >&2

wanted() { [[ ,$ONLY, == *,$1,* ]]; }

# The block so far, into $OUT and into BENCHMARKS.md's GPU section (a copy of which goes into $OUT).
record() {
  for name in header tests bench bench-table precision study seeds suite footer; do
    [ -f "$WORK/md/$name.md" ] && cat "$WORK/md/$name.md"
  done >"$OUTDIR/gpu_check.md"
  if [ -n "$BENCHMARKS_MD" ] && [ -s "$OUTDIR/gpu_check.md" ]; then
    $CHECK record --block "$OUTDIR/gpu_check.md" --into "$BENCHMARKS_MD" 2>>"$LOG" && cp "$BENCHMARKS_MD" "$OUTDIR/"
  fi
}

# step NAME CAP COMMAND...: stdout into the section file $WORK/md/NAME.md, stderr into the log, under a timeout
# of CAP seconds or what is left of the budget; records the block; returns the command's exit code
step() {
  local name=$1 cap=$2 left=$((BUDGET - SECONDS - 15)) code
  shift 2
  local md=$WORK/md/$name.md log=$WORK/log/$name.log
  ((left < cap)) && cap=$left
  if ((cap < 20)); then printf -- '- skipped, budget of %s s spent: `%s`\n\n' "$BUDGET" "$*" >>"$md"; return 1; fi
  echo "[gpu_check +${SECONDS}s] $* (timeout ${cap}s)" | tee -a "$LOG" >&2
  GPU_CHECK_STEP_CAP=$cap timeout -k 10 "$cap" "$@" >>"$md" 2>"$log"
  code=$?
  cat "$log" >>"$LOG"
  if ((code == 124 || code == 137)); then
    printf -- '\n- **timed out after %s s**: `%s`\n' "$cap" "$*" >>"$md"
  elif ((code)); then
    printf -- '\n- **failed, exit code %s**: `%s`; the log ends:\n\n```\n%s\n```\n' "$code" "$*" \
      "$(tail -n 4 "$log" | cut -c 1-300)" >>"$md"
  fi
  echo >>"$md"
  record
  return "$code"
}

# What the device image lacks, from the carried wheels (no package index there); missing ones are named.
$CHECK setup --wheels "${GPU_CHECK_WHEELS:-.whl}" >"$WORK/md/setup.md" 2>>"$LOG"

if ((SMOKE)); then
  HEADER=(--smoke)
  TESTS=(-q -n 0 tests/test_import_graph.py)
  TEST_PLATFORMS=cpu
  # the suite's row below, which then loads its programs from the compilation cache
  BENCH=("cifar-resnet20 0 60 --config configs/synthetic.py:family=cifar,depth=20,batch=16,dtype=float32 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 1")
  PRECISION=(--model cifar:8:8:8)
  STUDY=(--only depth=20,variant=residual,seed=0 --config.data.data_dir="$DATA/fashion-mnist"
         --config.train.num_steps=10 --config.train.eval_every_steps=10 --config.train.log_every_steps=5
         --config.train.analysis_every_steps=0)
  SEEDS=(--depth 8 --batch 8 --seeds 2 --steps 2 --time-steps 1 --windows 1 --dtype float32)
  SUITE=(--preset cpu --only cifar-resnet20 --cifar-batch 16 --steps 1)
else
  HEADER=()
  # No Slurm on the device (test_slurm.py starts one); test_gpu_check.py is this script's own smoke test.
  TESTS=(-q -n 12 --ignore=tests/test_slurm.py --ignore=tests/test_gpu_check.py)
  TEST_PLATFORMS=cuda,cpu  # the tests' conftest picks the CPU unless told otherwise
  # name, goal (train img/s), cap (s), arguments: BENCHMARKS.md "## GPU", CIFAR's dtype spelled out (auto is bf16 there)
  BENCH=(
    "resnet50-bf16 7000 120 --config configs/synthetic.py:family=imagenet,depth=50,image_size=224,batch=256,num_classes=1000,dtype=bfloat16 --steps 50 --peak-tflops 989"
    "cifar-resnet56-bf16 40000 70 --config configs/synthetic.py:family=cifar,depth=56,batch=128,dtype=bfloat16 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 200 --peak-tflops 989"
    "cifar-resnet56-f32 40000 70 --config configs/synthetic.py:family=cifar,depth=56,batch=128,dtype=float32 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 200 --peak-tflops 989")
  PRECISION=(--model cifar:56:32:128 --model imagenet:50:224:32)
  STUDY=(--only seed=0 --config.data.data_dir="$DATA/fashion-mnist")
  SEEDS=(--depth 20 --batch 128 --seeds 3 --steps 5 --time-steps 20 --windows 3)
  # cifar-resnet56 and resnet50 at these sizes are the goals' benchmarks above, with more steps
  SUITE=(--preset gpu --only cifar-resnet20,cifar-resnet110,resnet18 --steps 10 --peak-tflops 989)
fi

if wanted header; then
  step header 60 $CHECK header "${HEADER[@]}"
  cat "$WORK/md/setup.md" >>"$WORK/md/header.md" && record
fi
wanted tests && step tests 160 env -u RESNET_JAX_COMPILATION_CACHE JAX_PLATFORMS=$TEST_PLATFORMS \
  XLA_PYTHON_CLIENT_PREALLOCATE=false $CHECK tests --log "$OUTDIR/pytest.log" -- "${TESTS[@]}"
if wanted bench; then
  for spec in "${BENCH[@]}"; do
    read -r name goal cap args <<<"$spec"
    # shellcheck disable=SC2086  # the benchmark's arguments are one word each
    step bench "$cap" $CHECK bench --name "$name" --goal "$goal" --json-out "$WORK/json/bench/$name.json" -- $args
  done
  $CHECK table --title "Throughput: the goals' commands (resnet-jax benchmark)" \
    $(ls -tr "$WORK"/json/bench/*.json 2>/dev/null) >"$WORK/md/bench-table.md" 2>>"$LOG"
  record
fi
wanted precision && step precision 90 $CHECK precision "${PRECISION[@]}"
wanted study && step study 240 $CHECK study --root "$WORK/study" -- "${STUDY[@]}"
wanted seeds && step seeds 80 $CHECK seeds "${SEEDS[@]}"
if wanted suite; then
  printf -- '#### Benchmark suite\n\n`python benchmarks/suite.py %s`\n\n' "${SUITE[*]}" >>"$WORK/md/suite.md"
  if ! step suite 120 $PY benchmarks/suite.py "${SUITE[@]}" --json-dir "$WORK/json/suite"; then
    rows=$(ls -tr "$WORK"/json/suite/*.json 2>/dev/null)  # suite.py prints its table only at the end
    [ -n "$rows" ] && $CHECK table --title "Benchmark suite, the rows that finished" $rows >>"$WORK/md/suite.md" 2>>"$LOG"
  fi
fi

printf -- '- gpu_check.sh: %s s in all (budget %s s)\n' "$SECONDS" "$BUDGET" >>"$WORK/md/footer.md"
record
tar czf "$OUTDIR/gpu_check_json.tgz" -C "$WORK" json 2>>"$LOG"
echo "===== gpu_check.md ====="
cat "$OUTDIR/gpu_check.md"
