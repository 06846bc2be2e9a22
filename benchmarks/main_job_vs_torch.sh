#!/usr/bin/env bash
# The README's main job on fresh clones, interleaved with the same study in plain PyTorch on the same cores.
#
#   bash benchmarks/main_job_vs_torch.sh [ROUNDS=3] [OUT=/tmp/main-job-vs-torch]
#
# Each round: (1) a fresh clone of this checkout's HEAD, an empty venv and an empty compilation cache
# (~/.cache/resnet-jax removed): the README's main command, timed whole and its sweep on its own (the
# sweep's last line); (2) benchmarks/digits_torch.py --jobs 2 (the same 12 members, two at a time, each
# on one core) with this checkout's venv, which has torch (pip install -e '.[bench]'). Prints one row per
# round (date, load before, times) and the sweep / PyTorch ratio; logs stay under OUT.
set -euo pipefail
ROUNDS=${1:-3}
OUT=${2:-/tmp/main-job-vs-torch}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
MAIN_JOB=$(grep -m1 'resnet-jax sweep experiments/digits.py' "$REPO/README.md")
mkdir -p "$OUT"
seconds() { python3 -c "import re,sys; m=re.search(r'in (?:(\d+)h)?(\d+)m(\d+)s', sys.argv[1]); \
print(int(m[1] or 0)*3600+int(m[2])*60+int(m[3]))" "$1"; }
echo "| round | start | load before | main job s | its sweep s | PyTorch s | sweep / PyTorch |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  clone=$OUT/clone$round
  rm -rf "$clone" ~/.cache/resnet-jax
  git clone -q "$REPO" "$clone"
  start=$(date -u +%H:%M) load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(date +%s.%N)
  (cd "$clone" && bash -c "$MAIN_JOB") > "$OUT/main$round.log" 2>&1
  main=$(python3 -c "print(round($(date +%s.%N) - $t0))")
  sweep=$(seconds "$(grep '^sweep: ' "$OUT/main$round.log" | tail -1)")
  t0=$(date +%s.%N)
  "$PYTHON" "$REPO/benchmarks/digits_torch.py" --jobs 2 --out "$OUT/torch$round" > "$OUT/torch$round.log" 2>&1
  torch=$(python3 -c "print(round($(date +%s.%N) - $t0))")
  echo "| $round | $start | $load | $main | $sweep | $torch | $(python3 -c "print(f'{$sweep / $torch:.2f}')") |"
done
echo "command: $MAIN_JOB (in each fresh clone); $PYTHON benchmarks/digits_torch.py --jobs 2"
