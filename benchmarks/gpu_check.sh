#!/usr/bin/env bash
# Everything that has never run on an accelerator, in one command that fits 8 minutes of one H200: the goals'
# benchmarks (BENCHMARKS.md "## GPU"), bf16 vs float32 agreement, the test suite, vmap vs unroll over seeds and
# benchmarks/suite.py. Prints one Markdown block for BENCHMARKS.md (last in the output; also $OUT/gpu_check.md).
#
# Prepare once, here, in the repository root (pure-Python wheels the device image lacks; /.whl/ is git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0 tensorboardX==2.6.5
# Run on the device machine (the `run` tool); no .git travels, so write in the commit (git rev-parse --short HEAD):
#   run(command="GPU_CHECK_COMMIT=<sha> bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Smoke test on a CPU, under a minute (tiny models, few steps, a test subset):
#   bash benchmarks/gpu_check.sh --smoke        (or GPU_CHECK_SMOKE=1)
# Environment: PYTHON (default python3); GPU_CHECK_BUDGET_S (default 450: each step's timeout is cut to what is
# left, a step with under 20 s left is skipped); GPU_CHECK_ONLY (steps to run, e.g. "tests,suite"; of header,
# bench, precision, tests, seeds, suite); OUT (the block, the logs and the JSON results go here).
set -u
cd "$(dirname "$0")/.."
SMOKE=${GPU_CHECK_SMOKE:-0}
[ "${1:-}" = --smoke ] && SMOKE=1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
ONLY=${GPU_CHECK_ONLY:-header,bench,precision,tests,seeds,suite}
OUTDIR=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG=$OUTDIR/gpu_check.log
mkdir -p "$OUTDIR" "$WORK/md" "$WORK/log" "$WORK/json/bench" "$WORK/json/suite"
: >"$LOG"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 RESNET_JAX_COMPILATION_CACHE=$WORK/xla  # a fresh one, shared
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
CHECK="$PY benchmarks/gpu_check.py"
echo "gpu_check: block in $OUTDIR/gpu_check.md, log $LOG" >&2

wanted() { [[ ,$ONLY, == *,$1,* ]]; }

# step NAME CAP COMMAND...: stdout into the section file $WORK/md/NAME.md, stderr into the log, under a timeout
# of CAP seconds or what is left of the budget; returns the command's exit code (the tables need no timeout)
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
  return "$code"
}

