#!/usr/bin/env bash
# Debian's dataset-fashion-mnist (the original idx files under /usr/share/datasets/fashion-mnist), installed if
# missing: the tests that read the real data call this, as does .ci/run. Run as root, or with sudo available.
#   bash tools/fashion_mnist.sh
set -euo pipefail
DIR=/usr/share/datasets/fashion-mnist
[ -f "$DIR/train-images-idx3-ubyte.gz" ] && exit 0
SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
export DEBIAN_FRONTEND=noninteractive
# One installer at a time: test workers may ask together.
exec 9>/tmp/resnet-jax-fashion-mnist.lock
flock 9
[ -f "$DIR/train-images-idx3-ubyte.gz" ] && exit 0
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
