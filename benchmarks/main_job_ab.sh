#!/usr/bin/env bash
# The README main job's sweep at two commits, side by side: rounds of A then B, each in a fresh clone with an empty
# compilation cache, this checkout's venv (the code from the clone: PYTHONPATH), the sweep alone (no report).
#
#   bash benchmarks/main_job_ab.sh A B [ROUNDS=3] [OUT=/tmp/main-job-ab]
#
# Prints one row per run (commit, round, start, load before, the sweep's own time) and the B / A ratio of each
# round, then each commit's members' final training and test errors (finished.json), to see whether they agree.
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-3} OUT=${4:-/tmp/main-job-ab}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
mkdir -p "$OUT"
seconds() { python3 -c "import re,sys; m=re.search(r'in (?:(\d+)h)?(\d+)m(\d+)s', sys.argv[1]); \
print(int(m[1] or 0)*3600+int(m[2])*60+int(m[3]))" "$1"; }
for commit in "$A" "$B"; do
  rm -rf "$OUT/src-$commit" && git clone -q "$REPO" "$OUT/src-$commit" && git -C "$OUT/src-$commit" checkout -q "$commit"
done
echo "| round | commit | start | load before | sweep s |"
echo "|---|---|---|---|---|"
declare -A TIMES
for round in $(seq "$ROUNDS"); do
  for commit in "$A" "$B"; do
    src=$OUT/src-$commit root=$OUT/runs-$commit-$round
    rm -rf "$root" "$OUT/cache"
    start=$(date -u +%H:%M:%S) load=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$src" && PYTHONPATH=$src RESNET_JAX_COMPILATION_CACHE=$OUT/cache \
      "$PYTHON" -m resnet_jax.cli sweep experiments/digits.py --root "$root") >"$OUT/sweep-$commit-$round.log" 2>&1
    TIMES[$commit,$round]=$(seconds "$(grep '^sweep: ' "$OUT/sweep-$commit-$round.log" | tail -1)")
    echo "| $round | $commit | $start | $load | ${TIMES[$commit,$round]} |"
  done
done
echo
for round in $(seq "$ROUNDS"); do
  echo "round $round: $B / $A = $(python3 -c "print(f'{${TIMES[$B,$round]} / ${TIMES[$A,$round]}:.2f}')")"
done
ERRORS=$(cat <<'PY'
import json, pathlib, sys
rows = [(p.parent.name, json.loads(p.read_text())) for p in sorted(pathlib.Path(sys.argv[1]).glob("*/finished.json"))]
print("; ".join(f"{name} {100 * r['train_error']:.2f}/{100 * r['eval_error']:.2f}" for name, r in rows))
PY
)
for commit in "$A" "$B"; do
  echo "$commit, round 1, train/test error %: $("$PYTHON" -c "$ERRORS" "$OUT/runs-$commit-1")"
done
echo "command: bash benchmarks/main_job_ab.sh $A $B $ROUNDS $OUT"