# What the device image lacks: the carried wheels, then this package (the suite runs the `resnet-jax` script).
read -r MISSING SCRIPT < <($PY -c 'import importlib.util as u, pathlib, sys
print(sum(u.find_spec(m) is None for m in ("ml_collections", "tensorboardX")), pathlib.Path(sys.executable).parent)')
if ((MISSING)); then
  $PY -m pip install -q --no-index --no-deps --no-compile .whl/*.whl >>"$LOG" 2>&1 \
    || echo "- could not install the carried wheels (.whl/): see gpu_check.log" >>"$WORK/md/header.md"
fi
if [ ! -x "$SCRIPT/resnet-jax" ]; then
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 \
    || echo "- \`pip install -e .\` failed: benchmarks/suite.py needs the resnet-jax script" >>"$WORK/md/header.md"
fi

if ((SMOKE)); then
  HEADER=(--smoke)
  # the suite's row below, which then loads its programs from the compilation cache
  BENCH=("cifar-resnet20 0 60 --config configs/synthetic.py:family=cifar,depth=20,batch=16,dtype=float32 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 1")
  PRECISION=(--model cifar:8:8:8)
  TESTS=(-q -n 0 tests/test_import_graph.py)
  SEEDS=(--depth 8 --batch 8 --seeds 2 --steps 2 --time-steps 1 --windows 1 --dtype float32)
  SUITE=(--preset cpu --only cifar-resnet20 --cifar-batch 16 --steps 1)
else
  HEADER=()
  # name, goal (train img/s), cap (s), arguments: BENCHMARKS.md "## GPU", CIFAR's dtype spelled out (auto is bf16 there)
  BENCH=(
    "resnet50-bf16 7000 150 --config configs/synthetic.py:family=imagenet,depth=50,image_size=224,batch=256,num_classes=1000,dtype=bfloat16 --steps 50 --peak-tflops 989"
    "cifar-resnet56-bf16 40000 90 --config configs/synthetic.py:family=cifar,depth=56,batch=128,dtype=bfloat16 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 200 --peak-tflops 989"
    "cifar-resnet56-f32 40000 90 --config configs/synthetic.py:family=cifar,depth=56,batch=128,dtype=float32 --config.data.augment=pad_crop_flip --config.data.normalize=pixel_mean --steps 200 --peak-tflops 989")
  PRECISION=(--model cifar:56:32:128 --model imagenet:50:224:32)
  # No Slurm on the device (test_slurm.py starts one); test_gpu_check.py is this script's own smoke test.
  TESTS=(-q -n 12 --ignore=tests/test_slurm.py --ignore=tests/test_gpu_check.py)
  SEEDS=(--depth 20 --batch 128 --seeds 3 --steps 5 --time-steps 20 --windows 3)
  # cifar-resnet56 and resnet50 at these sizes are the goals' benchmarks above, with more steps
  SUITE=(--preset gpu --only cifar-resnet20,cifar-resnet110,resnet18 --steps 10 --peak-tflops 989)
fi

wanted header && step header 60 $CHECK header "${HEADER[@]}"
if wanted bench; then
  for spec in "${BENCH[@]}"; do
    read -r name goal cap args <<<"$spec"
    # shellcheck disable=SC2086  # the benchmark's arguments are one word each
    step bench "$cap" $CHECK bench --name "$name" --goal "$goal" --json-out "$WORK/json/bench/$name.json" -- $args
  done
  $CHECK table --title "Throughput: the goals' commands (resnet-jax benchmark)" \
    $(ls -tr "$WORK"/json/bench/*.json 2>/dev/null) >"$WORK/md/bench-table.md" 2>>"$LOG"
fi
# The tests time nothing: they run beside the precision check, both taking GPU memory as they need it.
if wanted tests; then
  step tests 180 env -u RESNET_JAX_COMPILATION_CACHE XLA_PYTHON_CLIENT_PREALLOCATE=false \
    $CHECK tests --log "$OUTDIR/pytest.log" -- "${TESTS[@]}" &
fi
wanted precision && step precision 120 env XLA_PYTHON_CLIENT_PREALLOCATE=false $CHECK precision "${PRECISION[@]}"
wait
wanted seeds && step seeds 90 $CHECK seeds "${SEEDS[@]}"
if wanted suite; then
  printf -- '#### Benchmark suite\n\n`python benchmarks/suite.py %s`\n\n' "${SUITE[*]}" >>"$WORK/md/suite.md"
  if ! step suite 150 $PY benchmarks/suite.py "${SUITE[@]}" --json-dir "$WORK/json/suite"; then
    rows=$(ls -tr "$WORK"/json/suite/*.json 2>/dev/null)  # suite.py prints its table only at the end
    [ -n "$rows" ] && $CHECK table --title "Benchmark suite, the rows that finished" $rows >>"$WORK/md/suite.md" 2>>"$LOG"
  fi
fi

printf -- '- gpu_check.sh: %s s in all (budget %s s)\n' "$SECONDS" "$BUDGET" >>"$WORK/md/footer.md"
for name in header bench bench-table precision tests seeds suite footer; do
  [ -f "$WORK/md/$name.md" ] && cat "$WORK/md/$name.md"
done >"$OUTDIR/gpu_check.md"
tar czf "$OUTDIR/gpu_check_json.tgz" -C "$WORK" json 2>>"$LOG"
echo "===== gpu_check.md ====="
cat "$OUTDIR/gpu_check.md"
