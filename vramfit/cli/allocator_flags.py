"""``--expandable-segments/--no-expandable-segments`` and ``--platform``: the allocator a run uses."""

from __future__ import annotations

import argparse

from vramfit.allocator_settings import PLATFORMS


def add_allocator_flags(p: argparse.ArgumentParser, platform: bool = False) -> None:
    g = p.add_argument_group("allocator")
    g.add_argument(
        "--expandable-segments",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PyTorch's caching allocator with expandable_segments:True (or not, with --no-...); "
        "default: what the installed torch reads from PYTORCH_ALLOC_CONF / PYTORCH_CUDA_ALLOC_CONF",
    )
    if platform:
        g.add_argument(
            "--platform",
            choices=PLATFORMS,
            default=None,
            help="where the run will train: expandable segments are planned for on linux only "
            "[default: this machine's]",
        )


def allocator_from_args(args: argparse.Namespace, *, plan: bool = False):
    """The :class:`AllocatorSetting` of the flags (the environment when the flag is absent)."""
    from vramfit.allocator_settings import platform_of_this_machine, resolve, supports_expandable

    plat = getattr(args, "platform", None) or platform_of_this_machine()
    flag = args.expandable_segments
    if plan and flag is None:  # the planner recommends the predictable allocator where it works
        flag = supports_expandable(plat)
    return resolve(flag, platform=plat, source_of_flag="flag")
