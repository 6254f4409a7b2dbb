#!/usr/bin/env bash
# Set up a bare GPU machine for vramfit's probe: source it from the repository root.
#
#   . scripts/device_setup.sh
#
# The machine is expected to have python3 with torch (CUDA), transformers, peft and accelerate, and no
# network. bitsandbytes travels as a wheel in .whl/ (ignored by git), fetched beforehand on a machine
# with network access:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_24_x86_64 -d .whl bitsandbytes==0.50.2
#
# Everything installs into /tmp/site; the repository itself is used from the working tree.
set -e
if ! python3 -c "import bitsandbytes" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "device_setup: no wheels in .whl/ (see the header of this script)" >&2; return 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY'
import importlib.metadata as md, torch
names = ("torch", "transformers", "peft", "accelerate", "bitsandbytes")
print("device_setup:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA",
      "|", ", ".join(f"{n} {md.version(n)}" for n in names))
PY
set +e
