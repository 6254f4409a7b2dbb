#!/usr/bin/env bash
# Run the GPU tests (pytest -m gpu) on a machine with a CUDA GPU, from the repository root:
#
#   bash scripts/gpu_tests.sh [pytest args...]
#
# Sets up bitsandbytes first (scripts/device_setup.sh). Exit status: pytest's.
cd "$(dirname "$0")/.." || exit 2
. scripts/device_setup.sh || exit 2
python3 -m pytest -m gpu -p no:cacheprovider -q "$@" tests
