#!/usr/bin/env bash
# What benchmarks/gpu_check.sh needs beyond the device image (jax, flax, optax, orbax-checkpoint, scikit-learn,
# matplotlib; Python 3.12), prepared here because the device machine reaches no package index:
#   - the pure-Python wheels of ml_collections, tensorboardX, pytest and pytest-xdist (with the dependencies the
#     image lacks), at the versions the test extra installs, into WHEELS (default .whl/, git-ignored);
#   - the Fashion-MNIST files of Debian's dataset-fashion-mnist, for the GPU-sized study, into DATA/fashion-mnist/
#     (default .data/, git-ignored), when they are installed here.
#   bash benchmarks/gpu_wheels.sh [WHEELS] [DATA]
# Then carry both: run(command="GPU_CHECK_COMMIT=<sha> bash benchmarks/gpu_check.sh", carry=[".whl", ".data"])
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-.whl}
DATA=${2:-.data}
PY=${PYTHON:-python3}
mkdir -p "$WHEELS"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py --abi none \
  --platform any -d "$WHEELS" ml_collections==1.1.0 tensorboardX==2.6.5 pytest==9.2.0 pluggy==1.7.0 \
  iniconfig==2.3.1 pygments==2.21.0 pytest-xdist==3.8.0 execnet==2.1.2
if [ -d /usr/share/datasets/fashion-mnist ]; then
  mkdir -p "$DATA/fashion-mnist" && cp /usr/share/datasets/fashion-mnist/*.gz "$DATA/fashion-mnist/"
fi
ls "$WHEELS"
