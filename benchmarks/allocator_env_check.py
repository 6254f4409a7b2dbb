"""Which allocator variable the installed torch reads, and which wins: checked on a GPU, not assumed.

    python -m benchmarks.allocator_env_check --out FILE.json

For each combination of PYTORCH_ALLOC_CONF and PYTORCH_CUDA_ALLOC_CONF a fresh process allocates one tensor
and reports what torch itself says: the memory snapshot's ``allocator_settings["expandable_segments"]`` and
its segments' ``is_expandable``. ``vramfit.allocator_settings`` predicts the same from the version alone;
the file records both, and ``tests/test_allocator_settings.py`` holds the prediction to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = [
    {},
    {"PYTORCH_ALLOC_CONF": "expandable_segments:True"},
    {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
    {
        "PYTORCH_ALLOC_CONF": "expandable_segments:False",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    },
    {
        "PYTORCH_ALLOC_CONF": "expandable_segments:True",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False",
    },
]
CHILD = """
import json, torch
torch.empty(64 << 20, device="cuda")
s = torch.cuda.memory._snapshot()
print(json.dumps({"torch": torch.__version__,
                  "settings": getattr(torch._C, "_accelerator_getAllocatorSettings", lambda: None)(),
                  "snapshot_expandable": (s.get("allocator_settings") or {}).get("expandable_segments"),
                  "segments_expandable": sorted({bool(g.get("is_expandable")) for g in s["segments"]})}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from vramfit.allocator_settings import resolve

    rows = []
    for case in CASES:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
        }
        p = subprocess.run([sys.executable, "-c", CHILD], env={**env, **case}, capture_output=True, text=True)
        got = (
            json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {"error": p.stderr[-500:]}
        )
        predicted = resolve(
            None, env=case, torch_version=got.get("torch"), platform="linux"
        ).expandable_segments
        rows.append({"env": case, "torch_reports": got, "vramfit_predicts": predicted})
        print(json.dumps(rows[-1]), flush=True)
    with open(a.out, "w") as f:
        json.dump(
            {"command": "python3 benchmarks/allocator_env_check.py --out $OUT/...", "cases": rows},
            f,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
