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
# Optional: the trainer stacks (--trainer trl, --loss liger), from wheels in .whl/trl/, fetched likewise:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform any -d .whl/trl \
#       trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5
#
# (the machine's own pyarrow, xxhash, psutil and triton are used). datasets 5.1-5.2 cannot fingerprint a
# table with pyarrow 24-26 and dill 0.3.9-0.4.1 ("Can't pickle <class 'MonthDayNano'>"); the probe gives
# its dataset a fingerprint (vramfit/probe/stacks.py), so no pair of them is needed that hashes tables.
if ls .whl/trl/*.whl >/dev/null 2>&1 && ! python3 -c "import trl" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/trl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY'
import importlib.metadata as md, torch
names = ("torch", "transformers", "peft", "accelerate", "bitsandbytes")
optional = ("trl", "datasets", "pyarrow", "dill", "liger-kernel", "triton")
def v(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return None
print("device_setup:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA",
      "|", ", ".join(f"{n} {md.version(n)}" for n in names),
      "|", ", ".join(f"{n} {v(n)}" for n in optional if v(n)))
PY
set +e
