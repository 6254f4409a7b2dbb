"""The caching allocator's constants and size rules (vramfit.allocator.constants), read by estimator and probe."""

from __future__ import annotations

import subprocess
import sys

from vramfit.allocator import constants as c
from vramfit.units import MiB


def test_segment_sizes_follow_get_allocation_size():
    assert c.segment_size(c.round_size(1)) == 2 * MiB  # small pool: kSmallBuffer
    assert c.segment_size(1 * MiB) == 2 * MiB
    assert c.segment_size(1 * MiB + 512) == 20 * MiB  # 1-10 MiB: one 20 MiB segment
    assert c.segment_size(10 * MiB - 512) == 20 * MiB
    assert c.segment_size(10 * MiB) == 10 * MiB  # kMinLargeAlloc and above: rounded to kRoundLarge
    assert c.segment_size(11 * MiB) == 12 * MiB
    assert all(c.segment_size(n) % c.CAP_GRANULE == 0 for n in (512, 3 * MiB, 37 * MiB + 5))


def test_rounding_pools_and_splitting():
    assert (c.round_size(0), c.round_size(1), c.round_size(513)) == (512, 512, 1024)
    assert c.pool_of(1 * MiB) == "small" and c.pool_of(1 * MiB + 512) == "large"
    assert c.should_split(512, 512) and not c.should_split(512, 0)  # small pool: a 512-byte rest splits
    assert not c.should_split(2 * MiB, 1 * MiB) and c.should_split(2 * MiB, 1 * MiB + 512)  # large pool
    assert c.EXPANDABLE_PAGE == {"small": 2 * MiB, "large": 20 * MiB}


def test_the_estimator_rounds_with_the_same_constant():
    from vramfit.estimate.alloc import block

    assert [block(n) for n in (0, 1, 512, 513)] == [0, c.MIN_BLOCK, c.MIN_BLOCK, 2 * c.MIN_BLOCK]


def test_importable_without_torch():
    code = "import sys, vramfit.allocator.constants, vramfit.estimate.alloc; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
