"""``vramfit`` entry point: builds the subcommand parsers and turns expected errors into exit codes.

Exit codes: 0 success / fits, 1 does not fit (or a regression in ``check``), 2 bad input.
Subcommand modules must not import torch, transformers, matplotlib or pandas at module level:
building the parser imports every one of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module in vramfit.cli; each module has add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = {
    "estimate": "estimate_cmd",
    "plan": "plan_cmd",
    "probe": "probe_cmd",
    "models": "models_cmd",
    "gpus": "gpus_cmd",
    "report": "report_cmd",
    "check": "check_cmd",
}

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints usage too)
        self.exit(
            EXIT_BAD_INPUT,
            f"vramfit {self.prog.split(' ', 1)[-1]}: error: {message}\n".replace(
                "vramfit vramfit", "vramfit"
            ),
        )


def build_parser() -> argparse.ArgumentParser:
    from vramfit import __version__

    parser = _Parser(
        prog="vramfit",
        description="Will this fine-tuning run fit on my GPU, why, and what is the best run that does?",
        epilog="Example: vramfit plan --model mistral-7b --vram 4GB",
    )
    parser.add_argument("--version", action="version", version=f"vramfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(f"vramfit.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"vramfit.cli.{module}":
                raise
            continue  # subcommand not built yet
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vramfit.errors import InputError, VramfitError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.run(args) or 0)
    except InputError as e:
        print(f"vramfit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except VramfitError as e:
        print(f"vramfit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"vramfit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vramfit models | head`
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
